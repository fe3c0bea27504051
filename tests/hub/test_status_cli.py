"""``tanpuhui status``: the overview for terminals and scripts, its figures the store's (after the demo)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import orjson
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from rich.console import Console

from tanpuhui.hub.cli import main
from tanpuhui.hub.cli.pull import pull_table
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.server.openapi_components import COMPONENT_SCHEMAS
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
    # the admin API's documented shape: pull and push rows alike (a push row's newest request field by field)
    Draft202012Validator(COMPONENT_SCHEMAS["Overview"]).validate(doc)
    store = SQLiteStore(workdir / "hub.db")
    try:
        runs = {(r.adapter, r.stream): r for r in store.latest_runs()}
        counts = store.counts()
        receipts = {
            key: store.recent_receipts(*key, limit=1)[0]
            for key in [("state_grid", "demand_response"), ("yrd_scenarios", "records_push")]
        }
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
    pushed = {key: s for key, s in streams.items() if s["kind"] == "push"}
    assert set(pushed) == {("state_grid", "demand_response"), ("yrd_scenarios", "records_push")}
    for (adapter, stream), s in pushed.items():  # no runs: the newest webhook request, as its receipt answered it
        newest = orjson.loads(receipts[(adapter, stream)].body)
        assert s["last_run"] is None and s["last_request"]["items"] == newest["items"] > 0
        assert (s["last_request"]["records"], s["last_request"]["quarantined"]) == (
            newest["records"],
            newest["quarantined"],
        )
    assert table.stdout.count("received") == 2 and "record(s)" in table.stdout


PARTNER_ERROR = "partner answered 400: [/items/0/km] must be a number, see [docs] (client secret [secret])"
"""An error as a partner words it: brackets that rich would read as markup (a closing tag it cannot match)."""


def test_a_partners_error_text_is_shown_as_written_not_read_as_markup(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "hub.db")
    try:
        run = store.run_begin("transit_card", "transactions", "cron")
        store.run_end(run, "error", PARTNER_ERROR, 0.2)
    finally:
        store.close()
    config = tmp_path / "hub.toml"
    config.write_text(
        '[hub]\nstore = "hub.db"\npseudonym_keys = { env = "STATUS_TEST_KEYS" }\n'
        '[adapters.transit_card]\nbase_url = "http://127.0.0.1:9"\nclient_id = "anhui-carbon-hub"\n'
        'client_secret = { env = "STATUS_TEST_SECRET" }\n',
        encoding="utf-8",
    )
    environ = {"STATUS_TEST_KEYS": "v1:" + "A" * 43 + "=", "STATUS_TEST_SECRET": "transit-secret-0123"}
    with mock.patch.dict(os.environ, environ):
        table = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert table.exit_code == 0, table.output  # it was: MarkupError, closing tag '[/items/0/km]'
    rows = [line.split("│") for line in table.stdout.split("Sinks")[0].splitlines() if line.startswith("│")]
    outcome = " ".join(row[10].strip() for row in rows)  # the column "outcome", its wrapped lines joined
    assert outcome == f"error: {PARTNER_ERROR}", table.stdout
    pulled = Console(record=True, width=400)
    pulled.print(pull_table([PullSummary("transit_card", "transactions", error=PARTNER_ERROR)]))
    assert PARTNER_ERROR in pulled.export_text()
