"""Several replicas (store instances, each with its own connections) writing and reading one state at once.

Both stores must keep the contract: a record stored once whoever commits it, a webhook answered once, a
behaviour claimed by one source, and a reader that sees every committed row exactly once, in seq order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from tanpuhui.hub.audit import verify_log
from tanpuhui.hub.store.base import Checkpoint, CommitResult, NewQuarantine, NewReceipt, PageWrite

from .conftest import Backend
from .records import MORNING, bad_item, trip, trips


def _together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i in range(n) on n threads released at the same instant."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_same_records_committed_by_three_replicas_are_stored_once(backend: Backend) -> None:
    replicas = [backend.open() for _ in range(3)]
    records = trips(300)

    def commit(i: int) -> CommitResult:
        return replicas[i].commit_page("transit_card", "trips", records, [], None)

    results = _together(3, commit)
    assert sum(r.inserted for r in results) == 300
    assert sum(r.duplicates for r in results) == 600
    assert replicas[0].counts()["outbox"] == 300
    assert sorted(r.record_id for r in replicas[1].read_outbox(0, 1000)) == sorted(r.record_id for r in records)


def test_same_webhook_received_by_two_replicas_is_stored_once(backend: Backend) -> None:
    replicas = [backend.open() for _ in range(2)]
    receipt = NewReceipt("msg_2024_0001", "cd" * 32, 200, b'{"accepted": 2}')
    page = [trip("R-1"), trip("R-2", person="p2")]

    def commit(i: int) -> list[CommitResult | None]:
        return replicas[i].commit_pages([PageWrite("bike_share", "rides", page, [], Checkpoint(None), receipt)])

    results = [r[0] for r in _together(2, commit)]
    assert sorted(r is None for r in results) == [False, True]
    assert replicas[0].counts()["outbox"] == 2
    stored = replicas[1].receipt_get("bike_share", "rides", "msg_2024_0001")
    assert stored is not None and stored.body == b'{"accepted": 2}'


def test_one_behaviour_from_two_sources_at_once_is_claimed_once(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    for round_ in range(15):
        person = f"resident-{round_:04d}"
        by_card = trip(f"HF-M1-{round_:06d}", person=person, neighbour=True)
        by_app = trip(f"YRD-{round_:06d}", adapter="yrd_scenarios", stream="travel", person=person, neighbour=True)
        pages = [("transit_card", "trips", a, by_card), ("yrd_scenarios", "travel", b, by_app)]

        def commit(i: int, pages: list[Any] = pages) -> CommitResult:
            adapter, stream, store, record = pages[i]
            result: CommitResult = store.commit_page(adapter, stream, [record], [], None)
            return result

        results = _together(2, commit)
        assert sorted((r.inserted, r.held) for r in results) == [(0, 1), (1, 0)], f"round {round_}"
    assert a.counts()["outbox"] == 15
    assert a.counts()["held_claims"] == 15


def test_reader_sees_every_row_of_concurrent_writers_once_and_in_order(backend: Backend) -> None:
    """Four replicas commit pages while a fifth drains like a forwarder: no gap, no repeat."""
    writers = [backend.open() for _ in range(4)]
    reader = backend.open()
    pages_per_writer, page_size = 12, 40
    done = threading.Event()
    seen: list[tuple[int, str]] = []

    def drain() -> None:
        position = 0
        while True:
            finished = done.is_set()
            rows = reader.read_outbox(position, 25)
            for row in rows:
                seen.append((row.seq, row.record_id))
            if rows:
                position = rows[-1].seq
            elif finished:
                return

    def write(i: int) -> None:
        for p in range(pages_per_writer):
            # hours apart: in PostgreSQL the writers do not wait for each other's claim windows
            page = trips(page_size, prefix=f"W{i}-P{p:02d}", start=MORNING + timedelta(hours=i))
            writers[i].commit_page("transit_card", f"trips-{i}", page, [], Checkpoint(p))

    draining = threading.Thread(target=drain)
    draining.start()
    try:
        _together(4, write)
    finally:
        done.set()
        draining.join(timeout=60)
    expected = {
        r.record_id
        for i in range(4)
        for p in range(pages_per_writer)
        for r in trips(page_size, prefix=f"W{i}-P{p:02d}", start=MORNING + timedelta(hours=i))
    }
    ids = [record_id for _, record_id in seen]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    seqs = [seq for seq, _ in seen]
    assert seqs == sorted(seqs)


def test_pages_committed_by_several_replicas_at_once_chain_into_one_intact_log(backend: Backend) -> None:
    replicas = [backend.open() for _ in range(3)]
    pages = 8

    def write(i: int) -> None:
        for p in range(pages):
            # the same windows for every replica: their pages share claim locks half of the time
            start = MORNING + timedelta(hours=p % 2)
            replicas[i].commit_page("transit_card", f"trips-{i}", trips(30, prefix=f"R{i}-{p}", start=start), [], None)
            replicas[i].advance_sink(f"sink-{i}", p, dead=[])

    _together(3, write)
    log = replicas[0]
    entries = log.audit_entries(0, 1000)
    assert [e.seq for e in entries] == list(range(1, 3 * pages + 1))
    assert sorted(e.subject for e in entries) == sorted(
        f"transit_card:trips-{i}" for i in range(3) for _ in range(pages)
    )
    result = verify_log(log, records=True)
    assert result.ok, result.problems
    assert result.records_checked == 3 * pages * 30
    assert log.audit_head() == (3 * pages, entries[-1].hash)


def test_two_replicas_quarantining_the_same_item_at_once_make_one_entry(backend: Backend) -> None:
    replicas = [backend.open() for _ in range(2)]
    for n in range(10):
        item = bad_item(f"HF-M1-{n:06d}", digest=f"{n:02d}" * 32)

        def commit(i: int, item: NewQuarantine = item) -> CommitResult:
            return replicas[i].commit_page("transit_card", "trips", [], [item], None)

        results = _together(2, commit)
        assert sorted((r.quarantined, r.quarantine_repeats) for r in results) == [(0, 1), (1, 0)]
    assert [e.repeats for e in replicas[0].quarantine_list()] == [1] * 10


def test_only_one_of_many_replicas_gets_a_free_lease(backend: Backend) -> None:
    replicas = [backend.open() for _ in range(5)]
    won = _together(5, lambda i: replicas[i].acquire_lease("transit_card", "trips", f"replica-{i}", 30))
    assert sum(won) == 1
    [lease] = replicas[0].leases()
    assert lease.owner == f"replica-{won.index(True)}"


def test_takeover_waits_for_the_page_being_committed(backend: Backend) -> None:
    """A page committed under the lease is either in before the takeover or refused, never half in."""
    a, b = backend.open(), backend.open()
    assert a.acquire_lease("transit_card", "trips", "replica-a", 0.05)
    records = [trip(f"HF-{i:06d}", start=MORNING, person=f"p{i}") for i in range(200)]
    outcome: list[str] = []

    def commit_a() -> None:
        try:
            a.commit_page("transit_card", "trips", records, [], Checkpoint("a-1"), lease_owner="replica-a")
            outcome.append("a committed")
        except Exception as exc:  # LeaseLost
            outcome.append(type(exc).__name__)

    threading.Event().wait(0.1)  # the lease has expired: b may take it at any moment
    t = threading.Thread(target=commit_a)
    t.start()
    took = b.acquire_lease("transit_card", "trips", "replica-b", 30)
    t.join()
    assert took
    checkpoint = b.load_checkpoint("transit_card", "trips")
    if outcome == ["a committed"]:
        assert (checkpoint.cursor, b.counts()["outbox"]) == ("a-1", 200)
    else:
        assert outcome == ["LeaseLost"]
        assert (checkpoint.cursor, b.counts()["outbox"]) == (None, 0)
