"""Every record the demo forwards stands as evidence: it recomputes from its own fields, the factor vintages it
applied cover its date, derived values are labelled, each scenario has one unit of activity (or one origin
`record`), and no partner string carries an identifier in clear. And `tanpuhui report` over the demo's store equals
what a consumer of the forwarded records holds, for every adapter, scenario and region of the demo."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.reconcile import parse_period, period_of, statement_totals
from tanpuhui.sdk import recompute, vintage_problems
from tanpuhui.testing.scrub import identifiers_in


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of one demo run (its config, store, sandbox environment and forwarded records)."""
    workdir = tmp_path_factory.mktemp("demo") / "demo"
    run = CliRunner().invoke(main, ["demo", "--trips", "600", "--workdir", str(workdir)])
    assert run.exit_code == 0, run.output
    return workdir


def _forwarded(workdir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (workdir / "records.jsonl").open(encoding="utf-8")]


def test_every_demo_record_recomputes_names_its_vintages_and_labels_what_is_derived(demo: Path) -> None:
    records = _forwarded(demo)
    voids = [r for r in records if "voids" in r]  # a void names the record it voids; it quantifies nothing
    assert all(not identifiers_in(s) for v in voids for s in _strings(v))
    records = [r for r in records if "voids" not in r]
    assert len(records) > 1000
    units: dict[str, set[str]] = defaultdict(set)
    vintaged = 0
    for r in records:
        q = r["quantification"]
        assert recompute(r) == q["reduction_kgco2e"], r["record_id"]
        assert vintage_problems(r) == [], r["record_id"]
        vintaged += "factors_as_of" in q
        for f in q["factors"]:
            if f["name"].startswith("origin_"):  # an origin platform's figure, never shown as a cited factor
                assert f.get("derived") is True and f["source"].startswith("derived, not a cited factor"), f
        units[r["scenario"]].add(r["activity"]["unit"])
        assert "consent_id" not in r["activity"].get("details", {})
        shaped = [s for s in _strings(r) if identifiers_in(s)]
        assert not shaped, (r["record_id"], shaped)
    assert vintaged > 100  # the grid-factor scenarios carry their vintage
    for scenario, seen in units.items():
        assert len(seen - {"record"}) == 1, (scenario, seen)


def _held(forwarded: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a consumer holds after applying the forwarded records in order: a correction replaces the record it
    supersedes, a void removes the record it names."""
    current: dict[str, dict[str, Any]] = {}
    for r in forwarded:
        if "voids" in r:
            current.pop(r["voids"], None)
            continue
        if r.get("supersedes"):
            current.pop(r["supersedes"], None)
        current[r["record_id"]] = r
    return current


def test_the_statement_of_each_month_equals_what_the_consumer_holds_for_every_adapter(demo: Path) -> None:
    forwarded = _forwarded(demo)
    assert any("voids" in r for r in forwarded) and any(r.get("supersedes") for r in forwarded)
    held = _held(forwarded)
    env = dict(line.split("=", 1) for line in (demo / "sandbox.env").read_text().splitlines() if "=" in line)
    adapters_seen: set[str] = set()
    for month in ("2024-11", "2024-12"):
        result = CliRunner().invoke(
            main, ["report", "--config", str(demo / "hub.toml"), "--period", month, "--json"], env=env
        )
        assert result.exit_code == 0, result.output
        statement = json.loads(result.stdout)
        p = parse_period(month)
        expected = statement_totals(
            [(r["source"]["adapter"], r) for r in held.values() if (d := period_of(r, p.tz)) and p.contains(d)]
        )
        for key in ("totals", "by_adapter", "by_scenario", "by_region", "rows", "records_sha256"):
            assert statement[key] == expected[key], (month, key)
        adapters_seen |= {row["adapter"] for row in statement["rows"]}
    assert adapters_seen == {"provincial_bigdata", "state_grid", "transit_card", "yrd_scenarios"}
