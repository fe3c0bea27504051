"""Request and response helpers the sidecar's routes share (one copy of each).

Bodies are read with a size limit enforced while they stream in; refusals are RFC 9457 problem documents
(``application/problem+json``) whose ``detail`` is redacted of personal data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from tanpuhui.sdk import redact

from ..audit import AuditEvent, AuditLog
from ..encoding import dumps_any
from ..logging import request_id

__all__ = [
    "JSON",
    "LIST_LIMIT",
    "MAX_ID",
    "PROBLEM",
    "UNREAD_LIMIT",
    "BodyTooLarge",
    "audit_request",
    "declares_large_body",
    "is_number",
    "json_response",
    "leaves_large_body",
    "media_type",
    "parse_bool",
    "parse_ids",
    "parse_limit",
    "problem",
    "problem_body",
    "read_body",
    "receive_body",
    "replay_choice",
    "too_large",
]

JSON = "application/json"
PROBLEM = "application/problem+json"
LIST_LIMIT = 1000
"""The most rows a listing returns at once."""
MAX_ID = 2**63 - 1
"""Store ids are 64-bit integers: a larger one names nothing (a 404, not a 500)."""
_MAX_IDS = 100_000
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class BodyTooLarge(Exception):
    """The request body is (or declares to be) larger than the limit; answer :func:`too_large`."""


def problem_body(status: int, detail: str, title: str | None = None) -> bytes:
    """An RFC 9457 problem document; ``detail`` is redacted."""
    return orjson.dumps(
        {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status, "detail": redact(detail)}
    )


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem response; ``detail`` is redacted."""
    return Response(problem_body(status, detail), status, headers=headers, media_type=PROBLEM)


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; a document orjson cannot write (e.g. a quarantined item nested 300 deep) still goes out."""
    return Response(dumps_any(doc), status, headers=headers, media_type=JSON)


def too_large(limit: int) -> Response:
    return problem(413, f"request body is larger than {limit} bytes", {"connection": "close"})


UNREAD_LIMIT = 64 * 1024
"""A refused request's body up to this size is read and dropped (uvicorn buffers that much anyway) rather than the
connection closed: closing with the body still arriving resets the connection, and the client may lose the answer."""


def leaves_large_body(content_length: str | bytes | None, chunked: bool) -> bool:
    """A request answered without reading its body should close the connection: it declares more than
    :data:`UNREAD_LIMIT` bytes, or a chunked body of unknown size."""
    if chunked:
        return True
    if content_length is None:
        return False
    text = content_length.decode("latin-1") if isinstance(content_length, bytes) else content_length
    return not is_number(text.strip()) or int(text) > UNREAD_LIMIT


def declares_large_body(headers: Mapping[str, str]) -> bool:
    """:func:`leaves_large_body` for Starlette headers."""
    return leaves_large_body(headers.get("content-length"), "transfer-encoding" in headers)


def media_type(content_type: str | bytes | None) -> str:
    """The media type of a ``Content-Type`` value, lower case, without parameters ("" when absent)."""
    if content_type is None:
        return ""
    text = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
    return text.partition(";")[0].strip().lower()


async def receive_body(receive: Receive, declared: str | bytes | None, limit: int) -> bytes:
    """The body from the ASGI messages, refusing (while it streams in, not after) to hold more than ``limit``
    bytes; ``declared`` is the ``Content-Length`` header, if any. Raises :class:`BodyTooLarge`, or
    ``ClientDisconnect`` when the client went away."""
    if declared is not None:
        text = declared.decode("latin-1") if isinstance(declared, bytes) else declared
        if is_number(text) and int(text) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """:func:`receive_body` for a Starlette request."""
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


def is_number(raw: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²" and "١", which ``int()`` then refuses or misreads."""
    return raw.isascii() and raw.isdigit()


def parse_limit(raw: str | None, default: int = 100) -> int | None:
    """A ``limit`` query parameter: 1 to :data:`LIST_LIMIT` (``default`` when absent), else None (a 400)."""
    if raw is None:
        return default
    if not is_number(raw) or not 1 <= int(raw) <= LIST_LIMIT:
        return None
    return int(raw)


def parse_bool(raw: str | None, default: bool = False) -> bool | None:
    """A boolean query parameter (true/false, 1/0, yes/no; ``default`` when absent), else None (a 400)."""
    if raw is None:
        return default
    return _BOOLEANS.get(raw.lower())


def parse_ids(body: dict[str, Any]) -> list[int] | None:
    """Entry ids from ``{"ids": [...]}``: 1 to 100,000 positive 64-bit integers, else None (a 400). ``312.0`` is
    312: JSON Schema counts a number without a fractional part as an integer."""
    ids = body.get("ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= _MAX_IDS:
        return None
    out = []
    for i in ids:
        if isinstance(i, float) and i.is_integer() and 0 < i <= MAX_ID:
            i = int(i)
        if not (isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID):
            return None
        out.append(i)
    return out


def replay_choice(body: dict[str, Any], scope: str) -> tuple[list[int] | None, str | None] | str:
    """What a replay request body chooses: ``(ids, None)`` for ``{"ids": [...]}``, ``(None, scope value or None)``
    for ``{"all": true, scope: ...}``; else the 400's detail. Unknown fields are refused, not ignored: a misspelt
    ``"adaptor"`` must not replay every adapter's entries."""
    usage = f'send {{"ids": [1, 2]}} or {{"all": true}} (optionally with "{scope}")'
    unknown = sorted(set(body) - {"ids", "all", scope})
    if unknown:
        return f"unknown field(s) {', '.join(map(repr, unknown))}; {usage}"
    if "all" in body and not isinstance(body["all"], bool):
        return f'"all" must be true or false; {usage}'
    named = body.get(scope)
    if scope in body and not (isinstance(named, str) and named):
        return f'"{scope}" must be a non-empty string; {usage}'
    if "ids" in body:
        ids = parse_ids(body)
        if ids is None:
            return f'"ids" must be 1 to {_MAX_IDS} integers from 1 to {MAX_ID}; {usage}'
        return ids, None
    if body.get("all") is True:
        return None, named
    return usage


async def audit_request(
    store: object, request: Request, actor: str, action: str, subject: str, details: dict[str, Any]
) -> None:
    """Append an operator's request to the audit log of ``store`` (a store without one logs nothing), before it is
    carried out: the actor is ``actor@`` the client address, and the details carry the request id."""
    if isinstance(store, AuditLog):
        host = request.client.host if request.client else "unknown"
        event = AuditEvent(action, subject, {**details, "request_id": request_id.get()}, actor=f"{actor}@{host}")
        await asyncio.to_thread(store.audit_append, [event])
