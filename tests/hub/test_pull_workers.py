"""``tanpuhui pull --workers N`` and ``run --workers N``: the partitions of a stream pulled by forked processes,
each committing its own pages on the shared store (the commands run as real processes, as a user runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cli_kit import transit_config

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.pull_workers import PullWorkers, share
from tanpuhui.hub.store.sqlite import SQLiteStore

TANPUHUI = str(Path(sys.executable).parent / "tanpuhui")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=1200, seed=5) as sandbox:
        yield sandbox


def tanpuhui(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TANPUHUI, *args, "--config", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def outbox_bodies(folder: Path) -> dict[str, bytes]:
    store = SQLiteStore(folder / "hub.db")
    try:
        return {row.record_id: row.body for row in store.read_outbox(0, 1_000_000)}
    finally:
        store.close()


def test_two_workers_on_two_partitions_credit_what_one_process_credits_each_part_in_its_own_process(
    sandbox: TransitSandbox, tmp_path: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, env = transit_config(tmp_path / "one", sandbox, "http://127.0.0.1:9/unused", page_size=200)
    two, _ = transit_config(
        tmp_path / "two", sandbox, "http://127.0.0.1:9/unused", page_size=200, partitions={"transactions": 2}
    )
    single = tanpuhui(one, env, "pull", "transit_card")
    assert single.returncode == 0, single.stderr
    split = tanpuhui(two, env, "pull", "transit_card:transactions", "--workers", "2", "--json")
    assert split.returncode == 0, split.stderr

    summaries = orjson.loads(split.stdout)["summaries"]
    assert [s["stream"] for s in summaries] == ["transactions_0of2", "transactions_1of2"]
    assert all(s["error"] is None and s["pulled"] > 0 for s in summaries)
    assert outbox_bodies(tmp_path / "two") == outbox_bodies(tmp_path / "one")
    store = SQLiteStore(tmp_path / "two" / "hub.db")
    try:
        owners = {run.stream: run.owner for run in store.runs("transit_card")}
    finally:
        store.close()
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
