"""The embedded SQLite store: one transaction per page, dedup, cross-source claims, quarantine, delivery state,
and the file itself. What every store must do is also in tests/store/test_contract.py, run against SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from tanpuhui.hub.store.base import Checkpoint, NewQuarantine, NewRecord
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import Problem, behaviour_fingerprint, make_record_id

CST = timezone(timedelta(hours=8))
MORNING = datetime(2024, 5, 1, 8, 12, tzinfo=CST)


def pseudonym(person: str) -> str:
    return hashlib.sha256(f"test-subject:{person}".encode()).hexdigest()


def trip(
    partner_id: str,
    *,
    adapter: str = "transit_card",
    stream: str = "trips",
    person: str = "resident-0001",
    start: datetime = MORNING,
    km: float = 8.4,
) -> NewRecord:
    """A Hefei metro trip as the pipeline hands it to the store."""
    record_id = make_record_id(start, adapter, stream, partner_id)
    fingerprint = behaviour_fingerprint(pseudonym(person), "metro", start)
    reduction = round(km * 0.0467, 6)
    body = orjson.dumps(
        {
            "record_id": record_id,
            "source": {"adapter": adapter, "stream": stream, "partner_record_id": partner_id},
            "scenario": "metro",
            "region": "340100",
            "activity": {"quantity": km, "unit": "pkm"},
            "quantification": {"reduction_kgco2e": reduction},
            "fingerprint": fingerprint,
        }
    )
    return NewRecord(record_id, fingerprint, "metro", reduction, body)


def bad_item(partner_id: str) -> NewQuarantine:
    return NewQuarantine(
        stage="raw",
        partner_record_id=partner_id,
        sealed_raw=b"\x02v1" + bytes(40),
        problems=[Problem("/tap_out", "'tap_out' is a required property", "required")],
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "hub.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    yield s
    s.close()


# -- pages: records + checkpoint in one transaction ----------------------------------------------------------


def test_committed_page_stores_records_and_checkpoint(store: SQLiteStore) -> None:
    records = [trip("HF-M1-000123"), trip("HF-M1-000124", person="resident-0002")]
    result = store.commit_page("transit_card", "trips", records, [], Checkpoint("c-000124", {"open_taps": 0}))
    assert (result.inserted, result.duplicates, result.held, result.quarantined) == (2, 0, 0, 0)
    assert result.inserted_ids is None
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint("c-000124", {"open_taps": 0})
    assert [row.record_id for row in store.read_outbox(0, 10)] == [r.record_id for r in records]


def test_failure_mid_page_leaves_neither_records_nor_checkpoint(store: SQLiteStore) -> None:
    records = [trip("HF-M1-000123"), trip("HF-M1-000124", person="resident-0002")]
    # The records and quarantine rows are written first; a cursor that cannot be stored fails the last statement.
    with pytest.raises(TypeError):
        store.commit_page("transit_card", "trips", records, [bad_item("HF-M1-000125")], Checkpoint({"c-000125"}))
    assert store.read_outbox(0, 10) == []
    assert store.load_checkpoint("transit_card", "trips") == Checkpoint()
    assert store.quarantine_list() == []
    assert store.counts()["outbox"] == 0


# -- dedup by record id, claims across sources by fingerprint -------------------------------------------------


def test_same_behaviour_from_another_adapter_is_held(store: SQLiteStore) -> None:
    by_card = trip("HF-M1-000123")
    by_app = trip("YRD-TRAVEL-88231", adapter="yrd_scenarios", stream="travel")
    assert by_card.fingerprint == by_app.fingerprint and by_card.record_id != by_app.record_id
    store.commit_page("transit_card", "trips", [by_card], [], None)
    result = store.commit_page("yrd_scenarios", "travel", [by_app], [], None)
    assert (result.inserted, result.duplicates, result.held) == (0, 0, 1)
    assert [row.record_id for row in store.read_outbox(0, 10)] == [by_card.record_id]
    assert store.counts()["held_claims"] == 1


def test_same_adapter_same_fingerprint_is_not_held(store: SQLiteStore) -> None:
    # Two taps within one window by the same card (e.g. a transfer) are two trips, not a double claim.
    first = trip("HF-M1-000123")
    transfer = trip("HF-M3-000124", start=MORNING + timedelta(minutes=3), km=2.1)
    assert first.fingerprint == transfer.fingerprint
    store.commit_page("transit_card", "trips", [first], [], None)
    result = store.commit_page("transit_card", "trips", [transfer], [], None)
    assert (result.inserted, result.held) == (1, 0)
    assert store.counts()["outbox"] == 2


# -- quarantine ----------------------------------------------------------------------------------------------


def test_quarantined_items_are_listed_with_their_problems(store: SQLiteStore) -> None:
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


def test_quarantine_list_filters_by_adapter(store: SQLiteStore) -> None:
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125")], None)
    store.commit_page("state_grid", "daily_readings", [], [bad_item("3401889021-20240715")], None)
    assert [e.partner_record_id for e in store.quarantine_list(adapter="state_grid")] == ["3401889021-20240715"]


def test_resolved_quarantine_entry_leaves_the_open_list(store: SQLiteStore) -> None:
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


# -- forwarding: sink positions and dead letters --------------------------------------------------------------


def _fill(store: SQLiteStore, n: int) -> None:
    records = [trip(f"HF-M1-{i:06d}", person=f"resident-{i:04d}") for i in range(n)]
    store.commit_page("transit_card", "trips", records, [], None)


def test_outbox_is_read_with_a_keyset_cursor(store: SQLiteStore) -> None:
    _fill(store, 5)
    assert [r.seq for r in store.read_outbox(0, 2)] == [1, 2]
    assert [r.seq for r in store.read_outbox(2, 10)] == [3, 4, 5]
    assert store.outbox_max_seq() == 5


def test_exhausted_rows_become_dead_letters_with_the_advance(store: SQLiteStore) -> None:
    _fill(store, 3)
    row = store.read_outbox(0, 3)[1]
    store.advance_sink("platform", 3, dead=[(row, 8, "HTTP 422: event rejected by consumer")])
    [letter] = store.dead_letters("platform")
    assert (letter.sink, letter.seq, letter.record_id, letter.attempts) == ("platform", 2, row.record_id, 8)
    assert letter.error == "HTTP 422: event rejected by consumer"
    assert store.dead_letters("archive") == []
    assert store.counts()["dead_letters"] == 1


def test_dead_letter_rows_bring_back_the_outbox_row_for_replay(store: SQLiteStore) -> None:
    _fill(store, 3)
    row = store.read_outbox(0, 3)[1]
    store.advance_sink("platform", 3, dead=[(row, 8, "HTTP 422")])
    [(_, outbox_row)] = store.dead_letter_rows([store.dead_letters()[0].id])
    assert outbox_row == row
    assert orjson.loads(outbox_row.body)["record_id"] == row.record_id


# -- the file -------------------------------------------------------------------------------------------------


def test_database_is_in_wal_mode(store: SQLiteStore, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_new_store_file_uses_16_kib_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "new.db").close()
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE t (x)")  # a file created with SQLite's default page size
    conn.close()
    SQLiteStore(old, migrate=True).close()
    sizes = {}
    for name in ("new.db", "old.db"):
        conn = sqlite3.connect(tmp_path / name)
        sizes[name] = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
    assert sizes == {"new.db": 16384, "old.db": 4096}


def test_store_reopens_with_its_data_intact(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    _fill(store, 3)
    store.commit_page("transit_card", "trips", [], [bad_item("HF-M1-000125")], Checkpoint("c-000125", {"open": 1}))
    store.advance_sink("platform", 2)
    before = store.read_outbox(0, 10)
    store.close()

    reopened = SQLiteStore(db_path)
    try:
        assert reopened.read_outbox(0, 10) == before
        assert reopened.load_checkpoint("transit_card", "trips") == Checkpoint("c-000125", {"open": 1})
        assert reopened.sink_position("platform") == 2
        assert reopened.counts() == {"outbox": 3, "quarantine_open": 1, "held_claims": 0, "dead_letters": 0}
    finally:
        reopened.close()


def test_store_written_by_a_newer_version_is_refused(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        SQLiteStore(db_path)
