"""The pipeline: raw page -> validate -> normalize -> validate record -> dedup -> one commit with the cursor.

:class:`Hub` is the runtime object the CLI, the demo and the sidecar share: it loads plugins, opens the store,
instantiates configured adapters, and runs pulls, pushes and quarantine replays through :meth:`Hub.ingest`.

Per page, in one SQLite transaction: the new outbox rows, the quarantine entries and the stream's checkpoint
(partner cursor + the stream's pending state). A crash before the commit repeats the page (its records dedup by
id); a crash after it resumes from the next page. Invalid items never block the valid items of their page.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from tanpuhui.sdk import (
    Adapter,
    ConfigError,
    HttpOptions,
    ItemRejected,
    Methodology,
    Page,
    PartnerResponseError,
    Problem,
    Pseudonymiser,
    PullStream,
    PushStream,
    ReductionRecord,
    Sink,
    Stream,
    StreamContext,
    TanpuhuiError,
    redact,
)
from tanpuhui.sdk.records import RecordDoc, neighbour_fingerprint_at

from .audit import AuditEvent
from .config import HubConfig, pydantic_problems
from .leasing import HeldLease, hold_lease
from .plugins import Plugins, load_plugins
from .store.base import (
    Checkpoint,
    CommitResult,
    NewQuarantine,
    NewReceipt,
    NewRecord,
    PageWrite,
    QuarantineEntry,
    Store,
    WebhookReceipt,
)
from .store.factory import open_store
from .store.leases import LeaseLost, new_owner_id
from .validation import RECORD_SCHEMA, CompiledSchema, SchemaRegistry

__all__ = ["Hub", "PageResult", "PreparedPush", "PullSummary", "PushOutcome", "ReplayResult"]

log = logging.getLogger("tanpuhui.pipeline")

Progress = Callable[["PageResult"], None]


@dataclass
class PageResult:
    """What one page (or one pushed batch) did."""

    adapter: str
    stream: str
    items: int = 0
    records: int = 0
    valid_items: int = 0
    inserted: int = 0
    duplicates: int = 0
    held: int = 0
    quarantined: int = 0
    kg_by_scenario: Counter[str] = field(default_factory=Counter)
    inserted_by_scenario: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    """Top-level fields the stream's schema does not name -> items carrying them (allowed; reported)."""


@dataclass
class PullSummary:
    """Totals of a pull run of one stream."""

    adapter: str
    stream: str
    pages: int = 0
    pulled: int = 0
    valid: int = 0
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    held: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    error: str | None = None
    leased_elsewhere: bool = False
    """Skipped: another replica holds the stream's lease (it is pulling the stream now)."""
    kg_by_scenario: Counter[str] = field(default_factory=Counter)
    records_by_scenario: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    """Top-level fields the partner sent that the stream's schema does not name -> items carrying them."""

    def add(self, page: PageResult) -> None:
        self.pages += 1
        self.pulled += page.items
        self.valid += page.valid_items
        self.records += page.records
        self.inserted += page.inserted
        self.duplicates += page.duplicates
        self.held += page.held
        self.quarantined += page.quarantined
        self.kg_by_scenario.update(page.kg_by_scenario)
        self.records_by_scenario.update(page.inserted_by_scenario)
        self.drift.update(page.drift)


@dataclass(slots=True)
class _Processed:
    """A page validated and normalized, not yet committed."""

    result: PageResult
    records: list[NewRecord] = field(default_factory=list)
    quarantined: list[NewQuarantine] = field(default_factory=list)
    rejected: dict[int, tuple[str, list[Problem]]] = field(default_factory=dict)
    """Item index -> (stage, problems) for the page's items that were quarantined."""
    drift: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Unknown top-level field -> (valid items carrying it, the partner id of one of them)."""

    def committed(self, committed: CommitResult) -> PageResult:
        result = self.result
        result.records = len(self.records)
        result.inserted = committed.inserted
        result.duplicates = committed.duplicates
        result.held = committed.held
        result.quarantined = committed.quarantined
        ids = committed.inserted_ids
        kg: dict[str, float] = {}
        counts: dict[str, int] = {}
        for r in self.records:
            if ids is None or r.record_id in ids:
                scenario = r.scenario
                kg[scenario] = kg.get(scenario, 0.0) + r.reduction_kgco2e
                counts[scenario] = counts.get(scenario, 0) + 1
        result.kg_by_scenario.update(kg)  # a Counter of kg: floats
        result.inserted_by_scenario.update(counts)
        for name, (count, _) in self.drift.items():
            result.drift[name] += count
        return result


@dataclass(slots=True)
class PushOutcome:
    """The answer to one webhook request: an HTTP status and a JSON body (a problem document when >= 400).

    ``page`` is what this request committed; None when nothing was (a rejected request, or a repeat answered from
    the receipt of the first delivery, then ``replayed`` is true).
    """

    status: int
    body: bytes
    page: PageResult | None = None
    replayed: bool = False


@dataclass(slots=True)
class PreparedPush:
    """A verified webhook request, validated and normalized, waiting for :meth:`Hub.commit_pushes`."""

    rt: _StreamRuntime
    key: str
    processed: _Processed
    checkpoint: Checkpoint
    receipt: NewReceipt


def problem_body(status: int, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document (``application/problem+json``)."""
    return orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": redact(detail)})


@dataclass(frozen=True)
class ReplayResult:
    entry_id: int
    status: str  # "resolved" (now valid and committed), "failed" (still invalid), "missing"
    problems: list[Problem]


class _StreamRuntime:
    """A stream with its compiled schemas and a context."""

    def __init__(self, hub: Hub, adapter: Adapter, stream: Stream) -> None:
        self.adapter = adapter
        self.stream = stream
        self.raw_schema: CompiledSchema = hub.schemas.get(stream.schema)
        self.record_schema: CompiledSchema = hub.schemas.get(RECORD_SCHEMA)
        self.known_fields = _known_fields(self.raw_schema.document)
        self.hub = hub

    def context(self, state: dict[str, Any]) -> StreamContext:
        return StreamContext(
            adapter=self.adapter.name,
            adapter_version=self.adapter.version,
            stream=self.stream.name,
            pseudonymiser=self.hub.pseudonymiser,
            methodologies=self.hub.methodology,
            state=state,
            fingerprint_window_minutes=self.hub.config.hub.fingerprint_window_minutes,
        )


class Hub:
    """The hub runtime: plugins, store, adapters, and the pipeline."""

    def __init__(
        self,
        config: HubConfig,
        *,
        plugins: Plugins | None = None,
        store: Store | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        http: HttpOptions | None = None,
    ) -> None:
        self.config = config
        self.plugins = plugins if plugins is not None else load_plugins()
        self.http = http or HttpOptions()
        if pseudonymiser is None:
            spec = config.hub.pseudonym_keys
            pseudonymiser = (
                Pseudonymiser.parse(spec, f"{config.source} [hub] pseudonym_keys") if spec else Pseudonymiser.from_env()
            )
        self.pseudonymiser = pseudonymiser
        schemas: dict[str, Any] = {}
        for adapter_cls in self.plugins.adapters.values():
            schemas.update(adapter_cls.schemas)
        self.schemas = SchemaRegistry(schemas)
        self.store: Store = store if store is not None else open_store(config)
        self.replica_id = new_owner_id()
        """This hub's name as a lease owner (host, process, random part)."""
        self._adapters: dict[str, Adapter] = {}
        self._runtimes: dict[tuple[str, str], _StreamRuntime] = {}
        self._methodologies: dict[str, Methodology] = {}

    # -- lookups -------------------------------------------------------------------------------------------

    def methodology(self, methodology_id: str) -> Methodology:
        """The methodology in force: pinned or latest version, with hub.toml factor overrides applied."""
        found = self._methodologies.get(methodology_id)
        if found is None:
            settings = self.config.methodologies.get(methodology_id)
            found = self.plugins.methodology(methodology_id, settings.version if settings else None)
            if settings and settings.factors:
                found = found.with_factors(settings.factors, f"override in {self.config.source}")
            self._methodologies[methodology_id] = found
        return found

    def adapter(self, name: str) -> Adapter:
        """The configured adapter instance (settings from ``[adapters.NAME]`` validated once)."""
        adapter = self._adapters.get(name)
        if adapter is None:
            cls = self.plugins.adapter(name)
            table = self.config.adapters.get(name)
            if table is None:
                raise ConfigError(
                    f"{self.config.source}: no [adapters.{name}] table; adapter {name!r} is not configured"
                )
            try:
                settings = cls.Settings.model_validate(table)
            except ValidationError as exc:
                raise ConfigError(f"{self.config.source}: {pydantic_problems(exc, f'adapters.{name}')}") from None
            adapter = self._adapters[name] = cls(settings, self.http)
        return adapter

    def stream_schema(self, adapter_name: str, stream_name: str) -> CompiledSchema:
        """The partner schema of a stream, found from the adapter class (no configuration needed)."""
        cls = self.plugins.adapter(adapter_name)
        for stream_type in cls.stream_types:
            if stream_type.name == stream_name:
                return self.schemas.get(stream_type.schema)
        raise ConfigError(f"adapter {adapter_name!r} has no stream {stream_name!r}")

    def runtime(self, adapter_name: str, stream_name: str) -> _StreamRuntime:
        key = (adapter_name, stream_name)
        rt = self._runtimes.get(key)
        if rt is None:
            adapter = self.adapter(adapter_name)
            try:
                stream = adapter.stream(stream_name)
            except KeyError:
                names = ", ".join(s.name for s in adapter.streams())
                raise ConfigError(f"adapter {adapter_name!r} has no stream {stream_name!r}; streams: {names}") from None
            rt = self._runtimes[key] = _StreamRuntime(self, adapter, stream)
        return rt

    def build_sinks(self, names: Sequence[str] | None = None) -> dict[str, Sink]:
        """Instantiate the ``[sinks.NAME]`` tables (all, or the named ones) with their registered sink types."""
        out: dict[str, Sink] = {}
        for name, table in self.config.sinks.items():
            if names is not None and name not in names:
                continue
            kind = table.get("type")
            cls = self.plugins.sinks.get(str(kind))
            if cls is None:
                known = ", ".join(sorted(self.plugins.sinks)) or "none"
                raise ConfigError(
                    f"{self.config.source}: [sinks.{name}] type {kind!r} is not a registered sink type ({known})"
                )
            path = table.get("path")
            if isinstance(path, str) and not Path(path).is_absolute():
                table = {**table, "path": str(self.config.base_dir / path)}  # relative to hub.toml, like the store
            try:
                settings = cls.Settings.model_validate(table)
            except ValidationError as exc:
                raise ConfigError(f"{self.config.source}: {pydantic_problems(exc, f'sinks.{name}')}") from None
            out[name] = cls(name, settings)
        if names is not None and set(names) - set(out):
            raise ConfigError(f"{self.config.source}: no [sinks.{', '.join(sorted(set(names) - set(out)))}] table")
        return out

    # -- the pipeline --------------------------------------------------------------------------------------

    def ingest(
        self,
        rt: _StreamRuntime,
        ctx: StreamContext,
        items: Sequence[dict[str, Any]],
        cursor: Any,
        *,
        final: bool = False,
        save_checkpoint: bool = True,
        lease_owner: str | None = None,
    ) -> PageResult:
        """Run one page of raw items through the pipeline and commit it (with the cursor) atomically.

        ``lease_owner``: commit only while that owner holds the stream's lease (else :class:`LeaseLost`)."""
        processed = self._process(rt, ctx, items, final)
        checkpoint = Checkpoint(cursor, ctx.state) if save_checkpoint else None
        audit = AuditEvent("page.commit", f"{rt.adapter.name}:{rt.stream.name}", _page_details(items, cursor))
        page = PageWrite(
            rt.adapter.name,
            rt.stream.name,
            processed.records,
            processed.quarantined,
            checkpoint,
            lease_owner=lease_owner,
            audit=audit,
            drift=processed.drift,
        )
        (committed,) = self.store.commit_pages([page])
        assert committed is not None  # only a page with a webhook receipt can be skipped
        return processed.committed(committed)

    def _process(
        self, rt: _StreamRuntime, ctx: StreamContext, items: Sequence[dict[str, Any]], final: bool
    ) -> _Processed:
        """Validate and normalize a page (nothing is stored yet); ``rejected`` says which items were quarantined."""
        stream = rt.stream
        adapter = rt.adapter.name
        processed = _Processed(PageResult(adapter, stream.name, items=len(items)))
        result = processed.result
        records = processed.records
        quarantined = processed.quarantined
        rejected = processed.rejected
        raw_valid = rt.raw_schema.is_valid
        record_valid = rt.record_schema.is_valid
        id_field = stream.id_field
        known = rt.known_fields
        drift = processed.drift

        def reject(index: int, stage: str, item: dict[str, Any], problems: Sequence[Problem]) -> None:
            quarantined.append(self._quarantine(stage, item, id_field, problems))
            if index >= 0:
                rejected.setdefault(index, (stage, []))[1].extend(problems)

        def accept(index: int, out: Iterable[Any], item: dict[str, Any]) -> None:
            for rec in out:
                doc = rec.to_json_dict() if isinstance(rec, ReductionRecord) else rec
                if not record_valid(doc):
                    reject(index, "record", item, rt.record_schema.problems(doc))
                    continue
                records.append(self._new_record(doc))

        for index, item in enumerate(items):
            if not raw_valid(item):
                reject(index, "raw", item, rt.raw_schema.problems(item))
                continue
            if known is not None and not known.issuperset(item):
                for name in item.keys() - known:
                    count, example = drift.get(name, (0, ""))
                    drift[name] = (count + 1, example or redact(str(item.get(id_field, "")))[:128])
            try:
                out = list(stream.normalize(item, ctx))
            except ItemRejected as exc:
                reject(index, "normalize", item, exc.problems)
                continue
            except TanpuhuiError as exc:
                reject(index, "normalize", item, [Problem("", redact(str(exc)))])
                continue
            except Exception as exc:  # an adapter bug must not lose the item: keep it for replay after a fix
                log.exception("adapter %s stream %s: normalize raised", adapter, stream.name)
                problem = Problem("", redact(f"adapter error {type(exc).__name__}: {exc}"), "adapter")
                reject(index, "normalize", item, [problem])
                continue
            result.valid_items += 1
            accept(index, out, item)
        accept(-1, stream.flush(ctx, final), {})
        for rejection in ctx.rejections:
            quarantined.append(
                self._quarantine("incomplete", rejection.raw, id_field, rejection.problems, rejection.partner_record_id)
            )
        ctx.rejections.clear()
        return processed

    def _new_record(self, doc: dict[str, Any]) -> NewRecord:
        fingerprint = doc["fingerprint"]
        start = doc["period"]["start"]
        if type(doc) is RecordDoc and doc.start_text is start:  # from ctx.record, its period unchanged since
            seconds = doc.start_seconds
        else:
            seconds = int(datetime.fromisoformat(start).timestamp())
        neighbour = neighbour_fingerprint_at(fingerprint, seconds, self.config.hub.fingerprint_window_minutes)
        kg = doc["quantification"]["reduction_kgco2e"]
        return NewRecord(doc["record_id"], fingerprint, doc["scenario"], kg, orjson.dumps(doc), neighbour)

    def _quarantine(
        self,
        stage: str,
        item: dict[str, Any],
        id_field: str,
        problems: Sequence[Problem],
        partner_record_id: str = "",
    ) -> NewQuarantine:
        pid = partner_record_id or str(item.get(id_field, "") if isinstance(item, dict) else "")
        sealed = self.pseudonymiser.seal(orjson.dumps(item))
        return NewQuarantine(stage, redact(pid)[:256], sealed, list(problems))

    async def pull(
        self,
        adapter_name: str,
        stream_name: str | None = None,
        *,
        progress: Progress | None = None,
        max_pages: int | None = None,
    ) -> list[PullSummary]:
        """Pull one stream (or every pull stream of the adapter) from its saved cursor to the end."""
        adapter = self.adapter(adapter_name)
        names = [stream_name] if stream_name else [s.name for s in adapter.streams() if isinstance(s, PullStream)]
        return [await self._pull_stream(adapter_name, name, progress, max_pages) for name in names]

    async def _pull_stream(
        self, adapter_name: str, stream_name: str, progress: Progress | None, max_pages: int | None
    ) -> PullSummary:
        rt = self.runtime(adapter_name, stream_name)
        if not isinstance(rt.stream, PullStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a push stream; partners send it to the sidecar")
        summary = PullSummary(adapter_name, stream_name)
        started = time.perf_counter()
        ttl = self.config.hub.lease_ttl
        async with hold_lease(self.store, adapter_name, stream_name, self.replica_id, ttl) as lease:
            if lease is None:
                summary.leased_elsewhere = True
                log.info("pull %s:%s skipped: another replica holds its lease", adapter_name, stream_name)
            else:
                await self._pull_leased(rt, summary, lease, progress, max_pages)
        summary.seconds = time.perf_counter() - started
        return summary

    async def _pull_leased(
        self,
        rt: _StreamRuntime,
        summary: PullSummary,
        lease: HeldLease,
        progress: Progress | None,
        max_pages: int | None,
    ) -> None:
        """Pull from the committed cursor (read once the lease is ours), each page committed under the lease."""
        adapter_name, stream_name = summary.adapter, summary.stream
        stream = rt.stream
        assert isinstance(stream, PullStream)
        checkpoint = self.store.load_checkpoint(adapter_name, stream_name)
        ctx = rt.context(dict(checkpoint.state))
        cursor = checkpoint.cursor
        seen = _CursorsSeen(cursor)
        pages = stream.pages(ctx, cursor)
        if stream.prefetch:
            pages = _ahead(pages, max_pages)
        try:
            async for page in pages:
                if lease.lost:
                    raise LeaseLost(adapter_name, stream_name, lease.owner)
                _check_loop(adapter_name, stream_name, seen, cursor, summary.pages)
                if stream.prefetch:  # off the event loop: the next page's request runs meanwhile
                    result = await asyncio.to_thread(
                        self.ingest, rt, ctx, page.items, page.cursor, lease_owner=lease.owner
                    )
                else:
                    result = self.ingest(rt, ctx, page.items, page.cursor, lease_owner=lease.owner)
                cursor = page.cursor
                summary.add(result)
                if progress:
                    progress(result)
                if max_pages is not None and summary.pages >= max_pages:
                    break
            else:
                result = self.ingest(rt, ctx, [], cursor, final=True, lease_owner=lease.owner)
                if result.records or result.quarantined:
                    summary.add(result)
                    summary.pages -= 1
        except LeaseLost as exc:
            # Another replica took the stream over (this one stalled past the lease): it carries on from the
            # last page committed here; nothing of the refused page was written.
            summary.error = str(exc)
            log.warning("pull %s:%s stopped: %s", adapter_name, stream_name, summary.error)
        except TanpuhuiError as exc:
            summary.error = redact(str(exc))
            self.store.record_stream_error(adapter_name, stream_name, summary.error)
            log.error("pull %s:%s stopped: %s", adapter_name, stream_name, summary.error)
        finally:
            aclose = getattr(pages, "aclose", None)
            if aclose is not None:
                await aclose()  # a prefetch in flight is cancelled; the stream's generator is closed
        if summary.drift:
            fields = ", ".join(f"{name} ({count} items)" for name, count in sorted(summary.drift.items()))
            log.warning(
                "pull %s:%s: the partner sends fields its schema does not name (accepted, kept in the drift "
                "report): %s",
                adapter_name,
                stream_name,
                redact(fields),
            )

    def receive(self, adapter_name: str, stream_name: str, headers: Mapping[str, str], body: bytes) -> PageResult:
        """Handle one pushed request: verify its signature, parse it, and commit its items.

        Raises ``SignatureError`` (reject with 401) or ``PartnerResponseError`` (400) before anything is stored;
        schema-invalid items are quarantined and reported in the result, never rejected as a whole.
        """
        rt = self.runtime(adapter_name, stream_name)
        stream = rt.stream
        if not isinstance(stream, PushStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a pull stream; it cannot receive pushes")
        stream.verify(headers, body)
        items = stream.parse(body, headers)
        checkpoint = self.store.load_checkpoint(adapter_name, stream_name)
        ctx = rt.context(dict(checkpoint.state))
        return self.ingest(rt, ctx, items, checkpoint.cursor)

    # -- webhooks with receipts (the sidecar) ----------------------------------------------------------------

    def push_runtime(self, adapter_name: str, stream_name: str) -> _StreamRuntime:
        """The runtime of a push stream; ConfigError for a pull stream or an unknown one."""
        rt = self.runtime(adapter_name, stream_name)
        if not isinstance(rt.stream, PushStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a pull stream; it cannot receive pushes")
        return rt

    def verify_push(self, adapter_name: str, stream_name: str, headers: Mapping[str, str], body: bytes) -> str:
        """Check a webhook request's signature; returns its webhook id (the idempotency key).

        Raises ``SignatureError`` for every missing, malformed, stale or wrong signature header.
        """
        rt = self._runtimes.get((adapter_name, stream_name)) or self.push_runtime(adapter_name, stream_name)
        stream = rt.stream
        if not isinstance(stream, PushStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a pull stream; it cannot receive pushes")
        return stream.verify(headers, body)

    def prepare_push(
        self,
        adapter_name: str,
        stream_name: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        states: dict[tuple[str, str], tuple[Any, StreamContext]] | None = None,
    ) -> PreparedPush | PushOutcome:
        """Parse, validate and normalize a verified request (nothing is stored yet), or answer it at once.

        Answers at once: a repeat of an id already committed (its stored answer, ``replayed``), the same id with
        another body (422), a body the stream cannot parse (400). ``states`` carries each stream's cursor and
        context (with its pending state) from one request to the next of a group committed together
        (:meth:`commit_pushes`), as the pages of one pull run share theirs.
        """
        rt = self._runtimes.get((adapter_name, stream_name)) or self.push_runtime(adapter_name, stream_name)
        stream = rt.stream
        if not isinstance(stream, PushStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a pull stream; it cannot receive pushes")
        digest = hashlib.sha256(body).hexdigest()
        stored = self.store.receipt_get(adapter_name, stream_name, key)
        if stored is not None:
            return _answer_from(stored, digest)
        try:
            items = stream.parse(body, headers)
        except TanpuhuiError as exc:
            return PushOutcome(400, problem_body(400, "Bad Request", str(exc)))
        slot = (adapter_name, stream_name)
        held = states.get(slot) if states is not None else None
        if held is None:
            checkpoint = self.store.load_checkpoint(adapter_name, stream_name)
            held = (checkpoint.cursor, rt.context(dict(checkpoint.state)))
            if states is not None:
                states[slot] = held
        cursor, ctx = held
        processed = self._process(rt, ctx, items, False)
        receipt = NewReceipt(key, digest, 200, self._push_answer(key, processed))
        return PreparedPush(rt, key, processed, Checkpoint(cursor, ctx.state), receipt)

    def commit_pushes(self, prepared: Sequence[PreparedPush]) -> list[PushOutcome]:
        """Commit prepared requests in ONE transaction, each with its answer stored under its webhook id."""
        writes = [
            PageWrite(
                p.rt.adapter.name,
                p.rt.stream.name,
                p.processed.records,
                p.processed.quarantined,
                p.checkpoint,
                p.receipt,
                audit=AuditEvent(
                    "webhook.accept",
                    f"{p.rt.adapter.name}:{p.rt.stream.name}",
                    {"webhook_id": p.key, "request_sha256": p.receipt.request_hash, "items": p.processed.result.items},
                    actor="partner",
                ),
                drift=p.processed.drift,
            )
            for p in prepared
        ]
        out = []
        for p, committed in zip(prepared, self.store.commit_pages(writes), strict=True):
            if committed is not None:
                out.append(PushOutcome(p.receipt.status, p.receipt.body, p.processed.committed(committed)))
                continue
            # Another process committed the same webhook id first: answer as it did.
            stored = self.store.receipt_get(p.rt.adapter.name, p.rt.stream.name, p.key)
            assert stored is not None
            out.append(_answer_from(stored, p.receipt.request_hash))
        return out

    def receive_webhook(
        self, adapter_name: str, stream_name: str, headers: Mapping[str, str], body: bytes
    ) -> PushOutcome:
        """Verify, process and commit one webhook request with its receipt (the sidecar's path, unbatched).

        Raises ``SignatureError`` before anything is read or stored.
        """
        key = self.verify_push(adapter_name, stream_name, headers, body)
        prepared = self.prepare_push(adapter_name, stream_name, key, headers, body)
        if isinstance(prepared, PushOutcome):
            return prepared
        (outcome,) = self.commit_pushes([prepared])
        return outcome

    @staticmethod
    def _push_answer(key: str, processed: _Processed) -> bytes:
        """The 200 body: totals and one result per item (quarantined ones with their JSON-pointer errors)."""
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
                "webhook_id": key,
                "adapter": result.adapter,
                "stream": result.stream,
                "items": result.items,
                "accepted": result.items - len(rejected),
                "quarantined": len(rejected),
                "records": len(processed.records),
                "results": results,
            }
        )

    # -- quarantine ----------------------------------------------------------------------------------------

    def quarantine_raw(self, entry: QuarantineEntry) -> Any:
        """The quarantined raw item, unsealed (only for replay and masked display)."""
        return orjson.loads(self.pseudonymiser.unseal(entry.sealed_raw))

    async def replay_quarantine(self, ids: Sequence[int]) -> list[ReplayResult]:
        """Re-run quarantined items through the pipeline (after a partner fix or an adapter upgrade).

        Items that now pass are committed and the entry marked ``resolved``; others stay open with the new errors.
        Entries from the "incomplete" stage (e.g. unpaired tap-ins) replay through ``normalize`` like any item.
        """
        results = []
        for entry_id in ids:
            entry = self.store.quarantine_get(entry_id)
            if entry is None or entry.status != "open":
                results.append(ReplayResult(entry_id, "missing", []))
                continue
            rt = self.runtime(entry.adapter, entry.stream)
            item = self.quarantine_raw(entry)
            checkpoint = self.store.load_checkpoint(entry.adapter, entry.stream)
            ctx = rt.context(dict(checkpoint.state))
            try:
                await rt.stream.prepare(ctx)
            except TanpuhuiError as exc:
                results.append(ReplayResult(entry_id, "failed", [Problem("", redact(str(exc)), "prepare")]))
                continue
            problems = rt.raw_schema.problems(item) if isinstance(item, dict) else [Problem("", "not a JSON object")]
            if not problems:
                try:
                    out = [
                        r.to_json_dict() if isinstance(r, ReductionRecord) else r
                        for r in rt.stream.normalize(item, ctx)
                    ]
                except ItemRejected as exc:
                    problems = exc.problems
                except TanpuhuiError as exc:
                    problems = [Problem("", redact(str(exc)))]
                else:
                    problems = [p for doc in out for p in rt.record_schema.problems(doc)]
                    if not problems:
                        new = [self._new_record(d) for d in out]
                        # replay must not move the cursor, but pending state (e.g. a tap-in now open) is kept
                        audit = AuditEvent(
                            "quarantine.replay", f"{entry.adapter}:{entry.stream}", {"entry_id": entry_id}
                        )
                        page = PageWrite(
                            entry.adapter, entry.stream, new, [], Checkpoint(checkpoint.cursor, ctx.state), audit=audit
                        )
                        self.store.commit_pages([page])
                        self.store.quarantine_resolve(entry_id, "resolved")
                        results.append(ReplayResult(entry_id, "resolved", []))
                        continue
            results.append(ReplayResult(entry_id, "failed", list(problems)))
        return results

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
        self.store.close()


def _answer_from(stored: WebhookReceipt, digest: str) -> PushOutcome:
    if stored.request_hash != digest:
        detail = (
            f"webhook id {stored.key!r} was already received on {stored.created_at} with another body; "
            "a new message needs a new webhook id"
        )
        return PushOutcome(422, problem_body(422, "Unprocessable Content", detail))
    return PushOutcome(stored.status, stored.body, None, replayed=True)


def _known_fields(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The top-level fields a partner schema names, when it admits others (then they are drift); None when it
    does not (unknown fields fail validation instead) or names none at the top level."""
    if schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False:
        return None
    names: set[str] = set()
    for part in (schema, *(s for key in ("allOf", "anyOf", "oneOf") for s in schema.get(key, ()))):
        props = part.get("properties") if isinstance(part, Mapping) else None
        if isinstance(props, Mapping):
            names.update(props)
    if not names or schema.get("patternProperties"):
        return None
    return frozenset(names)


async def _ahead(pages: AsyncIterator[Page], max_pages: int | None) -> AsyncIterator[Page]:
    """``pages``, with the request for the next page started as soon as one is handed out (``PullStream.prefetch``).

    An error of that request is raised when the page is asked for, i.e. after the page before it was committed.
    Past ``max_pages`` nothing is asked ahead (a run limited to N pages makes N requests).
    """

    async def following() -> Page:
        return await anext(pages)

    handed = 0
    pending: asyncio.Task[Page] | None = asyncio.ensure_future(following())
    try:
        while pending is not None:
            try:
                page = await pending
            except StopAsyncIteration:
                pending = None
                return
            handed += 1
            pending = asyncio.ensure_future(following()) if max_pages is None or handed < max_pages else None
            yield page
            if pending is None:
                pending = asyncio.ensure_future(following())
    finally:
        if pending is not None:
            if not pending.done():
                pending.cancel()
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # seen: a request error after the last page taken is not reported twice
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


def _page_details(items: Sequence[Any], cursor: Any) -> dict[str, Any]:
    """What a page's audit entry says about the page itself: its size and a digest of the cursor it moves to."""
    return {"items": len(items), "cursor_sha256": hashlib.sha256(_cursor_key(cursor)).hexdigest()}


def _cursor_key(cursor: Any) -> bytes:
    """A cursor's canonical bytes, to hash (short-lived: an ``orjson.dumps`` result keeps orjson's whole output
    buffer, at least 4 KiB however short the cursor)."""
    try:
        return orjson.dumps(cursor, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(cursor).encode()


_LOOP_WINDOW = 1024
"""Pages whose cursors a pull run remembers exactly (16-byte digests): a loop through at most this many pages
stops at its first repeated cursor; a longer one is caught by the Brent mark of :class:`_CursorsSeen`."""


class _CursorsSeen:
    """The cursors a pull run continued from, for :func:`_check_loop`, in bounded memory however long the run.

    Kept exactly, as digests: the run's first cursor and those of the last ``window`` pages. A loop through more
    pages than that is caught by Brent's cycle detection: one more cursor, the mark, is moved to the current
    page's at pages 1, 2, 4, 8, ...; once the mark is in a loop of L pages and stays for L pages, the loop comes
    back to it. So every loop is stopped: one of L pages entered after page S by page 2 * max(S + 1, L) + L at the
    latest. (Keeping every cursor grew a pull by ~4 KiB a page, the ``orjson.dumps`` buffer behind each key:
    ~65 MB at 10M records.)
    """

    __slots__ = ("_first", "_mark", "_mark_page", "_next_mark", "_order", "_recent", "_window")

    def __init__(self, cursor: Any, window: int | None = None) -> None:
        self._window = max(1, _LOOP_WINDOW if window is None else window)
        self._first = _cursor_digest(cursor)
        self._recent: dict[bytes, int] = {}
        self._order: deque[bytes] = deque()
        self._mark = self._first
        self._mark_page = 0
        self._next_mark = 1

    def __len__(self) -> int:
        """How many cursors are held (the first and the mark aside): at most ``window``."""
        return len(self._recent)

    def add(self, cursor: Any, page: int) -> int | None:
        """Note ``cursor`` as page ``page``'s; if it was seen before: the page that gave it (0: the run's start)."""
        key = _cursor_digest(cursor)
        if key == self._first:
            return 0
        first = self._recent.get(key)
        if first is None and key == self._mark:
            first = self._mark_page
        if first is not None:
            return first
        self._recent[key] = page
        self._order.append(key)
        if len(self._order) > self._window:
            del self._recent[self._order.popleft()]
        if page >= self._next_mark:
            self._mark, self._mark_page, self._next_mark = key, page, 2 * page
        return None


def _cursor_digest(cursor: Any) -> bytes:
    return hashlib.blake2b(_cursor_key(cursor), digest_size=16).digest()


def _check_loop(adapter: str, stream: str, seen: _CursorsSeen, cursor: Any, pages: int) -> None:
    """Before the next page: the cursor it continues from (page ``pages``'s) must be new in this run.

    A partner whose paging leads back to a cursor it already gave (``A -> B -> A``, or the same one again) would
    be asked for the same pages forever; dedup keeps the outbox right, but the run would never end. Only the
    cursor of the last page of a run may repeat (an empty last page keeps the cursor), and no page follows it.
    A loop through up to ``_LOOP_WINDOW`` pages stops at its first repeated cursor, a longer one a little later
    (see :class:`_CursorsSeen`).
    """
    if pages == 0:
        return
    first = seen.add(cursor, pages)
    if first is not None:
        where = "the cursor the run started from" if first == 0 else f"the cursor of page {first}"
        raise PartnerResponseError(
            f"{adapter}:{stream}: the partner's paging loops: page {pages} gave {where} again; stopping instead "
            f"of pulling the same pages forever (pages 1-{pages} are committed)"
        )
