"""A change of a stream's split is deliberate: after the transit card ``transactions`` stream was pulled in one
split, a pull in another split (more parts, fewer, unsplit) is refused with what would happen and the two ways on,
writing nothing, until ``tanpuhui repartition`` acknowledges it; then the new split reads the feed from the
beginning and credits nothing twice. The commands run as real processes against the transit sandbox."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_kit import tanpuhui, transit_config

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.store.sqlite import SQLiteStore

UNUSED_SINK = "http://127.0.0.1:9/unused"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=600, seed=23) as sandbox:
        yield sandbox


def configure(folder: Path, sandbox: TransitSandbox, parts: int | None) -> tuple[Path, dict[str, str]]:
    folder.mkdir(exist_ok=True)
    extra: dict[str, Any] = {"partitions": {"transactions": parts}} if parts else {}
    return transit_config(folder, sandbox, UNUSED_SINK, page_size=100, **extra)


def pulled(config: Path, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = tanpuhui(config, env, "pull", "transit_card:transactions", "--json", *args)
    assert done.returncode == 0, done.stderr
    summaries: list[dict[str, Any]] = orjson.loads(done.stdout)["summaries"]
    return summaries


def snapshot(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a pull writes: outbox, checkpoints, runs, leases, audit log."""
    conn = sqlite3.connect(folder / "hub.db")
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("outbox", "checkpoints", "runs", "leases", "audit_log")
        }
    finally:
        conn.close()


def outbox(folder: Path) -> dict[str, bytes]:
    """record id -> body, after checking no record id is there twice."""
    store = SQLiteStore(folder / "hub.db")
    try:
        rows = store.read_outbox(0, 1_000_000)
    finally:
        store.close()
    ids = [row.record_id for row in rows]
    assert len(ids) == len(set(ids)) > 100
    return {row.record_id: row.body for row in rows}


def checkpointed(folder: Path) -> list[str]:
    conn = sqlite3.connect(folder / "hub.db")
    try:
        return [row[0] for row in conn.execute("SELECT stream FROM checkpoints ORDER BY stream")]
    finally:
        conn.close()


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    text = " ".join(done.stderr.split())  # rich wraps the line at the terminal's width
    for word in (
        "error:",
        "transit_card:transactions",
        "but the store holds the checkpoints of another split",
        "last committed",
        "read the whole feed again from the partner's beginning",
        "nothing is credited twice",
        "Nothing was pulled",
        "set the partitions back",
        "tanpuhui repartition --config",
        *words,
    ):
        assert word in text, f"{word!r} not in {text!r}"


@pytest.fixture(scope="module")
def from_scratch(sandbox: TransitSandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What a 3-part pull of the whole feed on an empty store credits."""
    config, env = configure(tmp_path_factory.mktemp("scratch"), sandbox, 3)
    pulled(config, env)
    return outbox(config.parent)


def test_two_parts_then_three_is_refused_until_acknowledged_then_nothing_is_credited_twice(
    sandbox: TransitSandbox, tmp_path: Path, from_scratch: dict[str, bytes]
) -> None:
    config, env = configure(tmp_path, sandbox, 2)
    first = pulled(config, env)
    assert [s["stream"] for s in first] == ["transactions_0of2", "transactions_1of2"]
    credited = outbox(tmp_path)
    before = snapshot(tmp_path)

    configure(tmp_path, sandbox, 3)
    assert_refused(
        tanpuhui(config, env, "pull", "transit_card:transactions"),
        "is configured in 3 parts (transactions_0of3 ... transactions_2of3)",
        "in 2 parts (transactions_0of2, transactions_1of2)",
        "`partitions = { transactions = 2 }`",
        "tanpuhui repartition --config",
        "transit_card:transactions` (it removes the other split's checkpoints",
    )
    assert_refused(tanpuhui(config, env, "pull", "transit_card", "--workers", "2"), "in 2 parts")
    assert_refused(tanpuhui(config, env, "run", "--sink", "archive"), "in 2 parts")
    assert_refused(tanpuhui(config, env, "run", "--workers", "3", "--sink", "archive"), "in 2 parts")
    assert snapshot(tmp_path) == before  # nothing written: no page, checkpoint, run, lease or audit entry
    assert not (tmp_path / "out" / "records.jsonl").exists()

    done = tanpuhui(config, env, "repartition", "transit_card:transactions")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "removed the checkpoints of the split no longer configured" in said
    assert "transit_card:transactions_0of2 last committed" in said and "transit_card:transactions_1of2" in said
    assert "The next pull reads transit_card:transactions in 3 parts" in said
    assert checkpointed(tmp_path) == []
    audit = tanpuhui(config, env, "audit", "list", "--json")
    entries = orjson.loads(audit.stdout)["entries"]
    [entry] = [e for e in entries if e["action"] == "cli.stream.repartition"]
    assert entry["subject"] == "transit_card:transactions" and entry["actor"].startswith("cli@")
    assert sorted(entry["details"]["removed"]) == ["transactions_0of2", "transactions_1of2"]
    assert tanpuhui(config, env, "audit", "verify").returncode == 0

    again = pulled(config, env, "--workers", "2")
    assert [s["stream"] for s in again] == ["transactions_0of3", "transactions_1of3", "transactions_2of3"]
    assert sum(s["pulled"] for s in again) == sum(s["pulled"] for s in first)  # the whole feed, read again
    assert sum(s["inserted"] for s in again) == 0  # and nothing credited twice
    assert outbox(tmp_path) == credited == from_scratch
    assert checkpointed(tmp_path) == ["transactions_0of3", "transactions_1of3", "transactions_2of3"]
    assert sum(s["pulled"] for s in pulled(config, env)) == 0  # the new split resumes from its own cursors


def test_an_unsplit_stream_then_two_parts(sandbox: TransitSandbox, tmp_path: Path) -> None:
    config, env = configure(tmp_path, sandbox, None)
    [first] = pulled(config, env)
    credited = outbox(tmp_path)
    before = snapshot(tmp_path)
    configure(tmp_path, sandbox, 2)
    assert_refused(
        tanpuhui(config, env, "pull", "transit_card"),
        "is configured in 2 parts (transactions_0of2, transactions_1of2)",
        "unsplit (one stream, transactions), last committed",
        "(`no transactions in partitions`)",
    )
    assert snapshot(tmp_path) == before
    assert tanpuhui(config, env, "repartition", "transit_card:transactions").returncode == 0
    again = pulled(config, env)
    assert sum(s["pulled"] for s in again) == first["pulled"] and sum(s["inserted"] for s in again) == 0
    assert outbox(tmp_path) == credited


def test_two_parts_then_unsplit(sandbox: TransitSandbox, tmp_path: Path) -> None:
    config, env = configure(tmp_path, sandbox, 2)
    first = pulled(config, env)
    credited = outbox(tmp_path)
    before = snapshot(tmp_path)
    configure(tmp_path, sandbox, None)
    assert_refused(
        tanpuhui(config, env, "pull", "transit_card:transactions"),
        "is configured unsplit (one stream, transactions)",
        "in 2 parts (transactions_0of2, transactions_1of2), last committed",
        "`partitions = { transactions = 2 }`",
    )
    assert snapshot(tmp_path) == before
    assert tanpuhui(config, env, "repartition", "transit_card:transactions").returncode == 0
    [again] = pulled(config, env)
    assert again["pulled"] == sum(s["pulled"] for s in first) and again["inserted"] == 0
    assert outbox(tmp_path) == credited
    assert checkpointed(tmp_path) == ["transactions"]


def test_repartition_is_refused_while_a_run_holds_an_old_part_and_lifts_an_old_parts_pause(
    sandbox: TransitSandbox, tmp_path: Path
) -> None:
    config, env = configure(tmp_path, sandbox, 2)
    pulled(config, env)
    assert tanpuhui(config, env, "pause", "transit_card:transactions_1of2").returncode == 0
    store = SQLiteStore(tmp_path / "hub.db")
    try:
        assert store.acquire_lease("transit_card", "transactions_0of2", "ops-host:4242:9f3e1a", 600)
    finally:
        store.close()
    configure(tmp_path, sandbox, 3)
    before = snapshot(tmp_path)
    busy = tanpuhui(config, env, "repartition", "transit_card:transactions")
    assert busy.returncode == 2 and "Traceback" not in busy.stderr
    said = " ".join(busy.stderr.split())
    assert "a run holds the old split now" in said and "transit_card:transactions_0of2 (by ops-host:4242:9f3e1a" in said
    assert "nothing was removed" in said
    assert snapshot(tmp_path) == before

    store = SQLiteStore(tmp_path / "hub.db")
    try:
        store.release_lease("transit_card", "transactions_0of2", "ops-host:4242:9f3e1a")
    finally:
        store.close()
    done = tanpuhui(config, env, "repartition", "transit_card:transactions")
    assert done.returncode == 0, done.stderr
    assert "the pause of transit_card:transactions_1of2 was lifted with it" in " ".join(done.stdout.split())
    assert snapshot(tmp_path)["leases"] == []
    nothing = tanpuhui(config, env, "repartition", "transit_card:transactions")
    assert nothing.returncode == 0 and "nothing to do" in nothing.stdout


def test_repartition_names_the_streams_that_can_be_split(sandbox: TransitSandbox, tmp_path: Path) -> None:
    config, env = configure(tmp_path, sandbox, 2)
    wrong = tanpuhui(config, env, "repartition", "transit_card:trips")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "no stream 'trips' that can be read in parts (those it has: transactions)" in " ".join(wrong.stderr.split())
