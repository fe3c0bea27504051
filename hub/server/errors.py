"""Every error the sidecar answers is an RFC 9457 problem document, including the ones no route of ours makes.

Starlette answers an unknown path (404), a known path with another method (405) and a crash (500) in plain text;
the handlers here make them ``application/problem+json`` like the routes' own refusals (the OpenAPI document says
so), keeping the headers Starlette sets (``Allow`` on a 405). A crash's answer carries the request id, never the
exception: the server logs that (Starlette re-raises it after the answer is sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .http import problem

__all__ = ["REQUEST_ID_KEY", "exception_handlers"]

REQUEST_ID_KEY = "tanpuhui.request_id"
"""Where :class:`~.middleware.RequestContext` leaves the request id in the ASGI scope (for the crash answer, which
is sent outside it)."""
_DETAIL = {
    404: "no such resource; see /openapi.json for the routes",
    405: "method not allowed on this path; the Allow header lists the ones that are",
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status in (204, 304):  # no body allowed
        return Response(status_code=status, headers=exc.headers)
    detail = _DETAIL.get(status, exc.detail)
    if status == 404:
        detail = f"{request.method} {request.url.path}: {detail}"
    return problem(status, detail, dict(exc.headers or {}))


async def _gone(request: Request, exc: Exception) -> Response:
    # The client went away while its body was being read (or was cut off as too slow): nobody reads this answer,
    # and it is no error of ours to log with a traceback.
    return Response(status_code=400)


async def _server_error(request: Request, exc: Exception) -> Response:
    rid = str(request.scope.get(REQUEST_ID_KEY, ""))
    headers = {"x-request-id": rid} if rid else None
    return problem(500, f"internal error; the log has it under request id {rid or '?'}", headers)


def exception_handlers() -> Mapping[Any, Any]:
    """Starlette's ``exception_handlers``: 404, 405 and other HTTP exceptions, a client gone while its body was
    read, and crashes (500)."""
    return {HTTPException: _http_exception, ClientDisconnect: _gone, Exception: _server_error}
