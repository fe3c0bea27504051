"""The store contract, the same assertions against SQLite and PostgreSQL (``backend`` is parametrised).

Pages commit records, quarantine and checkpoint atomically; dedup by record id; cross-source claims by
fingerprint; sink positions and dead letters; webhook receipts; leases. Quarantine: test_contract_quarantine.py;
the audit log and the schema drift report: test_contract_audit.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tanpuhui.hub.store.base import Checkpoint, DuplicateReceipt, NewReceipt, PageWrite, Store
from tanpuhui.hub.store.leases import SINK_LEASES, LeaseLost
from tanpuhui.hub.store.migrations import SCHEMA_VERSION

from .conftest import Backend
from .records import MORNING, bad_item, trip, trips

# -- pages: records + checkpoint in one transaction ----------------------------------------------------------


def test_committed_page_stores_records_and_checkpoint(store: Store) -> None:
    records = [trip("HF-M1-000123"), trip("HF-M1-000124", person="resident-0002")]
    result = store.commit_page("transit_card", "trips", records, [], Checkpoint("c-000124", {"open_taps": 0}))
    assert (result.inserted, result.duplicates, result.held, result.quarantined) == (2, 0, 0, 0)
    assert result.inserted_ids is None
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint("c-000124", {"open_taps": 0})
    rows = store.read_outbox(0, 10)
    assert [row.record_id for row in rows] == [r.record_id for r in records]
    assert [row.body for row in rows] == [r.body for r in records]
    assert (rows[0].adapter, rows[0].stream, rows[0].scenario) == ("transit_card", "trips", "metro")


def test_an_unchanged_checkpoint_is_not_rewritten_within_the_second_and_a_changed_one_is(store: Store) -> None:
    state = {"withdrawn_log": [{"record_id": f"R{i:05d}", "status": "credited"} for i in range(300)]}

    def last_success() -> str | None:
        (status,) = [s for s in store.stream_status() if s.stream == "records_push"]
        return status.last_success

    store.commit_page("yrd_scenarios", "records_push", [], [], Checkpoint(None, state))
    first = last_success()
    store.commit_page("yrd_scenarios", "records_push", [], [], Checkpoint(None, state))
    again = last_success()
    assert first and again and (again == first or again[:19] != first[:19])
    changed = {**state, "withdrawn": {"shanghai:credited": 1}}
    store.commit_page("yrd_scenarios", "records_push", [], [], Checkpoint("c-2", changed))
    assert store.load_checkpoint("yrd_scenarios", "records_push") == Checkpoint("c-2", changed)


def test_stream_without_a_checkpoint_starts_from_none(store: Store) -> None:
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint(None, {})


def test_structured_cursor_and_state_round_trip(store: Store) -> None:
    checkpoint = Checkpoint({"page": 7, "after": "2024-05-01T08:12:00+08:00"}, {"open": {"9900123": ["t", 1.5]}})
    store.commit_page("transit_card", "trips", [], [], checkpoint)
    assert store.load_checkpoint("transit_card", "trips") == checkpoint


def test_failure_mid_page_leaves_neither_records_nor_checkpoint(store: Store) -> None:
    records = [trip("HF-M1-000123"), trip("HF-M1-000124", person="resident-0002")]
    with pytest.raises(TypeError):
        store.commit_page("transit_card", "trips", records, [bad_item("HF-M1-000125")], Checkpoint({"c-000125"}))
    assert store.read_outbox(0, 10) == []
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint()
    assert store.quarantine_list() == []
    assert store.counts()["outbox"] == 0


def test_failed_page_keeps_the_previous_checkpoint(store: Store) -> None:
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], Checkpoint("c-000123"))
    with pytest.raises(TypeError):
        store.commit_page("transit_card", "trips", [trip("HF-M1-000124")], [], Checkpoint({"c-000124"}))
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-000123"
    assert store.outbox_max_seq() == 1


def test_store_is_usable_after_a_failed_page(store: Store) -> None:
    with pytest.raises(TypeError):
        store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], Checkpoint({"c-000123"}))
    result = store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], Checkpoint("c-000123"))
    assert result.inserted == 1


def test_no_checkpoint_leaves_the_cursor_alone(store: Store) -> None:
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], Checkpoint("c-000123"))
    store.commit_page("transit_card", "trips", [trip("HF-M1-000124")], [], None)
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-000123"


def test_streams_have_their_own_checkpoints(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [], Checkpoint("c-1"))
    store.commit_page("state_grid", "daily_readings", [], [], Checkpoint("2024-07-15"))
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-1"
    assert store.load_checkpoint("state_grid", "daily_readings").cursor == "2024-07-15"


# -- dedup by record id, claims across sources by fingerprint -------------------------------------------------


def test_same_records_pulled_again_are_counted_as_duplicates(store: Store) -> None:
    records = [trip("HF-M1-000123"), trip("HF-M1-000124", person="resident-0002")]
    store.commit_page("transit_card", "trips", records, [], Checkpoint("c-000124"))
    again = store.commit_page("transit_card", "trips", records, [], Checkpoint("c-000124"))
    assert (again.inserted, again.duplicates, again.held) == (0, 2, 0)
    assert again.inserted_ids == frozenset()
    assert store.counts()["outbox"] == 2


def test_duplicate_within_one_page_is_inserted_once(store: Store) -> None:
    first, second = trip("HF-M1-000123"), trip("HF-M1-000124", person="resident-0002")
    result = store.commit_page("transit_card", "trips", [first, second, first], [], None)
    assert (result.inserted, result.duplicates) == (2, 1)
    assert result.inserted_ids == frozenset({first.record_id, second.record_id})


def test_same_behaviour_from_another_adapter_is_held(store: Store) -> None:
    by_card = trip("HF-M1-000123")
    by_app = trip("YRD-TRAVEL-88231", adapter="yrd_scenarios", stream="travel")
    assert by_card.fingerprint == by_app.fingerprint and by_card.record_id != by_app.record_id
    store.commit_page("transit_card", "trips", [by_card], [], None)
    result = store.commit_page("yrd_scenarios", "travel", [by_app], [], None)
    assert (result.inserted, result.duplicates, result.held) == (0, 0, 1)
    assert result.inserted_ids == frozenset()
    assert [row.record_id for row in store.read_outbox(0, 10)] == [by_card.record_id]
    assert store.counts()["held_claims"] == 1


def test_same_behaviour_in_the_neighbouring_window_is_held(store: Store) -> None:
    # 08:19:00 and 08:21:00 fall in two 10-minute windows; the later record's neighbour key is the earlier window.
    by_card = trip("HF-M1-000123", start=MORNING.replace(minute=19), neighbour=True)
    later = trip(
        "YRD-TRAVEL-88231", adapter="yrd_scenarios", stream="travel", start=MORNING.replace(minute=21), neighbour=True
    )
    assert later.fingerprint != by_card.fingerprint and later.neighbour == by_card.fingerprint
    store.commit_page("transit_card", "trips", [by_card], [], None)
    result = store.commit_page("yrd_scenarios", "travel", [later], [], None)
    assert (result.inserted, result.held) == (0, 1)


def test_held_claim_pulled_again_is_a_duplicate(store: Store) -> None:
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], None)
    by_app = trip("YRD-TRAVEL-88231", adapter="yrd_scenarios", stream="travel")
    store.commit_page("yrd_scenarios", "travel", [by_app], [], None)
    again = store.commit_page("yrd_scenarios", "travel", [by_app], [], None)
    assert (again.inserted, again.duplicates, again.held) == (0, 1, 0)
    assert store.counts()["held_claims"] == 1


def test_same_adapter_same_fingerprint_is_not_held(store: Store) -> None:
    first = trip("HF-M1-000123")
    transfer = trip("HF-M3-000124", start=MORNING + timedelta(minutes=3), km=2.1)
    assert first.fingerprint == transfer.fingerprint
    store.commit_page("transit_card", "trips", [first], [], None)
    result = store.commit_page("transit_card", "trips", [transfer], [], None)
    assert (result.inserted, result.held) == (1, 0)
    assert store.counts()["outbox"] == 2


def test_other_adapter_with_another_subject_is_not_held(store: Store) -> None:
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], None)
    other = trip("YRD-TRAVEL-88232", adapter="yrd_scenarios", stream="travel", person="resident-0002")
    result = store.commit_page("yrd_scenarios", "travel", [other], [], None)
    assert (result.inserted, result.held) == (1, 0)


def test_mixed_page_reports_which_ids_were_inserted(store: Store) -> None:
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], None)
    held = trip("YRD-TRAVEL-88231", adapter="yrd_scenarios", stream="travel")
    fresh = trip("YRD-TRAVEL-88232", adapter="yrd_scenarios", stream="travel", person="resident-0002")
    result = store.commit_page("yrd_scenarios", "travel", [held, fresh], [], None)
    assert (result.inserted, result.duplicates, result.held) == (1, 0, 1)
    assert result.inserted_ids == frozenset({fresh.record_id})


def test_outbox_order_follows_the_page_order(store: Store) -> None:
    records = trips(50)
    store.commit_page("transit_card", "trips", records[::-1], [], None)
    assert [r.record_id for r in store.read_outbox(0, 100)] == [r.record_id for r in records[::-1]]


# -- forwarding: sink positions and dead letters --------------------------------------------------------------


def _fill(store: Store, n: int) -> None:
    store.commit_page("transit_card", "trips", trips(n), [], None)


def test_outbox_is_read_with_a_keyset_cursor(store: Store) -> None:
    _fill(store, 5)
    assert [r.seq for r in store.read_outbox(0, 2)] == [1, 2]
    assert [r.seq for r in store.read_outbox(2, 10)] == [3, 4, 5]
    assert store.read_outbox(5, 10) == []
    assert store.outbox_max_seq() == 5


def test_rows_committed_after_a_read_are_read_next(store: Store) -> None:
    _fill(store, 2)
    assert len(store.read_outbox(0, 10)) == 2
    store.commit_page("transit_card", "trips", trips(3, prefix="HF-M2"), [], None)
    assert [r.record_id for r in store.read_outbox(2, 10)] == [r.record_id for r in trips(3, prefix="HF-M2")]


def test_each_sink_has_its_own_position(store: Store) -> None:
    _fill(store, 5)
    assert store.sink_position("platform") == 0
    store.advance_sink("platform", 3)
    store.advance_sink("archive", 5)
    assert (store.sink_position("platform"), store.sink_position("archive")) == (3, 5)


def test_sink_position_never_moves_back(store: Store) -> None:
    _fill(store, 5)
    store.advance_sink("platform", 4)
    store.advance_sink("platform", 2)
    assert store.sink_position("platform") == 4


def test_sink_backlog_counts_rows_after_the_position(store: Store) -> None:
    assert store.sink_backlog("platform").depth == 0
    assert store.sink_backlog("platform").oldest_created_at is None
    _fill(store, 5)
    store.advance_sink("platform", 2)
    backlog = store.sink_backlog("platform")
    assert (backlog.sink, backlog.position, backlog.depth) == ("platform", 2, 3)
    assert backlog.oldest_created_at is not None
    assert datetime.fromisoformat(backlog.oldest_created_at) <= datetime.now(UTC) + timedelta(seconds=5)


def test_exhausted_rows_become_dead_letters_with_the_advance(store: Store) -> None:
    _fill(store, 3)
    row = store.read_outbox(0, 3)[1]
    store.advance_sink("platform", 3, dead=[(row, 8, "HTTP 422: event rejected by consumer")])
    [letter] = store.dead_letters("platform")
    assert (letter.sink, letter.seq, letter.record_id, letter.attempts) == ("platform", 2, row.record_id, 8)
    assert letter.error == "HTTP 422: event rejected by consumer"
    assert store.sink_position("platform") == 3
    assert store.dead_letters("archive") == []
    assert store.dead_letters() == [letter]
    assert store.counts()["dead_letters"] == 1
    assert store.pending_counts() == {"quarantine_open": 0, "dead_letters": 1}


def test_dead_letter_rows_bring_back_the_outbox_row_for_replay(store: Store) -> None:
    _fill(store, 3)
    rows = store.read_outbox(0, 3)
    store.advance_sink("platform", 3, dead=[(rows[1], 8, "HTTP 422"), (rows[2], 8, "HTTP 422")])
    first, second = store.dead_letters()
    found = store.dead_letter_rows([second.id, 4242, first.id])
    assert [(letter.id, row) for letter, row in found] == [(second.id, rows[2]), (first.id, rows[1])]
    assert orjson.loads(found[0][1].body)["record_id"] == rows[2].record_id


def test_a_row_dead_lettered_again_keeps_its_entry_with_the_new_attempts_and_error(store: Store) -> None:
    _fill(store, 3)
    row = store.read_outbox(0, 3)[1]
    store.advance_sink("platform", 3, dead=[(row, 8, "HTTP 422: event rejected by consumer")])
    [first] = store.dead_letters()
    store.advance_sink("platform", 3, dead=[(row, 3, "HTTP 410: gone")])
    [again] = store.dead_letters()
    assert (again.id, again.seq, again.attempts, again.error) == (first.id, 2, 3, "HTTP 410: gone")


def test_deleted_dead_letters_are_gone(store: Store) -> None:
    _fill(store, 3)
    rows = store.read_outbox(0, 3)
    store.advance_sink("platform", 3, dead=[(rows[0], 8, "HTTP 422"), (rows[2], 8, "HTTP 422")])
    first = store.dead_letters()[0]
    store.delete_dead_letters([first.id])
    assert [d.seq for d in store.dead_letters()] == [3]


# -- stream status ----------------------------------------------------------------------------------------------


def test_stream_errors_are_recorded_without_touching_the_cursor(store: Store) -> None:
    store.commit_page("transit_card", "trips", [], [], Checkpoint("c-000123"))
    store.record_stream_error("transit_card", "trips", "PartnerUnavailable: gave up after 5 attempts (HTTP 503)")
    [status] = store.stream_status()
    assert (status.adapter, status.stream, status.cursor) == ("transit_card", "trips", "c-000123")
    assert status.last_error == "PartnerUnavailable: gave up after 5 attempts (HTTP 503)"
    assert status.last_success is not None and status.last_error_at is not None


def test_error_of_a_stream_never_committed_is_recorded(store: Store) -> None:
    store.record_stream_error("state_grid", "daily_readings", "PartnerAuthError: 401")
    [status] = store.stream_status()
    assert (status.cursor, status.last_success, status.last_error) == (None, None, "PartnerAuthError: 401")
    assert store.load_checkpoint("state_grid", "daily_readings") == Checkpoint()


def test_store_is_writable(store: Store) -> None:
    store.check_writable()


# -- webhook receipts ---------------------------------------------------------------------------------------------


def _receipt(key: str, body: bytes = b'{"accepted": 1}') -> NewReceipt:
    return NewReceipt(key, "ab" * 32, 200, body)


def test_receipt_is_stored_with_its_records(store: Store) -> None:
    store.commit_page("bike_share", "rides", [trip("R-1")], [], Checkpoint(None), receipt=_receipt("msg_1"))
    stored = store.receipt_get("bike_share", "rides", "msg_1")
    assert stored is not None
    assert (stored.adapter, stored.stream, stored.key, stored.status, stored.body) == (
        "bike_share",
        "rides",
        "msg_1",
        200,
        b'{"accepted": 1}',
    )
    assert stored.request_hash == "ab" * 32
    assert store.receipt_get("bike_share", "rides", "msg_2") is None
    assert store.receipt_get("bike_share", "other", "msg_1") is None


def test_repeated_receipt_writes_nothing(store: Store) -> None:
    store.commit_page("bike_share", "rides", [trip("R-1")], [], Checkpoint("a"), receipt=_receipt("msg_1"))
    with pytest.raises(DuplicateReceipt) as caught:
        store.commit_page(
            "bike_share", "rides", [trip("R-2")], [bad_item("R-3")], Checkpoint("b"), receipt=_receipt("msg_1")
        )
    assert caught.value.key == "msg_1"
    assert store.counts()["outbox"] == 1
    assert store.quarantine_list() == []
    assert store.load_checkpoint("bike_share", "rides").cursor == "a"


def test_group_commit_skips_repeated_receipts_and_writes_the_rest(store: Store) -> None:
    store.commit_page("bike_share", "rides", [trip("R-1")], [], None, receipt=_receipt("msg_1"))
    results = store.commit_pages(
        [
            PageWrite("bike_share", "rides", [trip("R-2", person="p2")], [], None, _receipt("msg_2")),
            PageWrite("bike_share", "rides", [trip("R-9", person="p9")], [], None, _receipt("msg_1")),
            PageWrite("bike_share", "rides", [trip("R-3", person="p3")], [], None, _receipt("msg_3")),
            PageWrite("bike_share", "rides", [trip("R-4", person="p4")], [], None, _receipt("msg_3")),
        ]
    )
    assert [r.inserted if r else None for r in results] == [1, None, 1, None]
    assert [r.record_id for r in store.read_outbox(0, 10)] == [
        trip(p, person=q).record_id for p, q in [("R-1", "resident-0001"), ("R-2", "p2"), ("R-3", "p3")]
    ]


def test_old_receipts_are_pruned(store: Store) -> None:
    store.commit_page("bike_share", "rides", [], [], None, receipt=_receipt("msg_1"))
    assert store.prune_receipts((datetime.now(UTC) - timedelta(hours=1)).isoformat()) == 0
    assert store.prune_receipts((datetime.now(UTC) + timedelta(seconds=5)).isoformat(timespec="milliseconds")) == 1
    assert store.receipt_get("bike_share", "rides", "msg_1") is None


# -- leases -----------------------------------------------------------------------------------------------------


def test_a_free_lease_is_taken_and_refused_to_others(store: Store) -> None:
    assert store.acquire_lease("transit_card", "trips", "replica-a", 30)
    assert not store.acquire_lease("transit_card", "trips", "replica-b", 30)
    assert store.acquire_lease("transit_card", "trips", "replica-a", 30)  # again: extended
    assert store.acquire_lease("transit_card", "other", "replica-b", 30)
    [first, second] = store.leases()
    assert (first.stream, first.owner, second.stream, second.owner) == ("other", "replica-b", "trips", "replica-a")
    assert datetime.fromisoformat(second.expires_at) > datetime.fromisoformat(second.acquired_at)


def test_a_released_lease_can_be_taken(store: Store) -> None:
    store.acquire_lease("transit_card", "trips", "replica-a", 30)
    store.release_lease("transit_card", "trips", "replica-b")  # not the owner: nothing happens
    assert not store.acquire_lease("transit_card", "trips", "replica-b", 30)
    store.release_lease("transit_card", "trips", "replica-a")
    assert store.leases() == []
    assert store.acquire_lease("transit_card", "trips", "replica-b", 30)


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_renew(store: Store) -> None:
    assert store.acquire_lease("transit_card", "trips", "replica-a", 0.2)
    assert store.renew_lease("transit_card", "trips", "replica-a", 0.2)
    assert not store.renew_lease("transit_card", "trips", "replica-b", 30)
    time.sleep(0.35)
    assert store.leases() == []  # expired ones are not listed
    assert store.acquire_lease("transit_card", "trips", "replica-b", 30)
    assert not store.renew_lease("transit_card", "trips", "replica-a", 30)
    assert [lease.owner for lease in store.leases()] == ["replica-b"]


def test_renewal_keeps_a_lease_past_its_first_ttl(store: Store) -> None:
    assert store.acquire_lease("transit_card", "trips", "replica-a", 0.3)
    for _ in range(3):
        time.sleep(0.15)
        assert store.renew_lease("transit_card", "trips", "replica-a", 0.3)
    assert not store.acquire_lease("transit_card", "trips", "replica-b", 30)


def test_sink_leases_are_apart_from_stream_leases(store: Store) -> None:
    assert store.acquire_lease(SINK_LEASES, "platform", "replica-a", 30)
    assert store.acquire_lease("transit_card", "platform", "replica-b", 30)
    assert not store.acquire_lease(SINK_LEASES, "platform", "replica-b", 30)


def test_page_committed_under_the_lease_is_written(store: Store) -> None:
    store.acquire_lease("transit_card", "trips", "replica-a", 30)
    result = store.commit_page(
        "transit_card", "trips", [trip("HF-M1-000123")], [], Checkpoint("c-1"), lease_owner="replica-a"
    )
    assert result.inserted == 1
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-1"


def test_page_committed_after_a_takeover_is_refused_whole(store: Store) -> None:
    store.acquire_lease("transit_card", "trips", "replica-a", 0.2)
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], Checkpoint("c-1"), lease_owner="replica-a")
    time.sleep(0.3)
    assert store.acquire_lease("transit_card", "trips", "replica-b", 30)
    store.commit_page("transit_card", "trips", [], [], Checkpoint("c-7"), lease_owner="replica-b")
    with pytest.raises(LeaseLost):
        store.commit_page(
            "transit_card",
            "trips",
            [trip("HF-M1-000124", person="p2")],
            [bad_item("HF-M1-000125")],
            Checkpoint("c-2"),
            lease_owner="replica-a",
        )
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-7"
    assert store.counts()["outbox"] == 1
    assert store.quarantine_list() == []


def test_page_committed_without_ever_holding_the_lease_is_refused(store: Store) -> None:
    with pytest.raises(LeaseLost):
        store.commit_page("transit_card", "trips", [], [], Checkpoint("c-1"), lease_owner="replica-a")
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint()


def test_an_expired_lease_nobody_took_still_lets_its_owner_commit(store: Store) -> None:
    store.acquire_lease("transit_card", "trips", "replica-a", 0.1)
    time.sleep(0.2)
    store.commit_page("transit_card", "trips", [], [], Checkpoint("c-1"), lease_owner="replica-a")
    assert store.load_checkpoint("transit_card", "trips").cursor == "c-1"


# -- one state, several openers (replicas) ---------------------------------------------------------------------------


def test_another_replica_sees_committed_state(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.commit_page("transit_card", "trips", trips(3), [bad_item("x")], Checkpoint("c-3"))
    a.advance_sink("platform", 2)
    assert [r.record_id for r in b.read_outbox(0, 10)] == [r.record_id for r in trips(3)]
    assert b.load_checkpoint("transit_card", "trips") == Checkpoint("c-3")
    assert b.sink_position("platform") == 2
    assert b.counts() == {"outbox": 3, "quarantine_open": 1, "held_claims": 0, "dead_letters": 0}


def test_store_reopens_with_its_data_intact(backend: Backend) -> None:
    store = backend.open()
    _fill(store, 3)
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125")], Checkpoint("c-000125", {"open": 1}))
    store.advance_sink("platform", 2)
    before = store.read_outbox(0, 10)
    store.close()

    reopened = backend.open()
    assert reopened.read_outbox(0, 10) == before
    assert reopened.load_checkpoint("transit_card", "trips") == Checkpoint("c-000125", {"open": 1})
    assert reopened.sink_position("platform") == 2
    assert reopened.counts() == {"outbox": 3, "quarantine_open": 1, "held_claims": 0, "dead_letters": 0}


def test_a_store_opens_at_the_current_schema_version(backend: Backend) -> None:
    store: Any = backend.open()
    assert store.schema_version() == SCHEMA_VERSION
