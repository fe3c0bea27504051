"""The store interface: everything the hub keeps, behind one small protocol (SQLite now, PostgreSQL later)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tanpuhui.sdk import OutboxRow, Problem

__all__ = [
    "Checkpoint",
    "CommitResult",
    "DeadLetter",
    "NewQuarantine",
    "NewRecord",
    "QuarantineEntry",
    "Store",
    "StreamStatus",
]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a stream resumes: the partner cursor and the stream's own pending state."""

    cursor: Any = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A validated record ready for the outbox.

    ``neighbour`` is the fingerprint of the nearest neighbouring time window (see
    :func:`tanpuhui.sdk.records.fingerprint_claim_keys`); a claim of another source under either holds this one.
    """

    record_id: str
    fingerprint: str
    scenario: str
    reduction_kgco2e: float
    body: bytes
    neighbour: str = ""


@dataclass(frozen=True, slots=True)
class NewQuarantine:
    """An item that failed; ``raw`` is the partner item (sealed by the store's caller before it reaches disk)."""

    stage: str  # "raw" | "normalize" | "record" | "incomplete"
    partner_record_id: str
    sealed_raw: bytes
    problems: Sequence[Problem]


@dataclass(frozen=True, slots=True)
class CommitResult:
    inserted: int
    duplicates: int
    held: int
    quarantined: int
    inserted_ids: frozenset[str] | None = None
    """The ids actually inserted when some records were not (duplicates, held claims); None: all were."""


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


class Store(Protocol):
    """Durable state of the hub. Every method is one transaction."""

    def load_checkpoint(self, adapter: str, stream: str) -> Checkpoint: ...

    def commit_page(
        self,
        adapter: str,
        stream: str,
        records: Sequence[NewRecord],
        quarantined: Sequence[NewQuarantine],
        checkpoint: Checkpoint | None,
    ) -> CommitResult:
        """Insert new records (dedup by record id; cross-source fingerprint claims are held), quarantine entries
        and the new checkpoint (None: leave it) atomically."""
        ...

    def record_stream_error(self, adapter: str, stream: str, message: str) -> None: ...

    def stream_status(self) -> list[StreamStatus]: ...

    # forwarding
    def sink_position(self, sink: str) -> int: ...

    def read_outbox(self, after_seq: int, limit: int) -> list[OutboxRow]: ...

    def outbox_max_seq(self) -> int: ...

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

    def close(self) -> None: ...
