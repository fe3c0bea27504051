"""The webhook routes: ``POST /v1/webhooks/{adapter}/{stream}``, one per configured push stream.

A request, in order: no query string (400), content type (415), size (413, checked while the body streams in), signature (401; a
malformed header is never a 500), an id already being processed (409), then the group commit
(:mod:`.ingest`): a repeat of a committed id gets the first answer again (``X-Webhook-Replayed: true``), the same id
with another body 422, an unparseable body 400, else the items are validated, normalized and committed with the
answer (200, one result per item) in one transaction.

Each route is served twice over: as a pure ASGI app that :class:`~.middleware.RequestContext` calls directly for
``POST`` (the hot path, no Starlette request objects), and as a Starlette handler for everything else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tanpuhui.sdk import SignatureError

from ..drivers.push import Accepted, PushDriver, PushOutcome
from ..metrics import HubMetrics
from .http import JSON, PROBLEM, BodyTooLarge, leaves_large_body, media_type, problem_body, receive_body
from .ingest import IngestWorker, NotCommitted

__all__ = ["WebhookRoute"]

log = logging.getLogger("tanpuhui.server")

Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
"""A webhook answer: status, body, content type, extra headers (sent before content-length and content-type)."""
_TYPES = frozenset({JSON})
_JSON = JSON.encode()
_PROBLEM = PROBLEM.encode()
_CLOSE = [(b"connection", b"close")]
_REPLAYED = [(b"x-webhook-replayed", b"true")]
_REFUSED = {"conflict": 422, "unparseable": 400}


def _problem(status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> Answer:
    return status, problem_body(status, detail), _PROBLEM, list(extra or ())


def _unread(raw_headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``connection: close`` for an answer that leaves a large body unread (see :data:`~.http.UNREAD_LIMIT`)."""
    length = next((v for k, v in raw_headers if k == b"content-length"), None)
    chunked = any(k == b"transfer-encoding" for k, _ in raw_headers)
    return _CLOSE if leaves_large_body(length, chunked) else []


def outcome_answer(outcome: PushOutcome | NotCommitted) -> Answer:
    """The HTTP answer to what became of a request."""
    if isinstance(outcome, Accepted):
        extra = _REPLAYED if outcome.replayed else []
        return outcome.status, outcome.receipt, _JSON if outcome.status < 400 else _PROBLEM, extra
    if isinstance(outcome, NotCommitted):
        return _problem(outcome.status, outcome.detail)
    return _problem(_REFUSED[outcome.reason], outcome.detail)


class WebhookRoute:
    """One push stream's route (see the module docstring)."""

    def __init__(
        self,
        adapter: str,
        stream: str,
        pushes: PushDriver,
        ingest: IngestWorker,
        metrics: HubMetrics,
        *,
        limit: int,
        inflight: set[tuple[str, str, str]],
    ) -> None:
        self.adapter = adapter
        self.stream = stream
        self.pushes = pushes
        self.ingest = ingest
        self.limit = limit
        self.inflight = inflight
        """(adapter, stream, webhook id) of the requests being processed now, shared by all routes."""
        self._seconds = metrics.webhook_seconds.labels(adapter, stream)
        self._requests = metrics.webhook_requests
        self._counters: dict[int, Any] = {}

    async def answer(self, raw_headers: Sequence[tuple[bytes, bytes]], receive: Receive, query: bytes = b"") -> Answer:
        """A request -> (status, body, content type, extra headers), counted and timed."""
        started = time.perf_counter()
        if query:  # the route documents no query parameter: refuse them all (as every route refuses unknown ones)
            result = _problem(400, "unknown query parameter(s); this route accepts none", _unread(raw_headers))
        else:
            result = await self._handle(raw_headers, receive)
        status = result[0]
        counter = self._counters.get(status)
        if counter is None:
            counter = self._counters[status] = self._requests.labels(self.adapter, self.stream, str(status))
        counter.inc()
        self._seconds.observe(time.perf_counter() - started)
        return result

    async def _handle(self, raw_headers: Sequence[tuple[bytes, bytes]], receive: Receive) -> Answer:
        adapter, stream = self.adapter, self.stream
        content_type: bytes | None = None
        declared: bytes | None = None
        for name, value in raw_headers:  # the first of each, as Headers.get
            if name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"content-length" and declared is None:
                declared = value
        if media_type(content_type) not in _TYPES:
            return _problem(415, "send the items as application/json", _unread(raw_headers))
        try:
            body = await receive_body(receive, declared, self.limit)
        except BodyTooLarge:
            return _problem(413, f"request body is larger than {self.limit} bytes", _CLOSE)
        headers = Headers(raw=list(raw_headers))
        try:
            key = self.pushes.verify(adapter, stream, headers, body)
        except SignatureError as exc:
            return _problem(401, f"signature rejected: {exc}")
        except Exception as exc:  # never a 500 for what a client sent
            log.warning("webhook %s:%s: signature check failed: %s: %s", adapter, stream, type(exc).__name__, exc)
            return _problem(400, "malformed webhook signature headers")
        slot = (adapter, stream, key)
        if slot in self.inflight:
            return _problem(409, f"webhook {key!r} is being processed; retry later for its answer")
        self.inflight.add(slot)
        try:
            outcome = await self.ingest.push(adapter, stream, key, headers, body)
        finally:
            self.inflight.discard(slot)
        return outcome_answer(outcome)

    def handler(self) -> Callable[[Request], Awaitable[Response]]:
        """The route's Starlette handler (used when the direct path does not apply, e.g. under a root path)."""

        async def webhook(request: Request) -> Response:
            status, body, content_type, extra = await self.answer(request.headers.raw, request.receive)
            response = Response(body, status, media_type=content_type.decode())
            response.raw_headers[:0] = extra
            return response

        return webhook

    def asgi_app(self) -> ASGIApp:
        """The same route as a pure ASGI app: what :class:`~.middleware.RequestContext` calls for ``POST``."""

        async def webhook(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                status, body, content_type, extra = await self.answer(
                    scope["headers"], receive, scope.get("query_string", b"")
                )
            except ClientDisconnect:
                return  # nobody to answer
            headers = [*extra, (b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return webhook
