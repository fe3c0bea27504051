"""A misbehaving partner: the sandbox transit operator behind an ASGI wrapper that breaks chosen answers.

The sandbox already fails with a status on demand (``fail_next``, ``throttle_every``); :class:`FaultyPartner`
adds what a status cannot express, each applied to the n-th ``GET /v1/transactions`` request (1-based, retries
included) or to every request from it on:

- ``status``: answer with the status ``value`` (and ``Retry-After: seconds`` when given), the way a gateway does;
- ``slow``: answer only after ``seconds`` (the client times out first);
- ``truncate``: a 200 whose JSON body is cut short (Content-Length matches: the HTTP exchange itself is sound);
- ``repeat_cursor``: ``has_more`` true and ``next_cursor`` the cursor that was asked for (a page that loops);
- ``cycle_cursor``: the page at offset ``value`` sends the client back to the first page (a loop over several
  pages that no single answer gives away);
- ``add_field``: every item gains a top-level field the schema does not know (schema drift, harmless);
- ``retype``: every item's ``field`` becomes a string (schema drift that breaks the contract).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Fault", "FaultyPartner"]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    request: int
    """The transactions request it applies to (1-based, counting every attempt)."""
    onwards: bool = False
    """Apply to every request from ``request`` on, not just that one."""
    seconds: float = 0.0
    field: str = ""
    value: Any = None


class FaultyPartner:
    """Wraps the sandbox's ASGI app; ``transactions_requests`` counts what reached ``/v1/transactions``."""

    def __init__(self, app: ASGIApp, path: str = "/v1/transactions") -> None:
        self.app = app
        self.path = path
        self.faults: list[Fault] = []
        self.transactions_requests = 0
        self.applied: list[tuple[int, str]] = []

    def add(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def clear(self) -> None:
        self.faults.clear()

    def _active(self, number: int, query: dict[str, str]) -> list[Fault]:
        out = []
        for f in self.faults:
            if not (f.request == number or (f.onwards and number >= f.request)):
                continue
            if f.kind == "cycle_cursor" and query.get("cursor") != _cursor(int(f.value)):
                continue
            out.append(f)
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        self.transactions_requests += 1
        number = self.transactions_requests
        faults = self._active(number, _query(scope))
        if not faults:
            await self.app(scope, receive, send)
            return
        self.applied.extend((number, f.kind) for f in faults)
        for fault in faults:
            if fault.kind == "status":
                headers = [(b"content-type", b"application/json")]
                if fault.seconds:
                    headers.append((b"retry-after", str(int(fault.seconds)).encode()))
                body = orjson.dumps({"error": "injected", "error_description": f"HTTP {fault.value} (injected)"})
                await send({"type": "http.response.start", "status": int(fault.value), "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        for fault in faults:
            if fault.kind == "slow":
                await asyncio.sleep(fault.seconds)
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            for fault in faults:
                body = _rewrite(fault, body, _query(scope))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 500), "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw))


def _cursor(offset: int) -> str:
    """The sandbox's cursor for ``offset`` (its own encoding)."""
    return base64.urlsafe_b64encode(orjson.dumps({"v": 1, "o": offset})).decode().rstrip("=")


def _items(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = orjson.loads(body)
    for item in doc["data"]:
        change(item)
    return orjson.dumps(doc)


def _rewrite(fault: Fault, body: bytes, query: dict[str, str]) -> bytes:
    kind = fault.kind
    if kind == "slow":
        return body
    if kind == "truncate":
        return body[: max(1, len(body) // 2)]
    if kind in ("repeat_cursor", "cycle_cursor"):
        doc = orjson.loads(body)
        doc["has_more"] = True
        if kind == "repeat_cursor":
            doc["next_cursor"] = query.get("cursor")
        else:
            doc["next_cursor"] = _cursor(0)
        return orjson.dumps(doc)
    if kind == "add_field":
        return _items(body, lambda item: item.__setitem__(fault.field, fault.value))
    if kind == "retype":
        return _items(body, lambda item: item.__setitem__(fault.field, str(item.get(fault.field))))
    raise ValueError(f"unknown fault kind {kind!r}")
