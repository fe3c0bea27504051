"""uvicorn's HTTP protocol with the limits it lacks: request head and body read timeouts, a connection cap.

uvicorn bounds the idle time between requests (keep-alive) and nothing else: a client that sends its request head
one byte a second (slowloris), or that connects and sends nothing, holds a connection for as long as it likes,
and enough of them use up the worker's connections and file descriptors. This subclass of uvicorn's httptools
protocol (the parser the sidecar runs; ``httptools`` is a dependency) adds, per connection, what Go's
``http.Server`` calls ReadHeaderTimeout and what Kestrel calls MinRequestBodyDataRate:

- the request head (request line and headers) must be complete within ``header_timeout`` of the connection's
  opening, or of the first byte of the next request on a kept-alive connection; else the answer is a 408 problem
  document and the connection is closed;
- while a body streams in, it may pause at most ``body_timeout`` between chunks, and once it has streamed for
  ``body_timeout`` it must average ``min_body_rate`` bytes a second (a client sending 1 byte/s is cut off however
  regular it is); else the connection is closed (the route sees the client go away). Time during which the
  server is not reading (the route has not asked for more yet) is not held against the client;
- a worker serves at most ``max_connections`` connections at once: a request on a connection beyond that is
  answered 503 (a problem document, ``Retry-After: 1``, ``connection: close``) without reaching the app. uvicorn's
  own ``limit_concurrency`` answers text/plain and counts the cap's own connection (a cap of N serves N - 1).

One timer per connection at most, armed only while a head or body is incomplete after a read (a request that
arrives in one segment arms none) and re-armed from the recorded timestamps when it fires. The protocol relies on
the parser callbacks and attributes of uvicorn's ``HttpToolsProtocol`` (``on_message_begin``,
``on_headers_complete``, ``on_body``, ``on_message_complete``, ``cycle``, ``flow``, ``app``), stable since uvicorn
0.13; ``tests/sidecar/test_slow_clients.py`` fails if they change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .http import PROBLEM, problem_body

__all__ = ["ConnectionLimits", "GuardedHttpProtocol"]

log = logging.getLogger("tanpuhui.server")

_PROBLEM = PROBLEM.encode()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What a connection may take (see the module docstring); ``min_body_rate`` 0 and ``max_connections`` None
    switch those limits off."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    min_body_rate: float = 1024.0
    max_connections: int | None = 1000


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ConnectionLimits` (see the module docstring); take a class bound to
    settings from :meth:`with_limits`."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
        """This protocol with ``limits``: what ``uvicorn.Config(http=...)`` takes."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app = self.app
        self._head_since: float | None = None
        self._body_since: float | None = None
        self._body_last = 0.0
        self._body_bytes = 0
        self._watch: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()  # a connection that sends nothing is held to the head timeout too
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._watch is None and (self._head_since is not None or self._body_since is not None):
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._head_since = self._body_since = None
        super().connection_lost(exc)

    # -- parser callbacks ----------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._head_since = None
        self._body_since = self._body_last = self.loop.time()
        self._body_bytes = 0
        cap = self.limits.max_connections
        if cap is not None and len(self.connections) > cap:
            self.app = self._overloaded  # read once, by the call below
        try:
            super().on_headers_complete()
        finally:
            self.app = self._app

    def on_body(self, body: bytes) -> None:
        self._body_last = self.loop.time()
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_since = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """A request uvicorn cannot parse: a 400 problem document (uvicorn's is text/plain)."""
        self._answer_and_close(400, f"not an HTTP/1.1 request uvicorn can read: {msg}")

    # -- the watchdog --------------------------------------------------------------------------------------------

    def _arm(self) -> None:
        if not self.transport.is_closing():
            self._watch = self.loop.call_at(self._next_check(self.loop.time()), self._check)

    def _next_check(self, now: float) -> float:
        limits = self.limits
        if self._head_since is not None:
            return self._head_since + limits.header_timeout
        assert self._body_since is not None
        due = self._body_last + limits.body_timeout
        if limits.min_body_rate:
            due = min(due, max(self._body_since + limits.body_timeout, now + 1.0))
        return due

    def _check(self) -> None:
        self._watch = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        limits = self.limits
        if self._head_since is not None:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                self._head_since = now  # a pipelined request waits for the answer before it, not for its client
            elif now - self._head_since >= limits.header_timeout:
                self._give_up(f"request head not complete within {limits.header_timeout:g} s")
                self._answer_and_close(408, f"the request head did not arrive within {limits.header_timeout:g} s")
                return
        elif self._body_since is not None:
            if self.flow.read_paused:  # the route is not reading: the client is not the one holding things up
                self._body_since = self._body_last = now
                self._body_bytes = 0
            elif now - self._body_last >= limits.body_timeout:
                self._give_up(f"request body stalled for {limits.body_timeout:g} s")
                self.transport.close()
                return
            elif (
                limits.min_body_rate
                and now - self._body_since >= limits.body_timeout
                and self._body_bytes < limits.min_body_rate * (now - self._body_since)
            ):
                rate = self._body_bytes / (now - self._body_since)
                self._give_up(f"request body arrives at {rate:.0f} bytes/s, under {limits.min_body_rate:g}")
                self.transport.close()
                return
        else:
            return  # nothing incomplete: the next request's first read arms the watch again
        self._arm()

    def _give_up(self, why: str) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("closing the connection of %s: %s", client, why)

    def _answer_and_close(self, status: int, detail: str) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # no answer is being written on this connection
            body = problem_body(status, detail)
            head = [f"HTTP/1.1 {status} {_PHRASES[status]}\r\n".encode()]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head.append(b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (_PROBLEM, len(body)))
            self.transport.write(b"".join(head) + body)
        self.transport.close()

    async def _overloaded(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.limits.max_connections
        log.warning("over [server] max_connections (%s): answered 503", cap)
        body = problem_body(503, f"this worker serves at most {cap} connections at once; retry in a second")
        headers = [
            (b"content-type", _PROBLEM),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


_PHRASES = {400: "Bad Request", 408: "Request Timeout"}
