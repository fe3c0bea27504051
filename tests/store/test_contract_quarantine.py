"""The store contract, continued: quarantine, the same on SQLite and PostgreSQL.

Failed items are kept with their problems until resolved. The same bad item quarantined again (the pipeline keys
each raw item with a digest) is a repeat of its entry, not a new one: one entry per distinct item and stream,
whatever its status, counted in ``CommitResult.quarantine_repeats``. An item without a digest is never matched.
"""

from __future__ import annotations

from datetime import datetime

from tanpuhui.hub.audit import AuditLog
from tanpuhui.hub.store.base import Checkpoint, PageWrite, Store

from .records import bad_item

# -- quarantine ----------------------------------------------------------------------------------------------


def test_quarantined_items_are_listed_with_their_problems(store: Store) -> None:
    result = store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125")], Checkpoint("c-000125"))
    assert result.quarantined == 1
    [entry] = store.quarantine_list()
    assert (entry.adapter, entry.stream, entry.stage, entry.partner_record_id) == (
        "transit_card",
        "trips",
        "raw",
        "HF-M1-000125",
    )
    assert entry.problems == [
        {"pointer": "/tap_out", "message": "'tap_out' is a required property", "keyword": "required"}
    ]
    assert entry.sealed_raw == b"\x02v1" + bytes(40)
    assert (entry.status, entry.resolved_at) == ("open", None)
    assert datetime.fromisoformat(entry.created_at).tzinfo is not None
    assert (entry.repeats, entry.last_seen) == (0, entry.created_at)
    assert store.quarantine_get(entry.id) == entry


def test_quarantine_list_filters_by_adapter_and_limits(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125"), bad_item("HF-M1-000126")], None)
    store.commit_page("state_grid", "daily_readings", [], [bad_item("3401889021-20240715")], None)
    assert [e.partner_record_id for e in store.quarantine_list(adapter="state_grid")] == ["3401889021-20240715"]
    assert [e.partner_record_id for e in store.quarantine_list(limit=2)] == ["HF-M1-000125", "HF-M1-000126"]


def test_resolved_quarantine_entry_leaves_the_open_list(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125"), bad_item("HF-M1-000126")], None)
    first, second = store.quarantine_list()
    store.quarantine_resolve(first.id, "replayed")
    assert [e.id for e in store.quarantine_list()] == [second.id]
    resolved = store.quarantine_get(first.id)
    assert resolved is not None
    assert resolved.status == "replayed"
    assert resolved.resolved_at is not None
    assert [e.id for e in store.quarantine_list(status="replayed")] == [first.id]
    assert store.counts()["quarantine_open"] == 1
    assert store.pending_counts() == {"quarantine_open": 1, "dead_letters": 0}


def test_unknown_quarantine_entry_is_none(store: Store) -> None:
    assert store.quarantine_get(4242) is None


# -- the same item again: a repeat of its entry -------------------------------------------------------------------

ITEM = "d1" * 32  # the digest the pipeline gives HF-M1-000125's raw item


def test_the_same_item_twice_is_one_entry_with_one_repeat(store: Store) -> None:
    first = store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], Checkpoint("c-1"))
    [entry] = store.quarantine_list()
    again = store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], Checkpoint("c-2"))
    assert (first.quarantined, first.quarantine_repeats) == (1, 0)
    assert (again.quarantined, again.quarantine_repeats) == (0, 1)
    [repeated] = store.quarantine_list()
    assert (repeated.id, repeated.repeats, repeated.status) == (entry.id, 1, "open")
    assert repeated.created_at == entry.created_at <= repeated.last_seen
    assert store.counts()["quarantine_open"] == 1
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    assert [e.repeats for e in store.quarantine_list()] == [2]


def test_the_same_item_twice_in_one_page_is_one_entry_with_one_repeat(store: Store) -> None:
    items = [bad_item("HF-M1-000125", digest=ITEM), bad_item("HF-M1-000126"), bad_item("HF-M1-000125", digest=ITEM)]
    result = store.commit_page("transit_card", "trips", [], items, None)
    assert (result.quarantined, result.quarantine_repeats) == (2, 1)
    assert [(e.partner_record_id, e.repeats) for e in store.quarantine_list()] == [
        ("HF-M1-000125", 1),
        ("HF-M1-000126", 0),
    ]


def test_the_same_item_in_two_pages_of_one_group_commit_is_a_repeat(store: Store) -> None:
    pages = [PageWrite("bike_share", "rides", [], [bad_item("R-9", digest=ITEM)], None) for _ in range(2)]
    results = store.commit_pages(pages)
    assert [(r.quarantined, r.quarantine_repeats) for r in results if r] == [(1, 0), (0, 1)]
    assert [e.repeats for e in store.quarantine_list()] == [1]


def test_different_items_are_different_entries(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    result = store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000126", digest="e2" * 32)], None)
    assert (result.quarantined, result.quarantine_repeats) == (1, 0)
    assert [(e.partner_record_id, e.repeats) for e in store.quarantine_list()] == [
        ("HF-M1-000125", 0),
        ("HF-M1-000126", 0),
    ]


def test_the_same_digest_in_another_stream_is_another_entry(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    store.commit_page("transit_card", "taps", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    store.commit_page("state_grid", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    assert [(e.adapter, e.stream, e.repeats) for e in store.quarantine_list()] == [
        ("transit_card", "trips", 0),
        ("transit_card", "taps", 0),
        ("state_grid", "trips", 0),
    ]


def test_items_without_a_digest_are_never_deduplicated(store: Store) -> None:
    for _ in range(2):
        result = store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125")] * 2, None)
        assert (result.quarantined, result.quarantine_repeats) == (2, 0)
    assert [e.repeats for e in store.quarantine_list()] == [0, 0, 0, 0]


def test_a_discarded_entry_stays_discarded_when_its_item_comes_again(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    [entry] = store.quarantine_list()
    store.quarantine_resolve(entry.id, "discarded")
    discarded = store.quarantine_get(entry.id)
    assert discarded is not None
    again = store.commit_page(
        "transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM, problem="/deal_time")], None
    )
    assert (again.quarantined, again.quarantine_repeats) == (0, 1)
    assert store.quarantine_list() == []
    after = store.quarantine_get(entry.id)
    assert after is not None
    assert (after.status, after.resolved_at, after.repeats) == ("discarded", discarded.resolved_at, 1)
    assert after.problems == entry.problems  # what was decided on stays as it was
    assert store.counts()["quarantine_open"] == 0


def test_an_open_entry_takes_the_problems_its_item_has_now(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM)], None)
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125", digest=ITEM, problem="/deal_time")], None)
    [entry] = store.quarantine_list()
    assert (entry.status, entry.repeats) == ("open", 1)
    assert [p["pointer"] for p in entry.problems] == ["/deal_time"]


def test_the_page_audit_entry_counts_the_repeats(store: Store) -> None:
    assert isinstance(store, AuditLog)
    items = [bad_item("HF-M1-000125", digest=ITEM), bad_item("HF-M1-000125", digest=ITEM)]
    store.commit_page("transit_card", "trips", [], items, None)
    store.commit_page("transit_card", "trips", [], items[:1], None)
    [first, second] = store.audit_entries()
    [entry] = store.quarantine_list()
    assert (first.details["quarantined"], first.details["quarantine_repeats"]) == (1, 1)
    assert first.details["quarantine_ids"] == [entry.id, entry.id]
    assert (second.details["quarantined"], second.details["quarantine_repeats"]) == (0, 1)
    assert "quarantine_ids" not in second.details
