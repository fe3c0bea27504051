"""The sidecar's outermost middleware: a request id for every request and line of log, and the access log."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logging import new_request_id, request_id
from .errors import REQUEST_ID_KEY

__all__ = ["RequestContext"]

access_log = logging.getLogger("tanpuhui.access")


class RequestContext:
    """Pure ASGI middleware: the request id (``X-Request-ID`` in, echoed out, in every log line) and access log.

    ``direct``: path -> a pure ASGI app answering ``POST`` on that path itself (the webhook routes). It is called
    instead of the Starlette stack below (router, exception middleware, ``Request``/``Response`` objects), which
    cost about as much per request as verifying, processing and committing a one-record webhook. Any other method
    on such a path still goes through the router (405). Starlette's ``ServerErrorMiddleware`` stays outermost.
    """

    def __init__(self, app: ASGIApp, *, log_access: bool = True, direct: Mapping[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.log_access = log_access
        self.direct = direct if direct is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                offered = value.decode("latin-1")
                break
        rid = new_request_id(offered)
        scope[REQUEST_ID_KEY] = rid
        header = (b"x-request-id", rid.encode())
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        app = self.app
        if self.direct and scope["method"] == "POST" and not scope.get("root_path"):
            app = self.direct.get(scope["path"], app)
        try:
            await app(scope, receive, send_with_id)
        finally:
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                ms = round((time.perf_counter() - started) * 1000, 2)
                path = scope.get("path", "")
                access_log.info(
                    "%s %s %d",
                    scope.get("method", ""),
                    path,
                    status,
                    extra={"fields": {"method": scope.get("method", ""), "path": path, "status": status, "ms": ms}},
                )
            request_id.reset(token)
