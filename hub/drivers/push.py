"""The push driver: a partner's signed webhook request, verified, processed and committed with its receipt.

There is one path for pushes, the sidecar's, and the demo and the tests take it too: :meth:`PushDriver.verify`
checks the signature and gives the webhook id (the idempotency key); :meth:`PushDriver.prepare` answers a repeat
from its receipt or runs the items through the pipeline; :meth:`PushDriver.commit` commits prepared requests in one
transaction, each with its receipt (the answer its partner gets, stored under its webhook id), so a repeat gets
exactly the first answer and an answer is never on file for records that are not. The sidecar groups concurrent
requests into one commit (:mod:`tanpuhui.hub.server.ingest`); :meth:`PushDriver.receive` is a group of one.

What a request becomes is an :data:`PushOutcome`; turning it into an HTTP answer is the sidecar's business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tanpuhui.sdk import PushStream, StreamContext, TanpuhuiError, redact

from ..audit import AuditEvent
from ..pipeline import PageResult, Pipeline, ProcessedPage
from ..runtime import Runtime
from ..store.base import Checkpoint, NewReceipt, WebhookReceipt

__all__ = ["Accepted", "PreparedPush", "PushDriver", "PushOutcome", "PushStates", "Refused"]

PushStates = dict[tuple[str, str], tuple[Any, StreamContext]]
"""Each push stream's cursor and context, carried from one request to the next of a group committed together."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request's items were committed (``page``), or it repeats one that was (``replayed``, ``page`` None).

    ``status`` and ``receipt`` are the answer stored under the webhook id: totals and one result per item.
    """

    status: int
    receipt: bytes
    page: PageResult | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing was stored: the same webhook id came with another body (``conflict``), or the body is not what
    the stream parses (``unparseable``)."""

    reason: Literal["conflict", "unparseable"]
    detail: str
    page: None = None
    """Nothing was committed (as on :class:`Accepted`, ``page`` is what this request committed)."""


PushOutcome = Accepted | Refused


@dataclass(slots=True)
class PreparedPush:
    """A verified request, validated and normalized, waiting for :meth:`PushDriver.commit`."""

    key: str
    processed: ProcessedPage
    checkpoint: Checkpoint
    receipt: NewReceipt


class PushDriver:
    """Receives pushed batches through the pipeline (see the module docstring)."""

    def __init__(self, runtime: Runtime, pipeline: Pipeline) -> None:
        self.runtime = runtime
        self.pipeline = pipeline

    def verify(self, adapter_name: str, stream_name: str, headers: Mapping[str, str], body: bytes) -> str:
        """Check a request's signature; returns its webhook id (the idempotency key).

        Raises ``SignatureError`` for every missing, malformed, stale or wrong signature header; ``ConfigError``
        for a stream that is not a configured push stream.
        """
        stream = self.runtime.push_stream(adapter_name, stream_name).stream
        assert isinstance(stream, PushStream)
        return stream.verify(headers, body)

    def prepare(
        self,
        adapter_name: str,
        stream_name: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        states: PushStates | None = None,
    ) -> PreparedPush | PushOutcome:
        """Parse, validate and normalize a verified request (nothing is stored yet), or answer it at once.

        Answered at once: a repeat of an id already committed (its receipt, ``replayed``), the same id with another
        body, a body the stream cannot parse. ``states`` carries each stream's cursor and context (with its pending
        state) from one request to the next of a group committed together, as the pages of one pull run share theirs.
        """
        bound = self.runtime.push_stream(adapter_name, stream_name)
        stream = bound.stream
        assert isinstance(stream, PushStream)
        store = self.runtime.store
        digest = hashlib.sha256(body).hexdigest()
        stored = store.receipt_get(adapter_name, stream_name, key)
        if stored is not None:
            return _answer_from(stored, digest)
        try:
            items = stream.parse(body, headers)
        except TanpuhuiError as exc:
            return Refused("unparseable", redact(str(exc)))
        slot = (adapter_name, stream_name)
        held = states.get(slot) if states is not None else None
        if held is None:
            checkpoint = store.load_checkpoint(adapter_name, stream_name)
            held = (checkpoint.cursor, bound.context(dict(checkpoint.state)))
            if states is not None:
                states[slot] = held
        cursor, ctx = held
        processed = self.pipeline.process(bound, ctx, items)
        receipt = NewReceipt(key, digest, 200, receipt_document(key, processed))
        return PreparedPush(key, processed, Checkpoint(cursor, ctx.state), receipt)

    def commit(self, prepared: Sequence[PreparedPush]) -> list[PushOutcome]:
        """Commit prepared requests in ONE transaction, each with its receipt stored under its webhook id."""
        writes = []
        for p in prepared:
            bound = p.processed.stream
            details = {
                "webhook_id": redact(p.key),  # the partner's string: masked like every partner string in the log
                "request_sha256": p.receipt.request_hash,
                "items": p.processed.result.items,
            }
            audit = AuditEvent("webhook.accept", bound.label, details, actor="partner")
            writes.append(p.processed.write(p.checkpoint, audit, receipt=p.receipt))
        store = self.runtime.store
        out: list[PushOutcome] = []
        for p, committed in zip(prepared, store.commit_pages(writes), strict=True):
            if committed is not None:
                out.append(Accepted(p.receipt.status, p.receipt.body, p.processed.committed(committed)))
                continue
            # Another process committed the same webhook id first: answer as it did.
            adapter, stream = p.processed.stream.key
            stored = store.receipt_get(adapter, stream, p.key)
            assert stored is not None
            out.append(_answer_from(stored, p.receipt.request_hash))
        return out

    def receive(self, adapter_name: str, stream_name: str, headers: Mapping[str, str], body: bytes) -> PushOutcome:
        """Verify, process and commit one request with its receipt (a group of one).

        Raises ``SignatureError`` before anything is read or stored.
        """
        key = self.verify(adapter_name, stream_name, headers, body)
        prepared = self.prepare(adapter_name, stream_name, key, headers, body)
        if not isinstance(prepared, PreparedPush):
            return prepared
        (outcome,) = self.commit([prepared])
        return outcome


def receipt_document(key: str, processed: ProcessedPage) -> bytes:
    """The answer to an accepted request: totals and one result per item (quarantined ones with their
    JSON-pointer errors)."""
    result = processed.result
    rejected = processed.rejected
    results: list[dict[str, Any]] = []
    for index in range(result.items):
        hit = rejected.get(index)
        if hit is None:
            results.append({"index": index, "status": "accepted"})
        else:
            stage, problems = hit
            errors = [p.as_dict() for p in problems]
            results.append({"index": index, "status": "quarantined", "stage": stage, "errors": errors})
    return orjson.dumps(
        {
            "webhook_id": redact(key),
            "adapter": result.adapter,
            "stream": result.stream,
            "items": result.items,
            "accepted": result.items - len(rejected),
            "quarantined": len(rejected),
            "records": len(processed.records),
            "results": results,
        }
    )


def _answer_from(stored: WebhookReceipt, digest: str) -> PushOutcome:
    if stored.request_hash != digest:
        detail = (
            f"webhook id {redact(stored.key)!r} was already received on {stored.created_at} with another body; "
            "a new message needs a new webhook id"
        )
        return Refused("conflict", detail)
    return Accepted(stored.status, stored.body, None, replayed=True)
