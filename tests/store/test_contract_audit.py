"""The store contract, continued: the audit log and the schema drift report, the same on SQLite and PostgreSQL.

Every committed page and every operator-visible change appends an entry in its own transaction, chained to the
one before; `tanpuhui audit verify` checks the chain (and, with --records, the outbox rows) on either store.
Tampering is done as someone with access to the database would: plain SQL (``Backend.execute``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub.audit import AuditEvent, AuditLog, batch_digest, verify_log
from tanpuhui.hub.cli import main
from tanpuhui.hub.store.base import Checkpoint, DriftLog, DuplicateReceipt, NewReceipt, PageWrite, Store
from tanpuhui.hub.store.leases import LeaseLost

from .conftest import Backend
from .records import bad_item, trip, trips


def _log(store: Store) -> Any:
    assert isinstance(store, AuditLog)
    return store


def _receipt(key: str) -> NewReceipt:
    return NewReceipt(key, "ab" * 32, 200, b'{"accepted": 1}')


# -- what is appended ---------------------------------------------------------------------------------------------


def test_a_committed_page_appends_one_entry_with_what_it_committed(store: Store) -> None:
    log = _log(store)
    records = trips(3)
    store.commit_pages(
        [
            PageWrite(
                "transit_card",
                "trips",
                [*records, records[0]],
                [bad_item("HF-M1-000125")],
                Checkpoint("c-3"),
                drift={"operator_note": (1, "HF-M1-000001")},
            )
        ]
    )
    [entry] = log.audit_entries()
    assert (entry.seq, entry.actor, entry.action, entry.subject) == (1, "hub", "page.commit", "transit_card:trips")
    [quarantined] = store.quarantine_list()
    assert entry.details == {
        "inserted": 3,
        "duplicates": 1,
        "held": 0,
        "quarantined": 1,
        "first_seq": 1,
        "last_seq": 3,
        "records_sha256": batch_digest((r.record_id, r.body) for r in records),
        "quarantine_ids": [quarantined.id, quarantined.id],
        "unknown_fields": ["operator_note"],
    }
    assert datetime.fromisoformat(entry.at).utcoffset() is not None
    assert log.audit_head() == (1, entry.hash)


def test_the_callers_event_keeps_its_action_actor_and_details(store: Store) -> None:
    event = AuditEvent("webhook.accept", "bike_share:rides", {"webhook_id": "msg_1"}, actor="partner")
    store.commit_pages([PageWrite("bike_share", "rides", [trip("R-1")], [], None, _receipt("msg_1"), audit=event)])
    [entry] = _log(store).audit_entries()
    assert (entry.action, entry.subject, entry.actor) == ("webhook.accept", "bike_share:rides", "partner")
    assert entry.details["webhook_id"] == "msg_1" and entry.details["inserted"] == 1


def test_pages_of_one_group_commit_get_an_entry_each_in_order(store: Store) -> None:
    store.commit_pages(
        [
            PageWrite("bike_share", "rides", [trip("R-1")], [], None, _receipt("msg_1")),
            PageWrite("bike_share", "rides", [trip("R-2", person="p2")], [], None, _receipt("msg_1")),  # a repeat
            PageWrite("bike_share", "rides", [trip("R-3", person="p3")], [], None, _receipt("msg_3")),
        ]
    )
    entries = _log(store).audit_entries()
    assert [(e.seq, e.details["first_seq"]) for e in entries] == [(1, 1), (2, 2)]
    assert entries[1].prev_hash == entries[0].hash


def test_held_and_duplicate_records_are_counted_and_left_out_of_the_digest(store: Store) -> None:
    store.commit_page("transit_card", "trips", [trip("HF-M1-000123")], [], None)
    held = trip("YRD-TRAVEL-88231", adapter="yrd_scenarios", stream="travel")
    fresh = trip("YRD-TRAVEL-88232", adapter="yrd_scenarios", stream="travel", person="resident-0002")
    store.commit_page("yrd_scenarios", "travel", [held, fresh, fresh], [], None)
    entry = _log(store).audit_entries()[-1]
    assert (entry.details["inserted"], entry.details["duplicates"], entry.details["held"]) == (1, 1, 1)
    assert entry.details["records_sha256"] == batch_digest([(fresh.record_id, fresh.body)])
    assert verify_log(_log(store), records=True).records_checked == 2


def test_a_page_partly_on_file_verifies_with_its_records(store: Store) -> None:
    first = trips(2)
    store.commit_page("transit_card", "trips", first, [], None)
    more = trips(4, prefix="HF-M2")
    # PostgreSQL: the duplicates between new rows use sequence numbers up, so the new rows' seqs have a gap.
    store.commit_page("transit_card", "trips", [more[0], first[0], more[1], first[1], more[2], more[3]], [], None)
    entry = _log(store).audit_entries()[-1]
    assert (entry.details["inserted"], entry.details["duplicates"]) == (4, 2)
    result = verify_log(_log(store), records=True)
    assert result.ok, result.problems
    assert result.records_checked == 6


def test_a_duplicate_receipt_or_a_refused_page_appends_nothing(store: Store) -> None:
    store.commit_page("bike_share", "rides", [trip("R-1")], [], None, receipt=_receipt("msg_1"))
    with pytest.raises(DuplicateReceipt):
        store.commit_page("bike_share", "rides", [trip("R-2", person="p2")], [], None, receipt=_receipt("msg_1"))
    with pytest.raises(LeaseLost):
        store.commit_page("transit_card", "trips", trips(2), [], Checkpoint("c-1"), lease_owner="replica-a")
    with pytest.raises(TypeError):
        store.commit_page("transit_card", "trips", trips(2), [], Checkpoint({"not JSON"}))
    assert [e.seq for e in _log(store).audit_entries()] == [1]


def test_dead_letters_resolutions_prunes_and_operator_actions_are_logged_in_one_chain(store: Store) -> None:
    log = _log(store)
    store.commit_page("transit_card", "trips", trips(5), [bad_item("HF-M1-000125")], None)
    rows = store.read_outbox(0, 5)
    store.advance_sink("platform", 5, dead=[(rows[1], 8, "HTTP 422: rejected"), (rows[3], 8, "HTTP 422: again")])
    letters = store.dead_letters()
    store.delete_dead_letters([letters[0].id])
    [entry] = store.quarantine_list()
    store.quarantine_resolve(entry.id, "discarded")
    store.commit_page("bike_share", "rides", [], [], None, receipt=_receipt("msg_1"))
    assert store.prune_receipts("9999-01-01T00:00:00+00:00") == 1
    [appended] = log.audit_append([AuditEvent("admin.test", "ops", {"note": "by hand"}, actor="cli:ops")])
    entries = log.audit_entries()
    assert [e.action for e in entries] == [
        "page.commit",
        "deadletter.add",
        "deadletter.delete",
        "quarantine.resolve",
        "page.commit",
        "receipts.prune",
        "admin.test",
    ]
    assert entries[1].subject == "platform"
    assert entries[1].details == {"count": 2, "first_seq": 2, "last_seq": 4, "error": "HTTP 422: again"}
    assert entries[2].details == {"ids": [letters[0].id]}
    assert (entries[3].subject, entries[3].details) == (f"quarantine:{entry.id}", {"status": "discarded"})
    assert entries[5].details == {"before": "9999-01-01T00:00:00+00:00", "count": 1}
    assert appended == entries[-1] and appended.actor == "cli:ops"
    assert [e.seq for e in entries] == list(range(1, 8))
    assert all(e.prev_hash == before.hash for before, e in pairwise(entries))
    result = verify_log(log, records=True)
    assert result.ok, result.problems
    assert log.audit_head() == (7, entries[-1].hash)


def test_changes_that_change_nothing_append_nothing(store: Store) -> None:
    store.delete_dead_letters([4242])
    store.quarantine_resolve(4242, "discarded")
    assert store.prune_receipts("9999-01-01T00:00:00+00:00") == 0
    store.advance_sink("platform", 0)
    log = _log(store)
    assert log.audit_entries() == [] and log.audit_head() is None
    assert verify_log(log).ok


# -- tampering, caught on either store ------------------------------------------------------------------------------


def _pull(store: Store, pages: int = 4) -> None:
    for p in range(pages):
        store.commit_page("transit_card", "trips", trips(5, prefix=f"P{p}"), [], Checkpoint(p))


def test_an_edited_entry_is_caught_and_named(backend: Backend) -> None:
    _pull(backend.open())
    backend.execute("UPDATE audit_log SET details = replace(details, '\"inserted\":5', '\"inserted\":4') WHERE seq = 2")
    result = verify_log(_log(backend.open()))
    assert result.bad_seqs == [2] and "entry 2 (page.commit transit_card:trips) was edited" in result.problems[0]


def test_deleting_the_newest_entries_is_caught_by_the_head_and_stays_visible(backend: Backend) -> None:
    store = backend.open()
    _pull(store)
    backend.execute("DELETE FROM audit_log WHERE seq >= 3")
    assert "entries 3-4 are missing" in verify_log(_log(store)).problems[0]
    store.commit_page("transit_card", "trips", trips(2, prefix="later"), [], None)  # chains from the head: 5
    result = verify_log(_log(store))
    assert "entry 3-4 is missing (deleted)" in result.problems[0]


def test_an_edited_or_deleted_outbox_row_is_caught_by_its_batch_digest(backend: Backend) -> None:
    store = backend.open()
    _pull(store)
    body = "CAST(replace(CAST(body AS TEXT), 'metro', 'bus') AS BLOB)"
    if backend.kind == "postgres":
        body = "convert_to(replace(convert_from(body, 'UTF8'), 'metro', 'bus'), 'UTF8')"
    backend.execute(f"UPDATE outbox SET body = {body} WHERE seq = 7")
    backend.execute("DELETE FROM outbox WHERE seq = 13")
    assert verify_log(_log(store)).ok  # the log itself is intact
    result = verify_log(_log(store), records=True)
    assert result.bad_seqs == [2, 3]
    assert "outbox rows 6-10 were edited or deleted (found 5 of 5" in result.problems[0]
    assert "found 4 of 5" in result.problems[1]


# -- the commands, on either store ----------------------------------------------------------------------------------


def _cli(backend: Backend, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nstore = { env = "TANPUHUI_STORE_URL" }\n')
    env = {"TANPUHUI_STORE_URL": backend.target, "TANPUHUI_PSEUDONYM_KEYS": "v1:" + "QUFB" * 10 + "QUE="}
    result = CliRunner().invoke(main, [*args, "--config", str(config)], env=env)
    return result.exit_code, result.output


def test_audit_verify_and_list_work_on_either_store(backend: Backend, tmp_path: Path) -> None:
    store = backend.open()
    _pull(store)
    head = _log(store).audit_head()
    assert head is not None
    code, output = _cli(backend, tmp_path, "audit", "verify", "--records")
    assert code == 0, output
    assert f"audit log intact: 4 entries, 20 outbox rows match their batches; head {head[0]}:{head[1]}" in output
    code, output = _cli(backend, tmp_path, "audit", "list", "--limit", "2", "--json")
    assert code == 0, output
    assert [entry["seq"] for entry in orjson.loads(output)["entries"]] == [3, 4]

    backend.execute("DELETE FROM audit_log WHERE seq = 2")
    code, output = _cli(backend, tmp_path, "audit", "verify", "--anchor", f"{head[0]}:{head[1]}")
    assert code == 1 and "entry 2 is missing (deleted)" in output


# -- schema drift ---------------------------------------------------------------------------------------------------


def test_fields_the_schema_does_not_name_are_reported_with_their_page(store: Store) -> None:
    assert isinstance(store, DriftLog)
    drift = {"operator_note": (3, "HF-M1-000123")}
    store.commit_pages([PageWrite("transit_card", "trips", trips(2), [], None, drift=drift)])
    store.commit_pages([PageWrite("transit_card", "trips", [], [], None, drift={"operator_note": (2, "HF-M1-9")})])
    [entry] = store.schema_drift()
    assert (entry.adapter, entry.stream, entry.field, entry.items, entry.example) == (
        "transit_card",
        "trips",
        "operator_note",
        5,
        "HF-M1-000123",
    )
    assert entry.first_seen <= entry.last_seen
    assert datetime.fromisoformat(entry.last_seen) <= datetime.now(UTC)
    assert store.schema_drift("state_grid") == []


def test_drift_of_a_page_not_written_is_not_reported(store: Store) -> None:
    assert isinstance(store, DriftLog)
    store.commit_page("bike_share", "rides", [], [], None, receipt=_receipt("msg_1"))
    repeat = PageWrite("bike_share", "rides", [], [], None, _receipt("msg_1"), drift={"tip": (1, "R-1")})
    assert store.commit_pages([repeat]) == [None]
    with pytest.raises(LeaseLost):
        store.commit_pages([PageWrite("bike_share", "rides", [], [], None, lease_owner="x", drift={"tip": (1, "R")})])
    assert store.schema_drift() == []


def test_drift_is_reported_per_adapter_and_stream(store: Store) -> None:
    assert isinstance(store, DriftLog)
    store.commit_pages([PageWrite("transit_card", "trips", [], [], None, drift={"note": (1, "A")})])
    store.commit_pages([PageWrite("state_grid", "daily_readings", [], [], None, drift={"note": (2, "B")})])
    assert [(d.adapter, d.stream, d.items) for d in store.schema_drift()] == [
        ("state_grid", "daily_readings", 2),
        ("transit_card", "trips", 1),
    ]
    assert [d.example for d in store.schema_drift("transit_card")] == ["A"]
