"""``tanpuhui status``: the overview for terminals and scripts, its figures the store's (after the demo)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import orjson
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.store.sqlite import SQLiteStore


def test_status_shows_every_streams_last_run_and_the_sinks_as_the_store_holds_them(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    with mock.patch.dict(os.environ):  # the demo exports its sandbox secrets; leave none behind
        demo = CliRunner().invoke(main, ["demo", "--trips", "200", "--workdir", str(workdir)])
        assert demo.exit_code == 0, demo.output
        config = str(workdir / "hub.toml")
        as_json = CliRunner().invoke(main, ["status", "--config", config, "--json"])
        table = CliRunner().invoke(main, ["status", "--config", config])
    assert as_json.exit_code == 0 and table.exit_code == 0, as_json.output + table.output
    doc = orjson.loads(as_json.stdout)
    store = SQLiteStore(workdir / "hub.db")
    try:
        runs = {(r.adapter, r.stream): r for r in store.latest_runs()}
        counts = store.counts()
    finally:
        store.close()
    streams = {(s["adapter"], s["stream"]): s for s in doc["streams"]}
    pulled = {key: s for key, s in streams.items() if s["kind"] == "pull"}
    assert pulled and set(pulled) == set(runs)
    for key, s in pulled.items():
        assert s["last_run"]["inserted"] == runs[key].inserted and s["last_run"]["outcome"] == "ok"
        assert s["cursor"] and s["stale"] is False
    assert sum(s["last_run"]["inserted"] for s in pulled.values()) <= counts["outbox"]
    assert doc["counts"] == counts
    assert {k["name"] for k in doc["sinks"]} == {"archive", "platform"}
    assert all(k["backlog"] == 0 for k in doc["sinks"])
    assert "transit_card:transactions" in table.stdout and f"outbox {counts['outbox']}" in table.stdout
