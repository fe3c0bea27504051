"""The plausibility day counts in the store, the same assertions against SQLite and PostgreSQL: written with a
page in its transaction (a page that fails or is a repeated receipt counts nothing), read back for just the keys
asked, a record counted again keeps its first place, the days before the latest but one are pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tanpuhui.hub.store.base import Checkpoint, DayCount, NewReceipt, PageWrite, Store
from tanpuhui.hub.store.leases import LeaseLost

from .records import trip

RULE = "transit_trips_per_day"
CARD_A = "3f9c2a7d81e04b6c"  # pseudonym prefixes, as the rule counts subjects
CARD_B = "b71e0d5a9c3f2e48"


def _counts(day: str, subject: str, *record_ids: str, first: int = 1) -> list[DayCount]:
    return [DayCount(RULE, day, subject, rid, n) for n, rid in enumerate(record_ids, first)]


def _page(counts: list[DayCount], checkpoint: Checkpoint | None = None, **extra: object) -> PageWrite:
    return PageWrite("transit_card", "trips", [], [], checkpoint, day_counts=counts, **extra)  # type: ignore[arg-type]


def test_a_pages_counts_are_read_back_for_the_keys_asked_only(store: Store) -> None:
    a = _counts("2024-11-05", CARD_A, "01JC5Q0000A1", "01JC5Q0000A2")
    b = _counts("2024-11-05", CARD_B, "01JC5Q0000B1")
    store.commit_pages([_page([*a, *b], Checkpoint("c-1"))])
    assert sorted(store.day_counts("transit_card", "trips", {(RULE, "2024-11-05", CARD_A)})) == a
    both = {(RULE, "2024-11-05", CARD_A), (RULE, "2024-11-05", CARD_B), (RULE, "2024-11-04", CARD_A)}
    assert sorted(store.day_counts("transit_card", "trips", both)) == sorted([*a, *b])
    assert store.day_counts("transit_card", "other_stream", both) == []
    assert store.day_counts("transit_card", "trips", {("metro_speed", "2024-11-05", CARD_A)}) == []
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint("c-1")  # the state carries no counts


def test_a_page_counting_many_subjects_is_read_back_in_full(store: Store) -> None:
    subjects = [f"{i:016x}" for i in range(1_200)]  # more than one IN (...) list of subjects
    counts = [DayCount(RULE, "2024-11-05", s, f"01JC5Q{i:06d}", 1) for i, s in enumerate(subjects)]
    store.commit_pages([_page(counts)])
    keys = {(RULE, "2024-11-05", s) for s in subjects}
    assert sorted(store.day_counts("transit_card", "trips", keys)) == sorted(counts)


def test_a_record_counted_again_keeps_its_first_place(store: Store) -> None:
    store.commit_pages([_page(_counts("2024-11-05", CARD_A, "01JC5Q0000A1"))])
    store.commit_pages([_page([DayCount(RULE, "2024-11-05", CARD_A, "01JC5Q0000A1", 7)])])
    assert store.day_counts("transit_card", "trips", {(RULE, "2024-11-05", CARD_A)}) == _counts(
        "2024-11-05", CARD_A, "01JC5Q0000A1"
    )


def test_a_page_that_fails_to_commit_counts_nothing(store: Store) -> None:
    key = {(RULE, "2024-11-05", CARD_A)}
    with pytest.raises(TypeError):  # a checkpoint that cannot be stored fails the page before anything is written
        store.commit_pages([_page(_counts("2024-11-05", CARD_A, "01JC5Q0000A1"), Checkpoint({"c-1"}))])
    assert store.day_counts("transit_card", "trips", key) == []
    assert store.acquire_lease("transit_card", "trips", "replica-b", 30)
    with pytest.raises(LeaseLost):  # the whole group fails: the first page's counts are not written either
        store.commit_pages(
            [
                PageWrite(
                    "bike_share", "rides", [trip("R-1")], [], None, day_counts=_counts("2024-11-05", CARD_B, "R1")
                ),
                _page(_counts("2024-11-05", CARD_A, "01JC5Q0000A1"), lease_owner="replica-a"),
            ]
        )
    assert store.day_counts("transit_card", "trips", key) == []
    assert store.day_counts("bike_share", "rides", {(RULE, "2024-11-05", CARD_B)}) == []
    assert store.counts()["outbox"] == 0


def test_a_repeated_receipt_counts_nothing(store: Store) -> None:
    receipt = NewReceipt("msg_1", "ab" * 32, 200, b"{}")
    store.commit_pages([_page(_counts("2024-11-05", CARD_A, "01JC5Q0000A1"), receipt=receipt)])
    (result,) = store.commit_pages([_page(_counts("2024-11-05", CARD_B, "01JC5Q0000B1"), receipt=receipt)])
    assert result is None
    assert store.day_counts("transit_card", "trips", {(RULE, "2024-11-05", CARD_B)}) == []


def test_days_before_the_latest_but_one_are_pruned_per_stream_and_rule(store: Store) -> None:
    keys = {(RULE, day, CARD_A) for day in ("2024-11-03", "2024-11-04", "2024-11-05")}
    store.commit_pages([_page([*_counts("2024-11-03", CARD_A, "R3"), *_counts("2024-11-04", CARD_A, "R4")])])
    other_rule = DayCount("bus_trips_per_day", "2024-11-03", CARD_A, "R3", 1)
    store.commit_pages([PageWrite("bike_share", "rides", [], [], None, day_counts=_counts("2024-11-03", CARD_A, "R3"))])
    store.commit_pages([_page([other_rule])])
    assert len(store.day_counts("transit_card", "trips", keys)) == 2  # the 3rd is the day before the 4th: kept
    store.commit_pages([_page(_counts("2024-11-05", CARD_A, "R5"))])
    assert sorted(c.day for c in store.day_counts("transit_card", "trips", keys)) == ["2024-11-04", "2024-11-05"]
    # another stream's and another rule's counts are theirs to prune
    assert store.day_counts("bike_share", "rides", {(RULE, "2024-11-03", CARD_A)}) == _counts(
        "2024-11-03", CARD_A, "R3"
    )
    assert store.day_counts("transit_card", "trips", {("bus_trips_per_day", "2024-11-03", CARD_A)}) == [other_rule]
    # a late record of an older day is counted, and kept until a page of a later day prunes it
    store.commit_pages([_page(_counts("2024-11-01", CARD_A, "R1"))])
    assert store.day_counts("transit_card", "trips", {(RULE, "2024-11-01", CARD_A)}) == _counts(
        "2024-11-01", CARD_A, "R1"
    )


def test_a_record_dated_after_today_does_not_prune_todays_counts(store: Store) -> None:
    today = datetime.now(UTC).date()
    days = [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 3650)]
    store.commit_pages([_page([*_counts(days[0], CARD_A, "R1"), *_counts(days[1], CARD_A, "R2")])])
    store.commit_pages([_page(_counts(days[2], CARD_B, "R9"))])  # a partner's clock ten years ahead
    keys = {(RULE, days[0], CARD_A), (RULE, days[1], CARD_A), (RULE, days[2], CARD_B)}
    assert sorted(c.day for c in store.day_counts("transit_card", "trips", keys)) == days


def test_of_two_counts_of_one_record_in_a_page_the_first_is_kept(store: Store) -> None:
    # The page's counts are written in key order, not as given: the first of a key is still the one kept.
    page = [
        DayCount(RULE, "2024-11-05", CARD_B, "01JC5Q0000B1", 1),
        DayCount(RULE, "2024-11-05", CARD_A, "01JC5Q0000A1", 2),
        DayCount(RULE, "2024-11-05", CARD_A, "01JC5Q0000A1", 1),
    ]
    store.commit_pages([_page(page)])
    keys = {(RULE, "2024-11-05", CARD_A), (RULE, "2024-11-05", CARD_B)}
    assert sorted(store.day_counts("transit_card", "trips", keys)) == sorted(page[:2])
