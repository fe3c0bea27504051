"""The audit log's hash chain (tanpuhui.hub.audit), independent of any store."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tanpuhui.hub.audit import (
    GENESIS,
    AuditEntry,
    batch_digest,
    canonical_details,
    entry_hash,
    iter_pages,
    parse_anchor,
    verify_chain,
)


def chain(count: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        details = {"records": seq * 10, "first_seq": seq * 10 - 9, "last_seq": seq * 10, "cursor": f"c{seq}"}
        at = f"2024-11-05T08:{seq:02d}:00.000+00:00"
        digest = entry_hash(
            prev, seq, at, "hub", "page.commit", "transit_card:transactions", canonical_details(details)
        )
        entries.append(AuditEntry(seq, at, "hub", "page.commit", "transit_card:transactions", details, prev, digest))
        prev = digest
    return entries


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    entries = chain(5)
    result = verify_chain(entries, head=(5, entries[-1].hash))
    assert result.ok and result.entries == 5 and result.head == (5, entries[-1].hash)


def test_an_empty_log_is_intact() -> None:
    assert verify_chain([]).ok and verify_chain([], head=None).head is None


def test_an_edited_entry_is_named() -> None:
    entries = chain(5)
    entries[2] = dataclasses.replace(entries[2], details={**entries[2].details, "records": 31})
    result = verify_chain(entries)
    assert not result.ok and result.bad_seqs == [3]
    assert "entry 3 (page.commit transit_card:transactions) was edited" in result.problems[0]


@pytest.mark.parametrize("name", ["seq", "at", "actor", "action", "subject", "prev_hash"])
def test_every_field_is_covered_by_the_hash(name: str) -> None:
    entries = chain(3)
    value = getattr(entries[1], name)
    changed: dict[str, Any] = {name: value + 1 if isinstance(value, int) else value + "x"}
    entries[1] = dataclasses.replace(entries[1], **changed)
    assert not verify_chain(entries).ok


def test_an_edited_entry_whose_hash_was_recomputed_breaks_the_chain_at_the_next() -> None:
    entries = chain(5)
    forged = {**entries[2].details, "records": 31}
    digest = entry_hash(
        entries[2].prev_hash, 3, entries[2].at, "hub", "page.commit", entries[2].subject, canonical_details(forged)
    )
    entries[2] = dataclasses.replace(entries[2], details=forged, hash=digest)
    result = verify_chain(entries)
    assert result.bad_seqs == [4] and "entry 4 does not chain to entry 3" in result.problems[0]


def test_a_deleted_entry_is_named() -> None:
    entries = chain(5)
    del entries[1]
    result = verify_chain(entries)
    assert result.bad_seqs == [2] and "entry 2 is missing (deleted)" in result.problems[0]


def test_deleted_newest_entries_are_caught_by_the_recorded_head() -> None:
    entries = chain(5)
    head = (5, entries[-1].hash)
    result = verify_chain(entries[:3], head=head)
    assert not result.ok and "entries 4-5 are missing" in result.problems[0]


def test_a_rewritten_log_is_caught_by_an_anchor_recorded_elsewhere() -> None:
    entries = chain(5)
    anchor = (4, entries[3].hash)
    rewritten = chain(5)
    forged = {**rewritten[0].details, "records": 0}
    rewritten[0] = dataclasses.replace(rewritten[0], details=forged)
    prev = GENESIS
    for i, e in enumerate(rewritten):  # the whole chain recomputed consistently: only an anchor can tell
        digest = entry_hash(prev, e.seq, e.at, e.actor, e.action, e.subject, canonical_details(e.details))
        rewritten[i] = dataclasses.replace(e, prev_hash=prev, hash=digest)
        prev = digest
    assert verify_chain(rewritten, head=(5, rewritten[-1].hash)).ok
    result = verify_chain(rewritten, anchors=[anchor])
    assert not result.ok and "anchor 4:" in result.problems[0] and "rewritten" in result.problems[0]
    assert "is not in the log" in verify_chain(entries[:3], anchors=[anchor]).problems[0]


def test_anchors_parse_as_seq_colon_hash() -> None:
    assert parse_anchor(f" 12:{'AB' * 32} ") == (12, "ab" * 32)
    for bad in ("12", "x:" + "a" * 64, "12:" + "a" * 63, "12:" + "g" * 64):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            parse_anchor(bad)


def test_outbox_rows_are_checked_against_the_batch_digest() -> None:
    rows = {seq: (f"R{seq}", b'{"n":%d}' % seq) for seq in range(1, 51)}
    entries = chain(5)
    for i, e in enumerate(entries):
        digest = batch_digest(rows[s] for s in range(e.details["first_seq"], e.details["last_seq"] + 1))
        details = {**e.details, "records_sha256": digest}
        prev = entries[i - 1].hash if i else GENESIS
        h = entry_hash(prev, e.seq, e.at, e.actor, e.action, e.subject, canonical_details(details))
        entries[i] = dataclasses.replace(e, details=details, prev_hash=prev, hash=h)

    def fetch(first: int, last: int) -> list[tuple[str, bytes]]:
        return [rows[s] for s in range(first, last + 1) if s in rows]

    result = verify_chain(entries, outbox_rows=fetch)
    assert result.ok and result.records_checked == 50
    rows[17] = ("R17", b'{"n":1700}')
    del rows[33]
    result = verify_chain(entries, outbox_rows=fetch)
    assert result.bad_seqs == [2, 4]
    assert "outbox rows 11-20 were edited or deleted" in result.problems[0]
    assert "found 9 of 10" in result.problems[1]


def test_iter_pages_walks_a_log_in_pages() -> None:
    entries = chain(7)
    calls: list[tuple[int, int]] = []

    def fetch(after: int, limit: int) -> list[AuditEntry]:
        calls.append((after, limit))
        return [e for e in entries if e.seq > after][:limit]

    assert [e.seq for e in iter_pages(fetch, page=3)] == list(range(1, 8))
    assert calls == [(0, 3), (3, 3), (6, 3)]


def test_a_batch_whose_rows_took_seq_runs_is_checked_over_those_runs_only() -> None:
    # seqs 1, 3, 4 are the batch's (2 went to a conflicting insert, 5 to another writer's batch)
    rows = {1: ("R1", b"{}"), 3: ("R3", b"{}"), 4: ("R4", b"{}"), 5: ("OTHER", b"{}")}
    details = {
        "first_seq": 1,
        "last_seq": 4,
        "seq_ranges": [[1, 1], [3, 4]],
        "records_sha256": batch_digest(rows[s] for s in (1, 3, 4)),
    }
    at = "2024-11-05T08:00:00.000+00:00"
    digest = entry_hash(GENESIS, 1, at, "hub", "page.commit", "transit_card:t", canonical_details(details))
    entry = AuditEntry(1, at, "hub", "page.commit", "transit_card:t", details, GENESIS, digest)

    def fetch(first: int, last: int) -> list[tuple[str, bytes]]:
        return [rows[s] for s in range(first, last + 1) if s in rows]

    result = verify_chain([entry], outbox_rows=fetch)
    assert result.ok and result.records_checked == 3
    del rows[3]
    assert "found 2 of 3" in verify_chain([entry], outbox_rows=fetch).problems[0]
    for bad in ([[3, 4], [1, 1]], [[1, 1]], [[1, "4"]], "1-4"):
        broken = dataclasses.replace(entry, details={**details, "seq_ranges": bad})
        assert "its seq_ranges are malformed" in verify_chain([broken], outbox_rows=fetch).problems[-1]
