"""The store interface: everything the hub keeps, behind one small protocol (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from tanpuhui.sdk import OutboxRow, Problem

from ..audit import AuditEvent
from .leases import SINK_LEASES, Lease, LeaseHeld, LeaseLost

__all__ = [
    "SINK_LEASES",
    "Checkpoint",
    "CommitResult",
    "DayCount",
    "DeadLetter",
    "DriftEntry",
    "DriftLog",
    "DuplicateReceipt",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "NewQuarantine",
    "NewReceipt",
    "NewRecord",
    "NewVoid",
    "OnePageCommit",
    "OverlapKey",
    "PageWrite",
    "QuarantineEntry",
    "RunCount",
    "RunLog",
    "RunRecord",
    "SinkBacklog",
    "Store",
    "StreamStatus",
    "WebhookReceipt",
]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a stream resumes: the partner cursor and the stream's own pending state."""

    cursor: Any = None
    state: dict[str, Any] = field(default_factory=dict)


class DayCount(NamedTuple):
    """One record counted by a ``max_per_day`` plausibility rule (:mod:`tanpuhui.hub.plausibility`): its place
    ``n`` among the distinct records of one subject (a pseudonym prefix) on one day, per adapter stream."""

    rule: str
    day: str
    subject: str
    record_id: str
    n: int


class NewRecord(NamedTuple):
    """A validated record ready for the outbox.

    ``neighbour`` is the fingerprint of the nearest neighbouring time window (see
    :func:`tanpuhui.sdk.records.fingerprint_claim_keys`); a claim of another source under either holds this one.
    A named tuple: one is built per record on the hot path, ~4x cheaper than a frozen dataclass.
    """

    record_id: str
    fingerprint: str
    scenario: str
    reduction_kgco2e: float
    body: bytes
    neighbour: str = ""
    partner_record_id: str = ""
    """The partner item the record comes from (``source.partner_record_id``); "" : not tracked for corrections
    (see :mod:`tanpuhui.hub.store.revisions`)."""
    head_stream: str = ""
    """The stream the item is tracked under (the one its record id derives from; "": the page's stream)."""
    raw_sha256: str = ""
    """``source.raw_sha256``: the same partner id with another hash is a correction."""
    overlaps: tuple[OverlapKey, ...] = ()
    """The no-double-credit rules the record takes part in (``[[hub.overlap]]``)."""
    aliases: tuple[str, ...] = ()
    """Claim keys of the same behaviour under the earlier pseudonym keys still configured (key rotation)."""


class OverlapKey(NamedTuple):
    """A record's part in an overlap rule: records of the rule with the same ``match_key`` (the same subject and
    day) in the other role are the same saving (see :mod:`tanpuhui.hub.store.revisions`)."""

    rule: str
    match_key: str
    role: str
    """``keep`` (credited in full), ``give`` (netted: the keep records' amounts are deducted) or ``withhold``."""
    action: str
    """``net`` or ``withhold``."""
    amount: float
    """The saving in the activity unit (baseline - activity, or the activity without a baseline)."""


@dataclass(frozen=True, slots=True)
class NewVoid:
    """A partner withdrew an item (``StreamContext.withdraw``): its current record, if any, is voided."""

    partner_record_id: str
    head_stream: str
    reason: str
    raw_sha256: str = ""
    """The raw item that withdrew it, when the partner re-sent the item and it yields no record (the pipeline's
    void of a stream with ``void_when_empty``): the item's head keeps this hash, so the item sent again as it was
    is a duplicate and sent again crediting something is a correction of the voided record."""


@dataclass(frozen=True, slots=True)
class NewQuarantine:
    """An item that failed; ``raw`` is the partner item (sealed by the store's caller before it reaches disk)."""

    stage: str  # "raw" | "normalize" | "record" | "incomplete"
    partner_record_id: str
    sealed_raw: bytes
    problems: Sequence[Problem]
    digest: str = ""
    """A keyed digest of the raw item: the same item quarantined again in the same adapter and stream is a repeat
    of its entry (``repeats`` and ``last_seen`` move on, the status stays; an open entry takes the new problems),
    not a new entry. Empty: never deduplicated."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    inserted: int
    duplicates: int
    held: int
    quarantined: int
    """New quarantine entries."""
    inserted_ids: frozenset[str] | None = None
    """The ids actually inserted when some records were not (duplicates, held claims); None: all were."""
    quarantine_repeats: int = 0
    """Quarantined items that were repeats of an entry on file (or earlier in the page): no new entry."""
    seq_runs: tuple[tuple[int, int], ...] = ()
    """The outbox ``seq`` values the inserted records took, as ascending ``(first, last)`` runs, in the order of
    the page's records (what :class:`tanpuhui.hub.feed.CommittedFeed` hands the forwarder without a read-back).
    Empty when the page also revised the outbox (corrections, voids, nettings): those rows are read back."""


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    adapter: str
    stream: str
    stage: str
    partner_record_id: str
    problems: list[dict[str, str]]
    sealed_raw: bytes
    status: str
    created_at: str
    resolved_at: str | None
    repeats: int = 0
    """How many times the same item (by ``NewQuarantine.digest``) was quarantined again after this entry."""
    last_seen: str = ""
    """When it was last quarantined (``created_at`` until it is repeated)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    sink: str
    seq: int
    record_id: str
    attempts: int
    error: str
    created_at: str


@dataclass(frozen=True, slots=True)
class StreamStatus:
    adapter: str
    stream: str
    cursor: Any
    last_success: str | None
    last_error: str | None
    last_error_at: str | None


@dataclass(frozen=True, slots=True)
class NewReceipt:
    """The answer given to a webhook request, kept under its webhook id (the idempotency key).

    Written in the transaction that commits the request's records, so a repeat of the request gets exactly the
    first answer, and an answer is never on file for records that are not.
    """

    key: str
    request_hash: str
    """Hex SHA-256 of the request body: the same id with another body is a misuse (422), not a repeat."""
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookReceipt:
    """A stored :class:`NewReceipt`."""

    adapter: str
    stream: str
    key: str
    request_hash: str
    status: int
    body: bytes
    created_at: str


class DuplicateReceipt(Exception):
    """:meth:`Store.commit_page` was given a receipt whose key is already on file; nothing was written."""

    def __init__(self, adapter: str, stream: str, key: str) -> None:
        super().__init__(f"{adapter}:{stream}: webhook {key!r} was already received")
        self.adapter = adapter
        self.stream = stream
        self.key = key


@dataclass(frozen=True, slots=True)
class PageWrite:
    """One page for :meth:`Store.commit_pages` (the arguments of :meth:`Store.commit_page`)."""

    adapter: str
    stream: str
    records: Sequence[NewRecord]
    quarantined: Sequence[NewQuarantine]
    checkpoint: Checkpoint | None
    receipt: NewReceipt | None = None
    lease_owner: str | None = None
    """Commit only while this owner holds the stream's lease (else :class:`LeaseLost`, nothing written)."""
    audit: AuditEvent | None = None
    """The batch's audit entry (action, subject, actor, details); a store that keeps an audit log appends it in
    the same transaction, adding what it committed (see :mod:`tanpuhui.hub.audit`). None: ``page.commit``."""
    drift: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    """Top-level fields the stream's schema does not name -> (items carrying it, an example partner id)."""
    voids: Sequence[NewVoid] = ()
    """Items the partner withdrew in this page: each voids the item's current record (a ``voided`` outbox row)."""
    run: RunCount | None = None
    """The pull run this page belongs to: a store that keeps run history adds the page's counts to its row in
    the same transaction, so a run's counters are exactly what it committed, even when it crashes midway."""
    day_counts: Sequence[DayCount] = ()
    """Records the page's ``max_per_day`` plausibility rules counted for the first time: stored with the page (a
    page that fails to commit counts nothing); the stream's counts of days before the latest but one are pruned."""


@dataclass(frozen=True, slots=True)
class RunCount:
    """Which run row a page's counts go to, how many partner items the page had, and whether it counts as a page
    (the flush at a stream's end does not)."""

    run_id: int
    items: int
    pages: int = 1


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One pull run of a stream, as kept in the run history.

    The counters are added page by page in each page's commit, so they always equal what the run committed; the
    sums over a stream's runs equal what the store holds from it, across retries and restarts. ``outcome`` is
    ``running`` until the run ends (``ok`` or ``error``); a run its process never ended (a crash) is marked
    ``interrupted`` when the stream's next run begins."""

    id: int
    adapter: str
    stream: str
    owner: str
    started_at: str
    finished_at: str | None
    seconds: float | None
    outcome: str
    pages: int
    items: int
    inserted: int
    duplicates: int
    held: int
    quarantined: int
    quarantine_repeats: int
    error: str | None


@runtime_checkable
class RunLog(Protocol):
    """A store that keeps the run history (one row per pull run; see :class:`RunRecord`)."""

    def run_begin(self, adapter: str, stream: str, owner: str) -> int:
        """Open a run row (``running``) and return its id; earlier ``running`` rows of the stream (whose process
        died: the caller holds the stream's lease) become ``interrupted``."""
        ...

    def run_end(self, run_id: int, outcome: str, error: str | None, seconds: float) -> None:
        """Close a run row with its outcome, error (redacted by the caller) and duration."""
        ...

    def runs(self, adapter: str | None = None, stream: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Runs newest first, optionally of one adapter or stream."""
        ...

    def latest_runs(self) -> list[RunRecord]:
        """The newest run of each stream that has one."""
        ...

    def prune_runs(self, before: str) -> int:
        """Forget runs started before the ISO timestamp ``before`` (the newest run of each stream is kept)."""
        ...


@dataclass(frozen=True, slots=True)
class DriftEntry:
    """A top-level field a partner sends that the stream's schema does not name (allowed, and reported)."""

    adapter: str
    stream: str
    field: str
    first_seen: str
    last_seen: str
    items: int
    """Items seen carrying it, over all pages."""
    example: str
    """The partner id of one item that carried it."""


@runtime_checkable
class DriftLog(Protocol):
    """A store that keeps the schema drift report (written from ``PageWrite.drift`` with the page)."""

    def schema_drift(self, adapter: str | None = None) -> list[DriftEntry]: ...


@dataclass(frozen=True, slots=True)
class SinkBacklog:
    """What waits in the outbox for one sink: rows after its position, and when the oldest was committed."""

    sink: str
    position: int
    depth: int
    oldest_created_at: str | None


class OnePageCommit(Protocol):
    """The page commits of a :class:`Store`: :meth:`commit_page` is written once, in terms of the store's own
    :meth:`commit_pages`."""

    def commit_pages(self, pages: Sequence[PageWrite]) -> list[CommitResult | None]:
        """Commit several pages in ONE transaction (group commit: one sync to disk for all), in order.

        A page whose receipt key is already on file is skipped (None in its place); the others are written.
        A page whose ``lease_owner`` does not hold its stream's lease fails the whole group (:class:`LeaseLost`)."""
        ...

    def commit_page(
        self,
        adapter: str,
        stream: str,
        records: Sequence[NewRecord],
        quarantined: Sequence[NewQuarantine],
        checkpoint: Checkpoint | None,
        *,
        receipt: NewReceipt | None = None,
        lease_owner: str | None = None,
    ) -> CommitResult:
        """Insert new records (dedup by record id; cross-source fingerprint claims are held), quarantine entries
        and the new checkpoint (None: leave it) atomically.

        With ``receipt``, the webhook's answer is stored in the same transaction; when its key is already on file
        nothing is written and :class:`DuplicateReceipt` is raised. With ``lease_owner``, the stream's lease must
        still be that owner's (checked in the same transaction): else nothing is written and :class:`LeaseLost`
        is raised."""
        page = PageWrite(adapter, stream, records, quarantined, checkpoint, receipt, lease_owner)
        (result,) = self.commit_pages([page])
        if result is None:
            assert receipt is not None
            raise DuplicateReceipt(adapter, stream, receipt.key)
        return result


class Store(OnePageCommit, Protocol):
    """Durable state of the hub. Every method is one transaction (the page commits: :class:`OnePageCommit`)."""

    def load_checkpoint(self, adapter: str, stream: str) -> Checkpoint: ...

    # leases: one replica pulls a stream (or, with adapter=SINK_LEASES, drains a sink) at a time; see .leases
    def acquire_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        """Take the lease for ``ttl`` seconds: True when it was free, expired or already ``owner``'s (extended)."""
        ...

    def renew_lease(self, adapter: str, stream: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` seconds from now; False when another owner has taken it."""
        ...

    def release_lease(self, adapter: str, stream: str, owner: str) -> None:
        """Give the lease back (nothing happens when ``owner`` does not hold it)."""
        ...

    def leases(self) -> list[Lease]:
        """The leases held now (unexpired), by adapter and stream."""
        ...

    def receipt_get(self, adapter: str, stream: str, key: str) -> WebhookReceipt | None: ...

    def day_counts(self, adapter: str, stream: str, keys: Collection[tuple[str, str, str]]) -> list[DayCount]:
        """The stream's committed plausibility day counts for ``keys`` (rule, day, subject)."""
        ...

    def prune_receipts(self, before: str) -> int:
        """Forget receipts created before the ISO timestamp ``before``; returns how many."""
        ...

    def check_writable(self) -> None:
        """Raise when the store cannot commit a transaction (readiness probes)."""
        ...

    def record_stream_error(self, adapter: str, stream: str, message: str) -> None: ...

    def split_checkpoints(self, adapter: str, base: str) -> list[StreamStatus]:
        """The checkpoint rows of pull stream ``base`` and of its parts in any split (``base_<i>of<N>``)."""
        ...

    def drop_checkpoints(
        self, adapter: str, streams: Sequence[str], event: AuditEvent, *, lifting: Collection[str] = ()
    ) -> None:
        """Remove the checkpoints of ``streams`` and their lapsed leases, and append ``event`` to the audit log, in
        one transaction; :class:`~.leases.LeaseHeld` (nothing written) while a lease on one of them is held, except
        by one of the owners ``lifting`` (removed with them: e.g. an operator's pause)."""
        ...

    def stream_status(self) -> list[StreamStatus]: ...

    # forwarding
    def sink_position(self, sink: str) -> int: ...

    def read_outbox(self, after_seq: int, limit: int) -> list[OutboxRow]: ...

    def outbox_max_seq(self) -> int: ...

    def sink_backlog(self, sink: str) -> SinkBacklog:
        """Rows after the sink's position and the commit time of the oldest (metrics)."""
        ...

    def advance_sink(self, sink: str, upto_seq: int, dead: Sequence[tuple[OutboxRow, int, str]] = ()) -> None:
        """Mark everything up to ``upto_seq`` handled for ``sink``; ``dead`` rows (row, attempts, error) become
        dead letters in the same transaction."""
        ...

    def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[DeadLetter]: ...

    def dead_letter_rows(self, ids: Sequence[int]) -> list[tuple[DeadLetter, OutboxRow]]: ...

    def delete_dead_letters(self, ids: Sequence[int]) -> None: ...

    # quarantine
    def quarantine_list(
        self, adapter: str | None = None, status: str = "open", limit: int = 100
    ) -> list[QuarantineEntry]: ...

    def quarantine_get(self, entry_id: int) -> QuarantineEntry | None: ...

    def quarantine_resolve(self, entry_id: int, status: str) -> None: ...

    def counts(self) -> dict[str, int]: ...

    def pending_counts(self) -> dict[str, int]:
        """``quarantine_open`` and ``dead_letters`` only: cheap enough for every metrics scrape (no outbox scan)."""
        ...

    def close(self) -> None: ...
