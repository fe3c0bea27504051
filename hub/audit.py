"""The tamper-evident audit log: what the hub accepted and what operators did, hash-chained.

Every accepted batch (a pulled page committed with its cursor, a webhook committed with its receipt) and every
quarantine, replay, dead-letter and admin action is appended as one entry, **in the same transaction as the action
it records**: an entry exists exactly when its action was committed. Each entry's hash covers its content and the
previous entry's hash::

    hash_n = SHA-256( "tanpuhui-audit-v1" \\n prev_hash \\n canonical JSON [seq, at, actor, action, subject, details] )
    prev_hash_1 = "0" * 64

so editing an entry breaks its own hash, deleting one breaks the chain at the next entry (and leaves a gap in
``seq``), and deleting the newest entries is caught by the head (``seq:hash`` of the last entry) that the store
keeps in its ``meta`` table, updated in the same transaction. Canonical JSON: UTF-8, keys sorted, no spaces
(orjson ``OPT_SORT_KEYS``); ``details`` holds only JSON types.

What it does not do: someone who can write the database can rewrite the whole chain and the head consistently. To
detect that too, record the head somewhere else from time to time (``tanpuhui audit verify`` prints it; a ticket,
a log shipper, a signed email) and pass it back with ``--anchor SEQ:HASH``: the chain must still contain it.

Accepted batches carry ``records_sha256``: the SHA-256 over the outbox rows they inserted (record id, a NUL, the
stored body, a newline; in ``seq`` order) and their ``seq`` range (``first_seq``..``last_seq``; when the rows did
not take consecutive seqs, as with PostgreSQL, also ``seq_ranges``: the ``[first, last]`` runs they took), so
``verify`` with ``records=True`` also detects an edited or deleted outbox row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import orjson

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "Verification",
    "batch_digest",
    "canonical_details",
    "canonical_entry_hash",
    "entry_hash",
    "iter_pages",
    "parse_anchor",
    "verify_chain",
    "verify_log",
]

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""

_DOMAIN = b"tanpuhui-audit-v1\n"
_SORT = orjson.OPT_SORT_KEYS


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What to append: ``action`` (``page.commit``, ``webhook.accept``, ``quarantine.replay``, ...), what it
    concerns (``subject``: ``adapter:stream``, a sink, an entry id), its details, and who did it (``actor``:
    ``hub`` for the pipeline, ``cli:<user>``, ``admin@<address>``)."""

    action: str
    subject: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "hub"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored entry."""

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """Every field, in this order (``details`` as it is, not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@runtime_checkable
class AuditLog(Protocol):
    """A store that keeps the audit log (both built-in stores do). Besides these, it appends an entry for each
    committed page (``PageWrite.audit``), dead letters added or deleted, quarantine entries resolved and webhook
    receipts pruned, each in the transaction that does it."""

    def audit_append(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        """Append entries in a transaction of their own (an operator's request, before it is carried out)."""
        ...

    def audit_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Entries after ``after_seq``, in ``seq`` order."""
        ...

    def audit_head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the newest entry as recorded by the last append (None: never appended)."""
        ...

    def audit_outbox_rows(self, first_seq: int, last_seq: int) -> list[tuple[str, bytes]]:
        """``(record_id, body)`` of the outbox rows with ``first_seq <= seq <= last_seq``, in order."""
        ...


def canonical_details(details: Mapping[str, Any]) -> str:
    """``details`` as the canonical JSON text the store keeps (and the hash covers)."""
    return orjson.dumps(dict(details), option=orjson.OPT_SORT_KEYS).decode()


def entry_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, details_json: str) -> str:
    """The hex SHA-256 of one entry, chained to ``prev_hash``.

    ``details_json`` is the canonical JSON text as stored: it is parsed and re-encoded canonically, so a stored
    text that is not canonical (or not JSON) cannot match the hash of the entry it claims to be.
    """
    try:
        details = orjson.loads(details_json)
    except orjson.JSONDecodeError:
        details = details_json
    return canonical_entry_hash(prev_hash, seq, at, actor, action, subject, orjson.dumps(details, option=_SORT))


def canonical_entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, details_canonical: bytes
) -> str:
    """:func:`entry_hash` of details already in canonical form (the bytes of :func:`canonical_details`), without
    parsing them back: what the store uses when it appends (it has just made that text itself)."""
    head = orjson.dumps([seq, at, actor, action, subject])
    body = head[:-1] + b"," + details_canonical + b"]"  # == orjson.dumps([seq, ..., details], OPT_SORT_KEYS)
    return hashlib.sha256(_DOMAIN + prev_hash.encode("ascii", "replace") + b"\n" + body).hexdigest()


def batch_digest(rows: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 over outbox rows ``(record_id, body)`` in ``seq`` order (see the module docstring)."""
    # The rows' bytes joined and hashed 256 rows at a time: the same digest, far fewer calls, bounded memory.
    digest = hashlib.sha256()
    parts: list[bytes] = []
    append = parts.append
    for record_id, body in rows:
        append(record_id.encode())
        append(b"\0")
        append(body)
        append(b"\n")
        if len(parts) >= 1024:
            digest.update(b"".join(parts))
            parts.clear()
    digest.update(b"".join(parts))
    return digest.hexdigest()


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as ``verify`` prints the head) -> ``(seq, hash)``; ValueError when malformed."""
    seq, sep, digest = text.strip().partition(":")
    digest = digest.lower()
    if not sep or not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"an anchor is SEQ:HASH with a 64-digit hex SHA-256, e.g. 42:{'ab' * 32}; got {text!r}")
    return int(seq), digest


@dataclass
class Verification:
    """The outcome of :func:`verify_chain`: ``ok`` when no problem was found; ``problems`` name each entry."""

    entries: int = 0
    head: tuple[int, str] | None = None
    """``(seq, hash)`` of the last entry in the log."""
    problems: list[str] = field(default_factory=list)
    bad_seqs: list[int] = field(default_factory=list)
    """Sequence numbers of entries found edited, missing or out of chain (the first of each run of damage)."""
    records_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


RowsInRange = Callable[[int, int], Sequence[tuple[str, bytes]]]
"""``(first_seq, last_seq) -> [(record_id, body), ...]`` of the outbox, for ``records`` checks."""


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    head: tuple[int, str] | None = None,
    anchors: Sequence[tuple[int, str]] = (),
    outbox_rows: RowsInRange | None = None,
    max_problems: int = 50,
    expect_head: bool = False,
) -> Verification:
    """Walk the log in ``seq`` order and report every break: an edited entry, a deleted one (a gap, or a
    ``prev_hash`` that is not the hash before it), deleted newest entries (the store's recorded ``head`` is past
    the end or differs), an ``anchor`` that is not in the chain, and, with ``outbox_rows``, batches whose outbox
    rows no longer match their ``records_sha256``."""
    result = Verification()
    problems = result.problems

    def problem(seq: int, text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)
        elif len(problems) == max_problems:
            problems.append("... more problems not shown")
        result.bad_seqs.append(seq)

    wanted = dict(anchors)
    seen_anchor: set[int] = set()
    prev_seq = 0
    prev_hash = GENESIS
    for entry in entries:
        result.entries += 1
        if entry.seq != prev_seq + 1:
            if entry.seq <= prev_seq:
                problem(entry.seq, f"entry {entry.seq} is out of order (after entry {prev_seq})")
            else:
                missing = f"{prev_seq + 1}" if entry.seq == prev_seq + 2 else f"{prev_seq + 1}-{entry.seq - 1}"
                problem(
                    prev_seq + 1, f"entry {missing} is missing (deleted): the log jumps from {prev_seq} to {entry.seq}"
                )
        elif entry.prev_hash != prev_hash:
            problem(
                entry.seq,
                f"entry {entry.seq} does not chain to entry {prev_seq}: its prev_hash is {entry.prev_hash[:12]}..., "
                f"entry {prev_seq} hashes to {prev_hash[:12]}... (an entry was replaced or the log rewritten)",
            )
        details_json = canonical_details(entry.details)
        actual = entry_hash(
            entry.prev_hash, entry.seq, entry.at, entry.actor, entry.action, entry.subject, details_json
        )
        if actual != entry.hash:
            problem(
                entry.seq,
                f"entry {entry.seq} ({entry.action} {entry.subject}) was edited: its content no longer matches its hash",
            )
        if entry.seq in wanted:
            seen_anchor.add(entry.seq)
            if entry.hash != wanted[entry.seq]:
                problem(
                    entry.seq,
                    f"anchor {entry.seq}:{wanted[entry.seq][:12]}... does not match: entry {entry.seq} now hashes to {entry.hash[:12]}... (the log was rewritten)",
                )
        if outbox_rows is not None:
            _check_records(entry, outbox_rows, result, problem)
        prev_seq, prev_hash = entry.seq, entry.hash
    result.head = (prev_seq, prev_hash) if result.entries else None
    for seq in sorted(set(wanted) - seen_anchor):
        problem(
            seq,
            f"anchor {seq}:{wanted[seq][:12]}... is not in the log (it ends at entry {prev_seq}): entries were deleted",
        )
    if expect_head and head is None and result.entries:
        problem(prev_seq, "the head recorded with the last append is missing (meta audit_head was deleted)")
    if head is not None and head != result.head:
        if head[0] > prev_seq:
            problem(
                prev_seq + 1,
                f"entries {prev_seq + 1}-{head[0]} are missing: the last commit recorded head {head[0]}, the log ends at {prev_seq} (the newest entries were deleted)",
            )
        else:
            problem(
                head[0],
                f"the recorded head {head[0]}:{head[1][:12]}... does not match the log's last entry {prev_seq}:{prev_hash[:12]}...",
            )
    return result


def _check_records(
    entry: AuditEntry, outbox_rows: RowsInRange, result: Verification, problem: Callable[[int, str], None]
) -> None:
    details = entry.details
    expected = details.get("records_sha256")
    first, last = details.get("first_seq"), details.get("last_seq")
    if not isinstance(expected, str) or not isinstance(first, int) or not isinstance(last, int):
        return
    runs = _seq_runs(details.get("seq_ranges"), first, last)
    if runs is None:
        problem(entry.seq, f"entry {entry.seq} ({entry.action} {entry.subject}): its seq_ranges are malformed")
        return
    rows = [row for run_first, run_last in runs for row in outbox_rows(run_first, run_last)]
    wanted = sum(run_last - run_first + 1 for run_first, run_last in runs)
    result.records_checked += len(rows)
    if len(rows) != wanted or batch_digest(rows) != expected:
        problem(
            entry.seq,
            f"entry {entry.seq} ({entry.action} {entry.subject}): outbox rows {first}-{last} were edited or deleted "
            f"(found {len(rows)} of {wanted}; their digest no longer matches records_sha256)",
        )


def _seq_runs(ranges: Any, first: int, last: int) -> list[tuple[int, int]] | None:
    """The ``[first, last]`` runs a batch's rows took (``first_seq``..``last_seq`` without ``seq_ranges``); None
    when ``seq_ranges`` is not ascending runs from ``first_seq`` to ``last_seq``."""
    if ranges is None:
        return [(first, last)]
    if not isinstance(ranges, list) or not ranges:
        return None
    runs: list[tuple[int, int]] = []
    for run in ranges:
        if not (isinstance(run, list) and len(run) == 2 and all(isinstance(n, int) for n in run)):
            return None
        if run[0] > run[1] or (runs and run[0] <= runs[-1][1]):
            return None
        runs.append((run[0], run[1]))
    return runs if runs[0][0] == first and runs[-1][1] == last else None


def verify_log(
    log: AuditLog, *, anchors: Sequence[tuple[int, str]] = (), records: bool = False, max_problems: int = 50
) -> Verification:
    """:func:`verify_chain` over a store's whole log, page by page (``records``: check outbox rows too)."""
    return verify_chain(
        iter_pages(log.audit_entries),
        head=log.audit_head(),
        anchors=anchors,
        outbox_rows=log.audit_outbox_rows if records else None,
        max_problems=max_problems,
        expect_head=True,
    )


def iter_pages(fetch: Callable[[int, int], Sequence[AuditEntry]], page: int = 1000) -> Iterator[AuditEntry]:
    """All entries through ``fetch(after_seq, limit)``, a page at a time (verification of a large log)."""
    after = 0
    while True:
        batch = fetch(after, page)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].seq
