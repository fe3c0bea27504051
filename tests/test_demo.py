"""`tanpuhui demo`: the main job on embedded defaults, end to end and idempotent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from tanpuhui.hub.cli import main


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8")) if path.exists() else 0


def test_demo_pulls_all_four_partners_and_forwards_each_record_once(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    first = CliRunner().invoke(main, ["demo", "--trips", "400", "--workdir", str(workdir)])
    assert first.exit_code == 0, first.output
    for stream in (
        "transit_card:transactions",
        "state_grid:readings",
        "yrd_scenarios:records",
        "provincial_bigdata:water_usage",
        "state_grid:demand_response (push)",
    ):
        assert stream in first.output
    with sqlite3.connect(workdir / "hub.db") as db:
        stored = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        adapters = {row[0] for row in db.execute("SELECT DISTINCT adapter FROM outbox")}
    assert adapters == {"transit_card", "state_grid", "yrd_scenarios", "provincial_bigdata"}
    assert stored > 1000
    assert _lines(workdir / "records.jsonl") == stored
    assert _lines(workdir / "consumer.jsonl") == stored

    again = CliRunner().invoke(main, ["demo", "--trips", "400", "--workdir", str(workdir), "--from-start"])
    assert again.exit_code == 0, again.output
    assert _lines(workdir / "records.jsonl") == stored
    assert _lines(workdir / "consumer.jsonl") == stored
    with sqlite3.connect(workdir / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == stored


def test_demo_writes_a_config_whose_secrets_are_environment_references(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--trips", "200", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    text = (workdir / "hub.toml").read_text()
    key = (workdir / "sandbox-pseudonym.key").read_text().strip()
    assert key.split(":", 1)[1] not in text
    assert 'client_secret = { env = "DEMO_TRANSIT_CLIENT_SECRET" }' in text
