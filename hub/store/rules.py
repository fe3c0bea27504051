"""The store's rules, written once for every database: what a commit does, counts and leaves in the audit log.

:class:`RuleStore` implements :class:`~.base.Store`, :class:`~tanpuhui.hub.audit.AuditLog` and
:class:`~.base.DriftLog` over a :class:`~.dialect.Dialect`, which opens the connections and says each statement
in its database's SQL. The rules:

- a page commits in ONE transaction: its webhook receipt first (on file already: nothing else of the page is
  written and its result is None), its records (dedup by record id; a record whose behaviour fingerprint, or the
  neighbouring window's, another adapter claimed first is held, not forwarded), its quarantine entries (an item
  whose digest an entry of the stream has already, or an item before it in the page, is a repeat of that entry:
  counted, no new entry), its checkpoint (None: left alone) and its schema drift; corrections, voids and the
  no-double-credit overlap rules (:mod:`.revisions`: their own outbox rows, never a changed one); a page committed
  under a lease
  another owner holds now fails the whole group (:class:`~.leases.LeaseLost`, nothing written);
- every committed page, dead letter added or deleted, quarantine entry resolved and receipt prune appends an
  entry to the audit log (:mod:`tanpuhui.hub.audit`) in its transaction, as its last statements: entries chain
  from ``meta.audit_head`` (``seq:hash``), updated with them, and the dialect serialises appends across writers
  (SQLite: one writer; PostgreSQL: an advisory lock held to the commit). A page's entry carries what it
  committed: counts, the ``seq`` range of its outbox rows and their digest, its new quarantine ids (and how
  many items were repeats), unknown fields.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import orjson

from tanpuhui.sdk import OutboxRow

from ..audit import GENESIS, AuditEntry, AuditEvent, batch_digest, canonical_entry_hash
from .base import (
    Checkpoint,
    CommitResult,
    DayCount,
    DeadLetter,
    DriftEntry,
    Lease,
    LeaseHeld,
    LeaseLost,
    NewRecord,
    OnePageCommit,
    PageWrite,
    QuarantineEntry,
    RunRecord,
    SinkBacklog,
    StreamStatus,
    WebhookReceipt,
)
from .dialect import Dialect, OutboxInsert, QuarantineRow, T, utc_now
from .queries import AuditQuery, DeadLetterQuery, QuarantineQuery
from .revisions import Revisions
from .sink_log import SinkFailure, StoredSinkState

__all__ = ["RuleStore"]

P = ParamSpec("P")
R = TypeVar("R")

_Encoded = tuple[tuple[str, str] | None, list[QuarantineRow]]
_NOTHING = OutboxInsert(0, None, ())


class RuleStore(OnePageCommit, Generic[T]):
    """The store on one database, its rules written once (see the module docstring)."""

    def __init__(self, sql: Dialect[T]) -> None:
        self.sql = sql
        self.revisions = Revisions(sql)

    def _reading(self, statement: Callable[Concatenate[T, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self.sql.read() as tx:
            return statement(tx, *args, **kwargs)

    def _writing(self, statement: Callable[Concatenate[T, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self.sql.write() as tx:
            return statement(tx, *args, **kwargs)

    # -- pull / ingest -------------------------------------------------------------------------------------------

    def load_checkpoint(self, adapter: str, stream: str) -> Checkpoint:
        return self._reading(self.sql.load_checkpoint, adapter, stream)

    def commit_pages(self, pages: Sequence[PageWrite]) -> list[CommitResult | None]:
        # Encoded before the transaction: a value that cannot be stored fails here, with nothing written.
        encoded = [_encode(page) for page in pages]
        now = utc_now()
        sql = self.sql
        out: list[CommitResult | None] = []
        events: list[AuditEvent] = []
        with sql.write() as tx:
            sql.lock_pages(tx, pages)
            for page in pages:
                owner = page.lease_owner
                if owner is not None and sql.lease_holder(tx, page.adapter, page.stream) != owner:
                    raise LeaseLost(page.adapter, page.stream, owner)
            for page, (checkpoint, quarantine) in zip(pages, encoded, strict=True):
                # The receipt first, so that a repeat writes nothing else.
                receipt = page.receipt
                if receipt is not None and not sql.insert_receipt(tx, page.adapter, page.stream, receipt, now):
                    out.append(None)
                    continue
                result, page_events = self._write_page(tx, page, checkpoint, quarantine, now)
                out.append(result)
                events.extend(page_events)
            self._append(tx, events, now)
        return out

    def _write_page(
        self,
        tx: T,
        page: PageWrite,
        checkpoint: tuple[str, str] | None,
        quarantine: list[QuarantineRow],
        now: str,
    ) -> tuple[CommitResult, list[AuditEvent]]:
        sql = self.sql
        adapter, stream, records = page.adapter, page.stream, page.records
        fresh: Sequence[NewRecord] = records
        held = 0
        holds: list[tuple[str, str, str, bytes]] = []
        if records:
            claimed = self._claimed_elsewhere(tx, adapter, records)
            if claimed:
                fresh = [r for r in records if r.record_id not in claimed]
                holds = [
                    (r.record_id, r.fingerprint, claimed[r.record_id], r.body)
                    for r in records
                    if r.record_id in claimed
                ]
        revision = self.revisions.before_insert(tx, adapter, stream, fresh)
        fresh = revision.records
        holds += revision.held
        if holds:
            held = sql.insert_held(tx, adapter, stream, holds, now)
        outbox = sql.insert_outbox(tx, adapter, stream, fresh, now) if fresh else _NOTHING
        inserted = outbox.inserted
        inserted_ids = None
        if inserted != len(records) or revision.supersedes or len(fresh) != len(records):
            inserted_ids = frozenset(r.record_id for r in fresh) if outbox.ids is None else outbox.ids
        revised = self.revisions.after_insert(tx, adapter, stream, revision, inserted_ids, page.voids, now)
        quarantine_ids = sql.insert_quarantine(tx, adapter, stream, quarantine, now) if quarantine else []
        if checkpoint is not None:
            sql.upsert_checkpoint(tx, adapter, stream, checkpoint[0], checkpoint[1], now)
        if page.drift:
            sql.upsert_drift(tx, adapter, stream, page.drift, now)
        if page.day_counts:
            sql.write_day_counts(tx, adapter, stream, page.day_counts, now)
        # A held claim already on file (the same item pulled again) is a duplicate like any other; so is a
        # quarantined item whose digest an entry has (the same bad item pulled again): counted, no new entry.
        result = CommitResult(
            inserted,
            len(records) - inserted - held,
            held,
            len(quarantine_ids),
            inserted_ids,
            len(page.quarantined) - len(quarantine_ids),
            # Not for a page that revised rows (a correction's kind is set after its insert; voids and nettings add
            # rows of their own): the in-memory feed would hand them on as plain creations, so it reads them back.
            () if revision.supersedes or revised else outbox.seq_runs,
        )
        if page.run is not None:
            counts = (result.inserted, result.duplicates, result.held, result.quarantined, result.quarantine_repeats)
            sql.run_add(tx, page.run.run_id, page.run.items, page.run.pages, counts)
        written = page if fresh is records else replace(page, records=fresh)
        event = _page_event(written, result, outbox, quarantine_ids, len(revision.supersedes))
        return result, [event, *revised]

    def _claimed_elsewhere(self, tx: T, adapter: str, records: Sequence[NewRecord]) -> dict[str, str]:
        """record_id -> the record of another adapter that already claimed the same behaviour."""
        keys = list(
            dict.fromkeys(
                [r.fingerprint for r in records]
                + [r.neighbour for r in records if r.neighbour]
                + [a for r in records for a in r.aliases]
            )
        )
        hits: dict[str, list[str]] = {}  # fingerprint -> record ids of other adapters (rare: a claim across sources)
        for fingerprint, other_id in self.sql.claims(tx, adapter, keys):
            hits.setdefault(fingerprint, []).append(other_id)
        claimed: dict[str, str] = {}
        if hits:
            for r in records:
                for key in (r.fingerprint, r.neighbour, *r.aliases):
                    for other_id in hits.get(key, ()):
                        if r.record_id != other_id:
                            claimed.setdefault(r.record_id, other_id)
        return claimed

    # -- run history ---------------------------------------------------------------------------------------------

    def run_begin(self, adapter: str, stream: str, owner: str) -> int:
        return self._writing(self.sql.run_begin, adapter, stream, owner, utc_now())

    def run_end(self, run_id: int, outcome: str, error: str | None, seconds: float) -> None:
        self._writing(self.sql.run_end, run_id, outcome, error, seconds, utc_now())

    def runs(self, adapter: str | None = None, stream: str | None = None, limit: int = 100) -> list[RunRecord]:
        return self._reading(self.sql.runs, adapter, stream, limit)

    def latest_runs(self) -> list[RunRecord]:
        return self._reading(self.sql.latest_runs)

    def prune_runs(self, before: str) -> int:
        return self._writing(self.sql.prune_runs, before)

    def record_stream_error(self, adapter: str, stream: str, message: str) -> None:
        self._writing(self.sql.record_stream_error, adapter, stream, message, utc_now())

    def stream_status(self) -> list[StreamStatus]:
        return self._reading(self.sql.stream_status)

    def split_checkpoints(self, adapter: str, base: str) -> list[StreamStatus]:
        return self._reading(self.sql.split_checkpoints, adapter, base)

    def drop_checkpoints(
        self, adapter: str, streams: Sequence[str], event: AuditEvent, *, lifting: Collection[str] = ()
    ) -> None:
        now = utc_now()
        with self.sql.write() as tx:
            held = [x for x in self.sql.leases(tx) if x.adapter == adapter and x.stream in streams]
            if any(x.owner not in lifting for x in held):
                raise LeaseHeld([x for x in held if x.owner not in lifting])
            self.sql.delete_checkpoints(tx, adapter, streams)
            self._append(tx, [event], now)

    def schema_drift(self, adapter: str | None = None) -> list[DriftEntry]:
        return self._reading(self.sql.schema_drift, adapter)

    # -- the audit log -------------------------------------------------------------------------------------------

    def _append(self, tx: T, events: Sequence[AuditEvent], now: str) -> list[AuditEntry]:
        """Append ``events`` in the caller's transaction (as its last statements), chained from the head."""
        if not events:
            return []
        head, at = self.sql.audit_begin(tx, now)
        if head is not None:
            head_seq, _, prev = head.partition(":")
            seq = int(head_seq)
        else:
            seq, prev = self.sql.audit_last(tx) or (0, GENESIS)
        entries = []
        rows = []
        for event in events:
            seq += 1
            details = dict(event.details)
            text = orjson.dumps(details, option=orjson.OPT_SORT_KEYS)  # canonical_details, made once
            digest = canonical_entry_hash(prev, seq, at, event.actor, event.action, event.subject, text)
            entries.append(AuditEntry(seq, at, event.actor, event.action, event.subject, details, prev, digest))
            rows.append((seq, at, event.actor, event.action, event.subject, text.decode(), prev, digest))
            prev = digest
        self.sql.insert_audit(tx, rows)
        self.sql.set_audit_head(tx, f"{seq}:{prev}")
        return entries

    def audit_append(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        return self._writing(self._append, events, utc_now())

    def audit_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        return self._reading(self.sql.audit_entries, after_seq, limit)

    def audit_find(self, query: AuditQuery, before: int = 0, limit: int = 100) -> list[AuditEntry]:
        return self._reading(self.sql.audit_find, query, before, limit)

    def audit_count(self, query: AuditQuery) -> int:
        return self._reading(self.sql.audit_count, query)

    def audit_head(self) -> tuple[int, str] | None:
        head = self._reading(self.sql.audit_head)
        if head is None:
            return None
        seq, _, digest = head.partition(":")
        return (int(seq), digest) if seq.isdigit() else (-1, head)

    def audit_outbox_rows(self, first_seq: int, last_seq: int) -> list[tuple[str, bytes]]:
        return self._reading(self.sql.audit_outbox_rows, first_seq, last_seq)

    # -- leases --------------------------------------------------------------------------------------------------

    def acquire_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        return self._writing(self.sql.acquire_lease, adapter, stream, owner, ttl)

    def renew_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        return self._writing(self.sql.renew_lease, adapter, stream, owner, ttl)

    def release_lease(self, adapter: str, stream: str, owner: str) -> None:
        self._writing(self.sql.release_lease, adapter, stream, owner)

    def leases(self) -> list[Lease]:
        return self._reading(self.sql.leases)

    # -- forwarding ----------------------------------------------------------------------------------------------

    def sink_position(self, sink: str) -> int:
        return self._reading(self.sql.sink_position, sink)

    def read_outbox(self, after_seq: int, limit: int) -> list[OutboxRow]:
        return self._reading(self.sql.read_outbox, after_seq, limit)

    def outbox_max_seq(self) -> int:
        return self._reading(self.sql.outbox_max_seq)

    def sink_backlog(self, sink: str) -> SinkBacklog:
        return self._reading(self.sql.sink_backlog, sink)

    def advance_sink(self, sink: str, upto_seq: int, dead: Sequence[tuple[OutboxRow, int, str]] = ()) -> None:
        now = utc_now()
        with self.sql.write() as tx:
            self.sql.advance_sink(tx, sink, upto_seq)
            if not dead:
                self.sql.sink_delivered(tx, sink, now)
            else:
                rows = [(row.seq, row.record_id, attempts, error) for row, attempts, error in dead]
                self.sql.insert_dead_letters(tx, sink, rows, now)
                seqs = [row.seq for row, _, _ in dead]
                details = {
                    "count": len(dead),
                    "first_seq": min(seqs),
                    "last_seq": max(seqs),
                    "error": dead[-1][2][:300],
                }
                self._append(tx, [AuditEvent("deadletter.add", sink, details)], now)

    def sink_state_save(self, state: StoredSinkState, error: str | None = None) -> None:
        self._writing(self.sql.sink_state_save, state, error, utc_now())

    def sink_states(self) -> dict[str, StoredSinkState]:
        return self._reading(self.sql.sink_states)

    def sink_failures(self, sink: str | None = None, limit: int = 20) -> list[SinkFailure]:
        return self._reading(self.sql.sink_failures, sink, limit)

    def dead_letters_find(
        self, query: DeadLetterQuery, after: int = 0, limit: int = 100, *, newest: bool = False
    ) -> list[DeadLetter]:
        return self._reading(self.sql.dead_letters_find, query, after, limit, newest)

    def dead_letters_count(self, query: DeadLetterQuery) -> int:
        return self._reading(self.sql.dead_letters_count, query)

    def dead_letter_ids(self, query: DeadLetterQuery) -> list[int]:
        return self._reading(self.sql.dead_letter_ids, query)

    def dead_letters_by_sink(self) -> dict[str, int]:
        return self._reading(self.sql.dead_letters_by_sink)

    def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return self._reading(self.sql.dead_letters, sink, limit)

    def dead_letter_rows(self, ids: Sequence[int]) -> list[tuple[DeadLetter, OutboxRow]]:
        return self._reading(self.sql.dead_letter_rows, ids)

    def delete_dead_letters(self, ids: Sequence[int]) -> None:
        with self.sql.write() as tx:
            if self.sql.delete_dead_letters(tx, ids):
                self._append(tx, [AuditEvent("deadletter.delete", "dead_letters", {"ids": sorted(ids)})], utc_now())

    # -- quarantine ----------------------------------------------------------------------------------------------

    def quarantine_list(
        self, adapter: str | None = None, status: str = "open", limit: int = 100
    ) -> list[QuarantineEntry]:
        return self._reading(self.sql.quarantine_list, adapter, status, limit)

    def quarantine_find(self, query: QuarantineQuery, after: int = 0, limit: int = 100) -> list[QuarantineEntry]:
        return self._reading(self.sql.quarantine_find, query, after, limit)

    def quarantine_count(self, query: QuarantineQuery) -> int:
        return self._reading(self.sql.quarantine_count, query)

    def quarantine_ids(self, query: QuarantineQuery) -> list[int]:
        return self._reading(self.sql.quarantine_ids, query)

    def quarantine_facets(self, status: str) -> dict[str, list[str]]:
        return self._reading(self.sql.quarantine_facets, status)

    def quarantine_get(self, entry_id: int) -> QuarantineEntry | None:
        return self._reading(self.sql.quarantine_get, entry_id)

    def quarantine_resolve(self, entry_id: int, status: str) -> None:
        now = utc_now()
        with self.sql.write() as tx:
            if self.sql.resolve_quarantine(tx, entry_id, status, now):
                event = AuditEvent("quarantine.resolve", f"quarantine:{entry_id}", {"status": status})
                self._append(tx, [event], now)

    # -- webhook receipts and the rest ---------------------------------------------------------------------------

    def recent_receipts(self, adapter: str, stream: str, limit: int = 200) -> list[WebhookReceipt]:
        return self._reading(self.sql.recent_receipts, adapter, stream, limit)

    def receipt_get(self, adapter: str, stream: str, key: str) -> WebhookReceipt | None:
        return self._reading(self.sql.receipt_get, adapter, stream, key)

    def day_counts(self, adapter: str, stream: str, keys: Collection[tuple[str, str, str]]) -> list[DayCount]:
        return self._reading(self.sql.day_counts, adapter, stream, keys) if keys else []

    def prune_receipts(self, before: str) -> int:
        with self.sql.write() as tx:
            pruned = self.sql.prune_receipts(tx, before)
            if pruned:
                event = AuditEvent("receipts.prune", "webhook_receipts", {"before": before, "count": pruned})
                self._append(tx, [event], utc_now())
            return pruned

    def check_writable(self) -> None:
        self._writing(self.sql.check_writable, utc_now())

    def counts(self) -> dict[str, int]:
        return self._reading(self.sql.counts)

    def pending_counts(self) -> dict[str, int]:
        return self._reading(self.sql.pending_counts)

    def close(self) -> None:
        self.sql.close()


def _encode(page: PageWrite) -> _Encoded:
    checkpoint = page.checkpoint
    encoded = (
        None
        if checkpoint is None
        else (orjson.dumps(checkpoint.cursor).decode(), orjson.dumps(checkpoint.state).decode())
    )
    rows: list[QuarantineRow] = []
    by_digest: dict[str, int] = {}  # digest -> its row: one per distinct item, with the last one's problems
    for q in page.quarantined:
        row = QuarantineRow(
            q.stage,
            q.partner_record_id,
            orjson.dumps([p.as_dict() for p in q.problems]).decode(),
            q.sealed_raw,
            q.digest or None,
            0,
        )
        at = by_digest.get(q.digest) if q.digest else None
        if at is None:
            if q.digest:
                by_digest[q.digest] = len(rows)
            rows.append(row)
        else:
            rows[at] = row._replace(repeats=rows[at].repeats + 1)
    return encoded, rows


def _page_event(
    page: PageWrite, result: CommitResult, outbox: OutboxInsert, quarantine_ids: list[int], corrections: int = 0
) -> AuditEvent:
    """The page's audit entry: the caller's (or ``page.commit``) with what this commit did added."""
    given = page.audit or AuditEvent("page.commit", f"{page.adapter}:{page.stream}")
    details: dict[str, Any] = {
        **given.details,
        "inserted": result.inserted,
        "duplicates": result.duplicates,
        "held": result.held,
        "quarantined": result.quarantined,
    }
    if result.inserted:
        ids = result.inserted_ids
        rows: list[tuple[str, bytes]]
        if ids is None:  # every record inserted, so no record id twice: each row as it came
            rows = [(r.record_id, r.body) for r in page.records]
        else:
            seen: set[str] = set()
            rows = []
            for r in page.records:  # inserted in this order, so in seq order
                if r.record_id in ids and r.record_id not in seen:
                    seen.add(r.record_id)
                    rows.append((r.record_id, r.body))
        runs = outbox.seq_runs
        details["first_seq"] = runs[0][0]
        details["last_seq"] = runs[-1][1]
        if len(runs) > 1:
            details["seq_ranges"] = [list(run) for run in runs]
        details["records_sha256"] = batch_digest(rows)
    if quarantine_ids:
        details["quarantine_ids"] = [min(quarantine_ids), max(quarantine_ids)]
    if result.quarantine_repeats:
        details["quarantine_repeats"] = result.quarantine_repeats
    if page.drift:
        details["unknown_fields"] = sorted(page.drift)
    if corrections:
        details["corrections"] = corrections
    withdrawn = sum(1 for v in page.voids if not v.raw_sha256)  # the others: items that credit nothing (now)
    if withdrawn:
        details["withdrawn"] = withdrawn
    return AuditEvent(given.action, given.subject, details, given.actor)
