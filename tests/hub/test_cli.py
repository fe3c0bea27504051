"""The command line as an operator and an integrator use it: exit codes, JSON pointers, no stack traces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
from cli_kit import WHSEC, invoke, transit_config

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.schemas import load_builtin
from tanpuhui.testing.loopback import free_port

TRIP = load_builtin("transit-card-trip")["examples"][2]
"""A bus tap in Hefei: the trip schema's own example."""


def test_validate_accepts_a_valid_document_with_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "trip.json"
    path.write_bytes(orjson.dumps(TRIP))
    code, _, err = invoke("validate", str(path), "--schema", "transit-card-trip")
    assert code == 0
    assert "1 document(s) checked against transit-card-trip" in err


def test_validate_reports_json_lines_errors_by_line_and_pointer_with_exit_1(tmp_path: Path) -> None:
    bad = {**TRIP, "deal_time": "2024-11-05 12:15:00", "region": "34010"}
    path = tmp_path / "trips.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (TRIP, bad, TRIP)) + "\n{not json\n")
    code, out, _ = invoke("validate", str(path), "--schema", "transit-card-trip")
    assert code == 1
    assert f"{path}:2 /deal_time: " in out and '"2024-11-05 12:15:00" is not a "date-time"' in out
    assert f"{path}:2 /region: " in out
    assert f"{path}:4 /: line 4 is not JSON" in out


def test_validate_reads_a_json_array_from_stdin_and_reports_json(tmp_path: Path) -> None:
    doc = orjson.dumps([TRIP, {**TRIP, "card_no": None}])
    code, out, _ = invoke("validate", "-", "--schema", "transit-card-trip", "--format", "json", input=doc)
    assert code == 1
    report = json.loads(out)
    assert (report["documents"], report["invalid"]) == (2, 1)
    assert report["results"][1]["errors"][0]["pointer"] == "/card_no"


def test_validate_with_an_unknown_schema_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    code, _, err = invoke("validate", str(path), "--schema", "transit-card-trips")
    assert code == 2
    assert "unknown schema 'transit-card-trips'" in err and "Traceback" not in err


def test_a_literal_secret_in_the_config_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[adapters.transit_card]\nbase_url = "https://x.example"\nclient_secret = "hunter2"\n')
    code, _, err = invoke("pull", "transit_card", "--config", str(config))
    assert code == 2
    assert f"{config}: adapters.transit_card.client_secret holds a literal secret" in err
    assert "hunter2" not in err


def test_pull_quarantine_forward_and_dead_letter_replay(tmp_path: Path, sandbox: TransitSandbox) -> None:
    port = free_port()
    config, env = transit_config(tmp_path, sandbox, f"http://127.0.0.1:{port}/events")

    code, out, _ = invoke("pull", "transit_card", "--config", str(config), env=env)
    assert code == 0, out
    expected = sandbox.dataset.expected()
    assert str(expected["records"]) in out

    code, out, _ = invoke("quarantine", "list", "--config", str(config), env=env)
    assert code == 0 and "transit_card:transactions" in out
    shown = [invoke("quarantine", "show", str(i), "--config", str(config), env=env)[1] for i in range(1, 8)]
    items = [orjson.loads(text[text.index("{") :]) for text in shown if "{" in text]
    with_card = [item for item in items if "card_no" in item]
    assert with_card, "some quarantined trips carry a card number"
    assert all(re.fullmatch(r"\d{2}\*+\d{2}", item["card_no"]) for item in with_card)

    # The consumer is down: the JSONL sink delivers, the HTTP sink dead-letters (attempts = 1, give_up_after = 0).
    code, out, _ = invoke("forward", "--config", str(config), env=env)
    assert code == 1
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert len(lines) == expected["records"]
    code, out, _ = invoke("dead-letters", "list", "--config", str(config), env=env)
    assert code == 0 and "platform" in out

    with ConsumerServer(WHSEC, port=port) as consumer:
        code, out, _ = invoke("dead-letters", "replay", "--all", "--config", str(config), env=env)
        assert code == 0, out
        assert consumer.stats()["unique"] == expected["records"]
    code, out, _ = invoke("forward", "--config", str(config), env=env)
    assert code == 0
    assert len((tmp_path / "out" / "records.jsonl").read_text().splitlines()) == expected["records"]


def test_a_pull_skipped_for_a_lease_held_elsewhere_exits_75_and_wait_takes_it_over(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    """A crashed pull leaves its lease until [hub] lease_ttl: the next cron run must not report success."""
    from tanpuhui.hub.config import load_config
    from tanpuhui.hub.store.factory import open_store

    config, env = transit_config(tmp_path, sandbox, "http://127.0.0.1:9/events")
    store = open_store(load_config(config, environ=env))
    assert store.acquire_lease("transit_card", "transactions", "crashed-pull", 1.5)
    code, out, _ = invoke("pull", "transit_card", "--config", str(config), env=env)
    assert code == 75, out
    assert "another process holds its lease" in out
    code, out, _ = invoke("pull", "transit_card", "--config", str(config), "--wait", "30", env=env)
    assert code == 0, out  # the crashed pull's lease ran out after 1.5 s; this run took it and pulled
    assert str(sandbox.dataset.expected()["records"]) in out
    store.close()
