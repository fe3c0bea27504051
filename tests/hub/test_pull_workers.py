"""``tanpuhui pull --workers N`` and ``run --workers N``: the partitions of a stream pulled by forked processes,
each committing its own pages on the shared store, SQLite or PostgreSQL (the commands run as real processes, as a
user runs them)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_kit import tanpuhui, transit_config
from store.pg import SlowCommitter
from store.records import trips

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.pull_workers import PullWorkers, share
from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import Partition


@pytest.fixture(scope="module")
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=1200, seed=5) as sandbox:
        yield sandbox


def opened(store: Path | str) -> Any:
    """The store of a hub.toml: ``hub.db`` in the folder ``store``, or the PostgreSQL database at the URL ``store``."""
    return SQLiteStore(store / "hub.db") if isinstance(store, Path) else PostgresStore(store)


def outbox_bodies(store: Path | str) -> dict[str, bytes]:
    opened_store = opened(store)
    try:
        return {row.record_id: row.body for row in opened_store.read_outbox(0, 1_000_000)}
    finally:
        opened_store.close()


def quarantined(store: Path | str) -> list[tuple[str, str, str, str, int]]:
    """The open quarantine entries: (stream, not its partition; stage, partner id, problems, repeats)."""
    opened_store = opened(store)
    try:
        entries = opened_store.quarantine_list(limit=100_000)
    finally:
        opened_store.close()
    return sorted(
        (Partition.base_of(e.stream), e.stage, e.partner_record_id, orjson.dumps(e.problems).decode(), e.repeats)
        for e in entries
    )


@pytest.fixture(scope="module")
def one_process(sandbox: TransitSandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a hub that pulled the whole transactions stream in one process (``tanpuhui pull``, no
    partitions, SQLite): what any split of the pull must credit and quarantine."""
    folder = tmp_path_factory.mktemp("one")
    config, env = transit_config(folder, sandbox, "http://127.0.0.1:9/unused", page_size=200)
    single = tanpuhui(config, env, "pull", "transit_card")
    assert single.returncode == 0, single.stderr
    return folder


def partition_owners(store: Path | str) -> dict[str, str]:
    """Each stream's last run's lease owner (host, process, random part)."""
    opened_store = opened(store)
    try:
        return {run.stream: run.owner for run in opened_store.runs("transit_card")}
    finally:
        opened_store.close()


def test_two_workers_on_two_partitions_credit_what_one_process_credits_each_part_in_its_own_process(
    sandbox: TransitSandbox, one_process: Path, tmp_path: Path
) -> None:
    two, env = transit_config(
        tmp_path, sandbox, "http://127.0.0.1:9/unused", page_size=200, partitions={"transactions": 2}
    )
    split = tanpuhui(two, env, "pull", "transit_card:transactions", "--workers", "2", "--json")
    assert split.returncode == 0, split.stderr

    summaries = orjson.loads(split.stdout)["summaries"]
    assert [s["stream"] for s in summaries] == ["transactions_0of2", "transactions_1of2"]
    assert all(s["error"] is None and s["pulled"] > 0 for s in summaries)
    assert outbox_bodies(tmp_path) == outbox_bodies(one_process)
    owners = partition_owners(tmp_path)
    assert set(owners) == {"transactions_0of2", "transactions_1of2"}
    assert owners["transactions_0of2"] != owners["transactions_1of2"]  # two processes, one partition each


def test_run_with_two_workers_forwards_every_record_once_while_they_pull(
    sandbox: TransitSandbox, tmp_path: Path
) -> None:
    config, env = transit_config(
        tmp_path, sandbox, "http://127.0.0.1:9/unused", page_size=150, partitions={"transactions": 3}
    )
    done = tanpuhui(config, env, "run", "--workers", "2", "--sink", "archive")
    assert done.returncode == 0, done.stderr
    assert "transactions_2of3" in done.stdout
    delivered = [orjson.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_bytes().splitlines()]
    ids = [record["record_id"] for record in delivered]
    assert sorted(ids) == sorted(outbox_bodies(tmp_path)) and len(set(ids)) == len(ids) > 500
    again = tanpuhui(config, env, "run", "--workers", "2", "--sink", "archive")
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == len(ids)  # nothing new


def postgres_transit_config(tmp_path: Path, sandbox: TransitSandbox, store: str) -> tuple[Path, dict[str, str]]:
    """A hub.toml on the PostgreSQL database ``store`` (migrated, as an operator does with ``tanpuhui migrate``
    before the first pull), the transactions stream read in two partitions, in small pages each committed alone
    (``commit_records = 0``; grouped, each worker's pull is one transaction): the two workers' commits interleave."""
    config, env = transit_config(
        tmp_path,
        sandbox,
        "http://127.0.0.1:9/unused",
        hub={"store": store, "commit_records": 0},
        page_size=60,
        partitions={"transactions": 2},
    )
    migrated = tanpuhui(config, env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return config, env


def committed_by_turns(store: str) -> int:
    """How many times the page commits of the audit log (one chain, in commit order) pass from one partition to the
    other: 1 when one worker committed all its pages before the other's first."""
    opened_store = opened(store)
    try:
        subjects = [e.subject for e in opened_store.audit_entries(0, 100_000) if e.action == "page.commit"]
    finally:
        opened_store.close()
    return sum(a != b for a, b in pairwise(subjects))


def test_two_workers_on_postgres_credit_and_quarantine_what_one_process_does(
    sandbox: TransitSandbox, one_process: Path, pg_dsn: str, tmp_path: Path
) -> None:
    config, env = postgres_transit_config(tmp_path, sandbox, pg_dsn)
    split = tanpuhui(config, env, "pull", "transit_card:transactions", "--workers", "2", "--json")
    assert split.returncode == 0, split.stderr

    summaries = orjson.loads(split.stdout)["summaries"]
    assert [s["stream"] for s in summaries] == ["transactions_0of2", "transactions_1of2"]
    assert all(s["error"] is None and s["pages"] > 5 for s in summaries)
    credited = outbox_bodies(pg_dsn)
    assert credited == outbox_bodies(one_process) and len(credited) > 500
    assert quarantined(pg_dsn) == quarantined(one_process) != []
    owners = partition_owners(pg_dsn)
    assert owners["transactions_0of2"] != owners["transactions_1of2"]  # two processes, one partition each
    assert committed_by_turns(pg_dsn) > 2  # the two wrote at once, not one after the other
    verified = tanpuhui(config, env, "audit", "verify", "--records", "--json")
    assert verified.returncode == 0 and orjson.loads(verified.stdout)["problems"] == [], verified.stdout
    again = tanpuhui(config, env, "pull", "transit_card:transactions", "--workers", "2", "--json")
    assert again.returncode == 0, again.stderr
    assert [s["inserted"] for s in orjson.loads(again.stdout)["summaries"]] == [0, 0]  # resumed from the cursors


def test_run_with_two_workers_on_postgres_forwards_each_record_once_as_one_process_credits_it(
    sandbox: TransitSandbox, one_process: Path, pg_dsn: str, tmp_path: Path
) -> None:
    config, env = postgres_transit_config(tmp_path, sandbox, pg_dsn)
    done = tanpuhui(config, env, "run", "--workers", "2", "--sink", "archive")
    assert done.returncode == 0, done.stderr
    assert "transactions_1of2" in done.stdout

    lines = (tmp_path / "out" / "records.jsonl").read_bytes().splitlines()
    delivered = {orjson.loads(line)["record_id"]: orjson.loads(line) for line in lines}
    credited = outbox_bodies(one_process)
    assert len(delivered) == len(lines)  # none twice
    assert delivered == {record_id: orjson.loads(body) for record_id, body in credited.items()}  # none missing
    assert outbox_bodies(pg_dsn) == credited
    assert quarantined(pg_dsn) == quarantined(one_process) != []
    again = tanpuhui(config, env, "run", "--workers", "2", "--sink", "archive")
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == len(lines)  # nothing new


def test_run_with_two_workers_on_postgres_forwards_a_row_committed_after_rows_with_higher_seqs(
    sandbox: TransitSandbox, one_process: Path, pg_dsn: str, tmp_path: Path
) -> None:
    config, env = postgres_transit_config(tmp_path, sandbox, pg_dsn)
    # Another writer on the store (a replica, or a worker on a slow disk): its page's rows take the first seqs and
    # stay uncommitted for seconds while the workers pull and commit rows with higher seqs. A forwarder reading
    # what is visible would deliver those and move the sink's position past the late rows for good.
    slow = SlowCommitter(pg_dsn)
    slow.delay = 5.0
    late = trips(3, prefix="HF-LATE")
    committing = threading.Thread(target=slow.commit_page, args=("transit_card", "trips", late, [], None))
    committing.start()
    try:
        assert slow.written.wait(10)
        done = tanpuhui(config, env, "run", "--workers", "2", "--sink", "archive")
    finally:
        committing.join()
        slow.close()
    assert done.returncode == 0, done.stderr

    lines = (tmp_path / "out" / "records.jsonl").read_bytes().splitlines()
    delivered = [orjson.loads(line)["record_id"] for line in lines]
    credited = outbox_bodies(pg_dsn)
    assert set(credited) == set(outbox_bodies(one_process)) | {r.record_id for r in late}
    assert sorted(set(credited) - set(delivered)) == []  # the late rows too: the forwarder waited for their commit
    assert sorted(delivered) == sorted(credited)  # each once
    again = tanpuhui(config, env, "run", "--workers", "2", "--sink", "archive")
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == len(lines)  # nothing new


def test_a_wrong_partitions_setting_stops_the_command_before_any_worker_starts(
    sandbox: TransitSandbox, tmp_path: Path
) -> None:
    config, env = transit_config(tmp_path, sandbox, "http://127.0.0.1:9/unused", partitions={"trips": 2})
    refused = tanpuhui(config, env, "pull", "transit_card", "--workers", "2")
    assert refused.returncode == 2
    assert "[adapters.transit_card] partitions.trips: the adapter has no stream 'trips'" in refused.stderr
    assert "Traceback" not in refused.stderr and "worker" not in refused.stderr
    assert not (tmp_path / "hub.db").exists() or outbox_bodies(tmp_path) == {}


def _job(keys: list[tuple[str, str]]) -> list[PullSummary]:
    """A worker's job for the tests below: the stream ``dies`` ends its process at once, ``fails`` raises."""
    if ("a", "dies") in keys:
        os._exit(3)
    if ("a", "fails") in keys:
        raise RuntimeError("partner certificate expired")
    return [PullSummary(adapter, stream, pulled=10) for adapter, stream in keys]


def test_a_worker_that_dies_or_fails_is_an_error_of_each_of_its_streams_and_the_others_report() -> None:
    keys = [("a", "ok1"), ("a", "dies"), ("a", "fails"), ("a", "ok2")]
    pool = PullWorkers(keys, 3, _job)
    pool.start()
    found = pool.wait()
    assert [(s.stream, s.pulled) for s in found] == [("ok1", 10), ("dies", 0), ("fails", 0), ("ok2", 10)]
    dies, fails = found[1].error or "", found[2].error or ""
    assert dies.startswith("pull worker 1 (pid ") and "ended with status 3 before it reported" in dies
    assert "failed: partner certificate expired; what it committed stays committed" in fails
    assert found[0].error is None and found[3].error is None


def test_streams_are_shared_round_robin_among_the_workers() -> None:
    keys = [("a", f"s{i}") for i in range(5)]
    assert [share(keys, slot, 2) for slot in (0, 1)] == [keys[0::2], keys[1::2]]
    assert share(keys, 4, 8) == [("a", "s4")] and share(keys, 5, 8) == []
