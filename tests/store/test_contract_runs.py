"""The store contract, continued: run history, the same on SQLite and PostgreSQL.

A pull run is one row: opened when the run starts, its counters added by each page's own commit (so they are
exactly what the run committed, even when the process dies midway), closed with outcome, error and duration.
A row its process never closed is ``interrupted`` when the stream's next run begins. Retention prunes old runs
but never a stream's newest.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from tanpuhui.hub.store.base import Checkpoint, PageWrite, RunCount, RunLog, Store

from .records import bad_item, trips


def _page(run_id: int, records: int, start: int, *, bad: int = 0, items: int | None = None) -> PageWrite:
    recs = trips(records, prefix=f"HF-M{start}")
    quarantined = [bad_item(f"HF-BAD-{start}-{i}") for i in range(bad)]
    page = PageWrite("transit_card", "trips", recs, quarantined, Checkpoint(f"c-{start}"))
    return dataclasses.replace(page, run=RunCount(run_id, items if items is not None else records + bad))


def test_a_run_counts_what_its_pages_committed(store: Store) -> None:
    assert isinstance(store, RunLog)
    run_id = store.run_begin("transit_card", "trips", "replica-a")
    store.commit_pages([_page(run_id, 3, 1, bad=1)])
    store.commit_pages([_page(run_id, 2, 1)])  # the same two first trips again: duplicates
    store.run_end(run_id, "ok", None, 1.25)
    [run] = store.runs("transit_card", "trips")
    assert (run.id, run.owner, run.outcome, run.error, run.seconds) == (run_id, "replica-a", "ok", None, 1.25)
    assert (run.pages, run.items, run.inserted, run.duplicates, run.quarantined) == (2, 6, 3, 2, 1)
    assert run.finished_at is not None and run.finished_at >= run.started_at


def test_counts_add_up_across_runs_and_a_crashed_run(store: Store) -> None:
    assert isinstance(store, RunLog)
    crashed = store.run_begin("transit_card", "trips", "replica-a")
    store.commit_pages([_page(crashed, 4, 1)])  # then the process died: no run_end
    again = store.run_begin("transit_card", "trips", "replica-b")
    store.commit_pages([_page(again, 6, 1)])
    store.run_end(again, "ok", None, 0.5)
    newest, older = store.runs(stream="trips")
    assert (newest.id, newest.outcome, older.id, older.outcome) == (again, "ok", crashed, "interrupted")
    outbox_rows = store.counts()["outbox"]
    assert newest.inserted + older.inserted == outbox_rows == 6


def test_latest_runs_gives_each_streams_newest(store: Store) -> None:
    assert isinstance(store, RunLog)
    first = store.run_begin("transit_card", "trips", "r")
    store.run_end(first, "error", "partner answered 503", 0.1)
    second = store.run_begin("transit_card", "trips", "r")
    other = store.run_begin("state_grid", "readings", "r")
    latest = {(r.adapter, r.stream): r for r in store.latest_runs()}
    assert {k: v.id for k, v in latest.items()} == {
        ("transit_card", "trips"): second,
        ("state_grid", "readings"): other,
    }
    assert latest["transit_card", "trips"].outcome == "running"
    assert store.runs("transit_card", limit=1)[0].id == second
    assert store.runs()[-1].error == "partner answered 503"


def test_prune_forgets_old_runs_but_keeps_each_streams_newest(store: Store) -> None:
    assert isinstance(store, RunLog)
    ids = [store.run_begin("transit_card", "trips", "r") for _ in range(3)]
    for run_id in ids:
        store.run_end(run_id, "ok", None, 0.1)
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat(timespec="milliseconds")
    assert store.prune_runs(later) == 2
    assert [r.id for r in store.runs()] == [ids[-1]]
