"""Every record the demo forwards stands as evidence: it recomputes from its own fields, the factor vintages it
applied cover its date, derived values are labelled, each scenario has one unit of activity (or one origin
`record`), and no partner string carries an identifier in clear."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.sdk import recompute, vintage_problems
from tanpuhui.testing.scrub import identifiers_in


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_every_demo_record_recomputes_names_its_vintages_and_labels_what_is_derived(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    run = CliRunner().invoke(main, ["demo", "--trips", "600", "--workdir", str(workdir)])
    assert run.exit_code == 0, run.output
    records = [json.loads(line) for line in (workdir / "records.jsonl").open(encoding="utf-8")]
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
