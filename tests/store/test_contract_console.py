"""The store contract, continued: what the operator console reads, the same on SQLite and PostgreSQL.

A sink's delivery state written by the replica draining it is read by every other replica (another store opened
on the same database), with its recent failures (the newest 20 kept) and its last delivery; a delivered batch ends
a failing state a dead replica left behind. Quarantine, dead letters and the audit log are filtered in SQL over
the whole table and paged by key: every matching row is found whatever the page size, and the counts agree.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from tanpuhui.hub.audit import AuditEvent
from tanpuhui.hub.store.base import Checkpoint, NewReceipt, PageWrite
from tanpuhui.hub.store.queries import AuditQuery, DeadLetterQuery, QuarantineQuery, time_bound
from tanpuhui.hub.store.sink_log import KEEP_ERRORS, StoredSinkState

from .conftest import Backend
from .records import bad_item, trips

UTC_NOW = datetime.now(UTC)


def _retrying(owner: str, attempts: int, error: str) -> StoredSinkState:
    since = (UTC_NOW - timedelta(minutes=12)).isoformat(timespec="milliseconds")
    return StoredSinkState("platform", "retrying", since, attempts, error, None, False, 0, owner)


def test_a_sink_failing_in_one_replica_is_seen_by_another_with_its_recent_errors(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    for n in range(1, KEEP_ERRORS + 6):
        a.sink_state_save(_retrying("replica-a", n, f"HTTP 503 from consumer (try {n})"), f"HTTP 503 (try {n})")
    seen = b.sink_states()["platform"]
    assert (seen.state, seen.attempts, seen.owner) == ("retrying", KEEP_ERRORS + 5, "replica-a")
    assert seen.last_error == f"HTTP 503 from consumer (try {KEEP_ERRORS + 5})"
    assert seen.since is not None and datetime.fromisoformat(seen.since) < UTC_NOW
    failures = b.sink_failures("platform", 100)
    assert len(failures) == KEEP_ERRORS  # only the newest are kept
    assert [f.error for f in failures[:2]] == [f"HTTP 503 (try {KEEP_ERRORS + 5})", f"HTTP 503 (try {KEEP_ERRORS + 4})"]
    assert b.sink_failures("archive") == []

    # Recovered in replica a: ok again, the recovery counted, the failures kept for the record.
    a.sink_state_save(StoredSinkState("platform", "ok", recoveries=1, owner="replica-a"))
    assert (b.sink_states()["platform"].state, b.sink_states()["platform"].recoveries) == ("ok", 1)
    assert len(b.sink_failures("platform")) == KEEP_ERRORS


def test_a_delivered_batch_stamps_the_last_delivery_and_ends_a_failing_state_left_behind(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.commit_pages([PageWrite("transit_card", "trips", trips(4), [], Checkpoint("c1"))])
    rows = b.read_outbox(0, 10)
    a.sink_state_save(_retrying("replica-a", 3, "connection refused"), "connection refused")  # then a dies
    # b takes over: a batch dead-lettered after give_up_after does not end the outage ...
    b.advance_sink("platform", rows[1].seq, dead=[(rows[0], 5, "503"), (rows[1], 5, "503")])
    assert b.sink_states()["platform"].state == "retrying"
    assert b.sink_states()["platform"].last_delivery is None
    # ... a delivered one does.
    b.advance_sink("platform", rows[-1].seq)
    state = a.sink_states()["platform"]
    assert state.state == "ok" and state.attempts == 0
    assert state.last_delivery is not None
    assert datetime.fromisoformat(state.last_delivery) >= UTC_NOW - timedelta(seconds=5)
    assert b.dead_letters_by_sink() == {"platform": 2}


def _quarantine(store: object, stream: str, stage: str, problem: str, n: int, prefix: str) -> None:
    items = [dataclasses.replace(bad_item(f"{prefix}-{i:04d}", problem=problem), stage=stage) for i in range(n)]
    store.commit_pages([PageWrite("transit_card", stream, [], items, None)])  # type: ignore[attr-defined]


@pytest.mark.parametrize("page", [7, 100])
def test_quarantine_filters_run_over_the_whole_table_page_by_page(backend: Backend, page: int) -> None:
    store = backend.open()
    _quarantine(store, "trips", "raw", "/tap_out", 130, "T")
    _quarantine(store, "trips", "normalize", "/fare_cents", 40, "F")
    _quarantine(store, "cards", "raw", "/tap_out", 60, "C")
    _quarantine(store, "trips", "raw", "/station_100%_full", 3, "P")  # LIKE's wildcards are matched literally

    def every(q: QuarantineQuery) -> list[int]:
        found: list[int] = []
        while True:
            batch = store.quarantine_find(q, found[-1] if found else 0, page)
            found.extend(e.id for e in batch)
            if len(batch) < page:
                return found

    tap_out_trips = QuarantineQuery(adapter="transit_card", stream="trips", stage="raw", problem="TAP_OUT")
    ids = every(tap_out_trips)
    assert len(ids) == 130 == store.quarantine_count(tap_out_trips) == len(set(ids))
    assert ids == sorted(ids) == store.quarantine_ids(tap_out_trips)
    assert len(every(QuarantineQuery(problem="100%"))) == 3
    assert store.quarantine_count(QuarantineQuery(problem="100_")) == 0
    assert store.quarantine_count(QuarantineQuery(stage="normalize")) == 40
    assert store.quarantine_count(QuarantineQuery(stream="cards")) == 60
    assert store.quarantine_count(QuarantineQuery(adapter="provincial_bigdata")) == 0
    facets = store.quarantine_facets("open")
    assert facets == {"adapter": ["transit_card"], "stream": ["cards", "trips"], "stage": ["normalize", "raw"]}

    tomorrow = (UTC_NOW + timedelta(days=1)).date().isoformat()
    yesterday = (UTC_NOW - timedelta(days=1)).date().isoformat()
    assert store.quarantine_count(QuarantineQuery(since=time_bound(tomorrow))) == 0
    assert store.quarantine_count(QuarantineQuery(since=time_bound(yesterday))) == 233
    assert store.quarantine_count(QuarantineQuery(until=time_bound(yesterday, end=True))) == 0
    assert store.quarantine_count(QuarantineQuery(until=time_bound(UTC_NOW.date().isoformat(), end=True))) == 233

    store.quarantine_resolve(ids[0], "discarded")
    assert store.quarantine_count(tap_out_trips) == 129
    assert store.quarantine_ids(dataclasses.replace(tap_out_trips, status="discarded")) == [ids[0]]


def test_dead_letters_per_sink_and_the_audit_log_filter_and_page_in_sql(backend: Backend) -> None:
    store = backend.open()
    store.commit_pages([PageWrite("transit_card", "trips", trips(260), [], Checkpoint("c1"))])
    rows = store.read_outbox(0, 1000)
    store.advance_sink("platform", rows[149].seq, dead=[(r, 3, "HTTP 422: missing subject") for r in rows[:150]])
    store.advance_sink("archive", rows[-1].seq, dead=[(r, 1, "HTTP 400: bad scenario") for r in rows[150:]])
    platform = DeadLetterQuery(sink="platform")
    found: list[int] = []
    while batch := store.dead_letters_find(platform, found[-1] if found else 0, 40):
        found.extend(d.id for d in batch)
    assert len(found) == 150 == store.dead_letters_count(platform) == len(store.dead_letter_ids(platform))
    assert store.dead_letters_count(DeadLetterQuery(error="missing SUBJECT")) == 150
    assert store.dead_letters_count(DeadLetterQuery(sink="archive", error="422")) == 0
    newest = store.dead_letters_find(DeadLetterQuery(sink="archive"), 0, 3, newest=True)
    assert [d.seq for d in newest] == [r.seq for r in rows[-1:-4:-1]]

    actions = ["console.sink.pause" if i % 2 else "console.sink.resume" for i in range(120)]
    events = [AuditEvent(a, f"sink-{i % 3}", {}, actor="console@127.0.0.1") for i, a in enumerate(actions)]
    store.audit_append(events)
    pauses = AuditQuery(action="console.sink.pause", subject="sink-1")
    seqs: list[int] = []
    while batch := store.audit_find(pauses, seqs[-1] if seqs else 0, 25):
        seqs.extend(e.seq for e in batch)
    assert seqs == sorted(seqs, reverse=True)
    expected = sum(1 for i in range(120) if i % 2 and i % 3 == 1)
    assert len(seqs) == expected == store.audit_count(pauses)
    assert store.audit_count(AuditQuery(action="console.")) == 120
    assert store.audit_count(AuditQuery(action="deadletter.add")) == 2
    assert store.audit_count(AuditQuery(actor="console")) == 120
    assert store.audit_count(AuditQuery(since=time_bound((UTC_NOW + timedelta(days=1)).date().isoformat()))) == 0


def test_a_push_streams_recent_webhook_requests_are_read_newest_first_with_their_answers(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    for n in range(1, 4):
        answer = f'{{"webhook_id":"msg_sgdr_{n:04d}","items":{n},"accepted":{n},"quarantined":0,"records":{n}}}'
        receipt = NewReceipt(f"msg_sgdr_{n:04d}", f"{n:02d}" * 32, 200, answer.encode())
        a.commit_pages([PageWrite("state_grid", "demand_response", [], [], Checkpoint(None), receipt=receipt)])
    other = NewReceipt("msg_bike_0001", "cd" * 32, 200, b'{"items":9}')
    a.commit_pages([PageWrite("bike_share", "rides", [], [], Checkpoint(None), receipt=other)])
    recent = b.recent_receipts("state_grid", "demand_response", 2)
    assert [r.key for r in recent] == ["msg_sgdr_0003", "msg_sgdr_0002"]
    assert b'"items":3' in recent[0].body and recent[0].status == 200
    assert recent[0].created_at >= recent[1].created_at
    assert len(b.recent_receipts("state_grid", "demand_response")) == 3
    assert b.recent_receipts("state_grid", "readings") == []
