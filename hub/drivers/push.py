"""The push driver: a partner's signed webhook request, verified, processed and committed with its receipt.

There is one path for pushes, the sidecar's, and the demo and the tests take it too: :meth:`PushDriver.verify`
checks the signature and gives the webhook id (the idempotency key); :meth:`PushDriver.prepare` answers a repeat
from its receipt or runs the items through the pipeline; :meth:`PushDriver.commit` commits prepared requests in one
transaction, each with its receipt (the answer its partner gets, stored under its webhook id), so a repeat gets
exactly the first answer and an answer is never on file for records that are not. The sidecar groups concurrent
requests into one commit (:mod:`tanpuhui.hub.server.ingest`); :meth:`PushDriver.receive` is a group of one.

A big request (more than :data:`PART_ITEMS` items, up to ``[server] max_body_bytes``) is processed and committed
in parts of that many items, so its encoded records are not all held at once (an 8 MiB YRD batch held ~75 MB of
them until its one commit): each part but the last is committed on its own as it is processed (its records,
quarantine entries and an audit entry ``webhook.part``), and the last part commits with the checkpoint and the
receipt. The receipt stays all-or-nothing: it is on file only once every part is, so the partner gets its answer
only then; a request that fails between parts has no receipt, and when the partner sends it again its records
already committed are duplicates and its quarantined items repeats, as for any retry.

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
from ..runtime import BoundStream, Runtime
from ..store.base import Checkpoint, NewReceipt, WebhookReceipt

__all__ = ["PART_ITEMS", "Accepted", "PreparedPush", "PushDriver", "PushOutcome", "PushStates", "Refused"]

PART_ITEMS = 1000
"""Items of a request processed and committed together (a bigger request is committed in parts)."""

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
    earlier: PageResult | None = None
    """What the parts of a big request committed before this, its last part (None: one part)."""


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
        if len(items) > PART_ITEMS:
            return self._prepare_parts(bound, key, digest, cursor, ctx, items)
        processed = self.pipeline.process(bound, ctx, items)
        receipt = NewReceipt(key, digest, 200, receipt_document(key, processed))
        return PreparedPush(key, processed, Checkpoint(cursor, ctx.state), receipt)

    def _prepare_parts(
        self, bound: BoundStream, key: str, digest: str, cursor: Any, ctx: StreamContext, items: Sequence[Any]
    ) -> PreparedPush:
        """A big request: every part but the last processed and committed now, the last one prepared."""
        pending = list(items)
        del items
        count = len(pending)
        rejected: dict[int, tuple[str, list[Any]]] = {}
        records = 0
        earlier: PageResult | None = None
        for part, start in enumerate(range(0, count, PART_ITEMS)):
            end = min(count, start + PART_ITEMS)
            chunk = pending[start:end]
            pending[start:end] = [None] * (end - start)  # processed: the parsed items go as they are done
            processed = self.pipeline.process(bound, ctx, chunk)
            del chunk
            for index, hit in processed.rejected.items():
                rejected[start + index] = hit
            records += len(processed.records)
            if end == count:
                document = _receipt(key, bound.adapter.name, bound.stream.name, count, rejected, records)
                receipt = NewReceipt(key, digest, 200, document)
                return PreparedPush(key, processed, Checkpoint(cursor, ctx.state), receipt, earlier)
            details = {"webhook_id": key, "request_sha256": digest, "part": part, "items": end - start}
            audit = AuditEvent("webhook.part", bound.label, details, actor="partner")
            [committed] = self.runtime.store.commit_pages([processed.write(None, audit)])
            assert committed is not None  # only a page with a receipt can be skipped
            earlier = _merged(earlier, processed.committed(committed))
        raise AssertionError("a request of more than PART_ITEMS items has a last part")

    def commit(self, prepared: Sequence[PreparedPush]) -> list[PushOutcome]:
        """Commit prepared requests in ONE transaction, each with its receipt stored under its webhook id."""
        writes = []
        for p in prepared:
            bound = p.processed.stream
            items = p.processed.result.items + (p.earlier.items if p.earlier is not None else 0)
            details = {"webhook_id": redact(p.key), "request_sha256": p.receipt.request_hash, "items": items}
            audit = AuditEvent("webhook.accept", bound.label, details, actor="partner")
            writes.append(p.processed.write(p.checkpoint, audit, receipt=p.receipt))
        store = self.runtime.store
        out: list[PushOutcome] = []
        for p, committed in zip(prepared, store.commit_pages(writes), strict=True):
            if committed is not None:
                page = _merged(p.earlier, p.processed.committed(committed))
                out.append(Accepted(p.receipt.status, p.receipt.body, page))
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
    return _receipt(key, result.adapter, result.stream, result.items, processed.rejected, len(processed.records))


def _receipt(
    key: str, adapter: str, stream: str, items: int, rejected: dict[int, tuple[str, list[Any]]], records: int
) -> bytes:
    results: list[dict[str, Any]] = []
    for index in range(items):
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
            "adapter": adapter,
            "stream": stream,
            "items": items,
            "accepted": items - len(rejected),
            "quarantined": len(rejected),
            "records": records,
            "results": results,
        }
    )


def _merged(earlier: PageResult | None, later: PageResult) -> PageResult:
    """The result of a request's parts so far, ``later`` added to ``earlier``."""
    if earlier is None:
        return later
    for name in ("items", "records", "valid_items", "inserted", "duplicates", "held", "quarantined"):
        setattr(earlier, name, getattr(earlier, name) + getattr(later, name))
    earlier.quarantine_repeats += later.quarantine_repeats
    earlier.kg_by_scenario.update(later.kg_by_scenario)
    earlier.inserted_by_scenario.update(later.inserted_by_scenario)
    earlier.drift.update(later.drift)
    return earlier


def _answer_from(stored: WebhookReceipt, digest: str) -> PushOutcome:
    if stored.request_hash != digest:
        detail = (
            f"webhook id {redact(stored.key)!r} was already received on {stored.created_at} with another body; "
            "a new message needs a new webhook id"
        )
        return Refused("conflict", detail)
    return Accepted(stored.status, stored.body, None, replayed=True)
