"""A sink that POSTs CloudEvents 1.0 batches, signed with Standard Webhooks headers.

Each outbox row becomes one event::

    {"specversion":"1.0","id":<record_id>,"source":"<source>/<adapter>/<stream>",
     "type":"org.tanpuhui.reduction.v1","datacontenttype":"application/json","data":<the stored record>}

A correction's type is ``org.tanpuhui.reduction.corrected.v1`` (``data`` is the new record, its ``supersedes``
the record it replaces) and a void's ``org.tanpuhui.reduction.voided.v1`` (``data`` names the record withdrawn:
``{"record_id": <void id>, "voids": ..., "reason": ...}``); see docs/verification.md.

The request body (``application/cloudevents-batch+json``, a JSON array) is built by splicing the stored record bytes
in as ``data``: nothing is parsed or re-serialised per record. ``id`` is the record id, so ``(source, id)`` is a
stable idempotency key across retries and replays. Context attributes carry no personal data (the record's subject
is a pseudonym and stays inside ``data``).

Outcomes: 2xx delivered; 408, 425, 429, every 5xx, timeouts and connection errors are transient (retried, with
the consumer's ``Retry-After``, for as long as ``[forwarder] give_up_after`` allows); 410 Gone stops the sink; any
other status (a 4xx the consumer means, or an unexpected 1xx/3xx) is a permanent failure: dead-lettered at once,
the answer kept in the dead letter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Literal

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator

from tanpuhui.sdk import (
    OutboxRow,
    SignatureError,
    Sink,
    SinkError,
    SinkSettings,
    WebhookSigner,
    decode_secret,
    parse_retry_after,
)

__all__ = ["BATCH_CONTENT_TYPE", "EVENT_TYPE", "EVENT_TYPES", "RETRYABLE_STATUS", "HttpSink", "build_batch"]

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
EVENT_CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPE = "org.tanpuhui.reduction.v1"
EVENT_TYPES = {
    "created": EVENT_TYPE,
    "corrected": "org.tanpuhui.reduction.corrected.v1",
    "voided": "org.tanpuhui.reduction.voided.v1",
}
"""The CloudEvents ``type`` of each outbox row kind."""
RETRYABLE_STATUS = frozenset({408, 425, 429, *range(500, 600)})
"""Statuses that mean "not now" (timeout, too early, too many requests, any server error): retried."""


class HttpSettings(SinkSettings):
    """``[sinks.NAME]`` with ``type = "http"``.

    ``secret`` is the consumer's ``whsec_...`` signing secret (hub.toml names an environment variable; the config
    loader resolves it). ``max_batch_bytes`` splits a forwarder batch into several requests when the consumer
    limits request size.
    """

    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    source: str = Field(default="urn:tanpuhui:hub", min_length=1)
    timeout: float = Field(default=30.0, gt=0)
    max_batch_bytes: int | None = Field(default=None, ge=1024)

    @field_validator("secret")
    @classmethod
    def _secret_decodes(cls, value: SecretStr) -> SecretStr:
        try:
            decode_secret(value.get_secret_value())
        except SignatureError as exc:
            raise ValueError(str(exc)) from None
        return value


def build_batch(rows: Sequence[OutboxRow], source: str) -> bytes:
    """The ``application/cloudevents-batch+json`` body for ``rows`` (record bytes spliced in as ``data``)."""
    middles: dict[tuple[str, str, str], bytes] = {}
    pieces: list[bytes] = [b"["]  # one join builds the whole body (no second copy of ~1 MB for the bracket)
    extend = pieces.extend
    for row in rows:
        key = (row.adapter, row.stream, row.kind)
        middle = middles.get(key)
        if middle is None:
            middle = middles[key] = (
                b'","source":'
                + orjson.dumps(f"{source}/{row.adapter}/{row.stream}")
                + b',"type":"'
                + EVENT_TYPES.get(row.kind, EVENT_TYPE).encode()
                + b'","datacontenttype":"application/json","data":'
            )
        record_id = row.record_id
        # Record ids are Crockford base32; anything else is escaped properly (isalnum excludes '"', '\\' and
        # control characters, the only ones JSON needs escaped).
        encoded = record_id.encode() if record_id.isalnum() else orjson.dumps(record_id)[1:-1]
        extend((b'{"specversion":"1.0","id":"', encoded, middle, row.body, b"},"))
    if len(pieces) == 1:
        return b"[]"
    pieces[-1] = b"}]"
    return b"".join(pieces)


class HttpSink(Sink):
    """Delivers batches as signed CloudEvents over HTTP; one keep-alive client per sink."""

    kind = "http"
    Settings = HttpSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        super().__init__(name, settings)
        self._settings = self.settings_as(HttpSettings)
        self._signer = WebhookSigner(self._settings.secret.get_secret_value())
        self._where = f"http sink {name!r}: POST {_display_url(self._settings.url)}"
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return self._settings.url

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            # A client's pooled connections belong to the event loop that opened them; a sink used from a new
            # loop (another asyncio.run) starts a fresh pool. Close the sink on the loop that used it.
            self._loop = loop
            self._http = httpx.AsyncClient(
                timeout=self._settings.timeout,
                headers={"user-agent": "tanpuhui-hub", "content-type": BATCH_CONTENT_TYPE},
            )
        return self._http

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        for chunk in self._chunks(batch):
            await self._post(chunk)

    def _chunks(self, batch: Sequence[OutboxRow]) -> Iterator[Sequence[OutboxRow]]:
        limit = self._settings.max_batch_bytes
        if limit is None:
            if batch:
                yield batch
            return
        start, size = 0, 2
        overhead = 160 + len(self._settings.source)  # the envelope around each record, generously
        for i, row in enumerate(batch):
            row_size = len(row.body) + len(row.adapter) + len(row.stream) + overhead
            if i > start and size + row_size > limit:
                yield batch[start:i]
                start, size = i, 2
            size += row_size
        if start < len(batch):
            yield batch[start:]

    async def _post(self, rows: Sequence[OutboxRow]) -> None:
        body = build_batch(rows, self._settings.source)
        await self._post_body(body, f"batch_{rows[0].record_id}_{rows[-1].record_id}_{len(rows)}")

    async def send_event(self, event_id: str, event_type: str, data: bytes) -> dict[str, str]:
        """POST one structured CloudEvent (``application/cloudevents+json``) with ``data`` (JSON bytes), signed
        like the batches; returns the signature headers sent (e.g. ``tanpuhui report --forward``)."""
        body = (
            b'{"specversion":"1.0","id":'
            + orjson.dumps(event_id)
            + b',"source":'
            + orjson.dumps(self._settings.source)
            + b',"type":'
            + orjson.dumps(event_type)
            + b',"datacontenttype":"application/json","data":'
            + data
            + b"}"
        )
        return await self._post_body(body, f"msg_{event_id}", EVENT_CONTENT_TYPE)

    async def _post_body(self, body: bytes, msg_id: str, content_type: str = BATCH_CONTENT_TYPE) -> dict[str, str]:
        headers = self._signer.headers(msg_id, body)
        if content_type != BATCH_CONTENT_TYPE:
            headers["content-type"] = content_type
        try:
            response = await self._client().post(self._settings.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise SinkError(f"{self._where}: timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.TransportError as exc:
            raise SinkError(f"{self._where}: connection failed ({type(exc).__name__}: {exc})", retryable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return headers
        message = f"{self._where}: HTTP {status} {_brief(response)}"
        if status == 410:
            raise SinkError(message + " (the consumer asked us to stop)", retryable=False, gone=True)
        if status in RETRYABLE_STATUS:
            raise SinkError(message, retryable=True, retry_after=parse_retry_after(response.headers.get("retry-after")))
        raise SinkError(message, retryable=False)

    async def check(self) -> None:
        """Any HTTP answer (even 405) means reachable; no connection or a timeout raises :class:`SinkError`."""
        try:
            await self._client().request("OPTIONS", self._settings.url)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise SinkError(
                f"http sink {self.name!r}: {_display_url(self._settings.url)} is not reachable "
                f"({type(exc).__name__}: {exc})",
                retryable=True,
            ) from exc

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            if self._loop is asyncio.get_running_loop():
                await http.aclose()


def _display_url(url: str) -> str:
    """The URL without credentials or query (either may hold a token)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


def _brief(response: httpx.Response) -> str:
    text = response.text[:200].replace("\n", " ").strip()
    return f"{response.reason_phrase}: {text}" if text else response.reason_phrase
