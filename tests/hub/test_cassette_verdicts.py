"""`tanpuhui cassettes check` names the first difference between a cassette and its fresh recording, and shows it as
written: URLs with bracketed query keys and partner keys are not read as rich markup."""

from __future__ import annotations

from pathlib import Path

import orjson
from rich.console import Console

from tanpuhui.hub.cli.cassettes import compare, verdict_table

_URL = "https://api.transit.example.cn/v2/transactions?filter[status]=settled&page[size]=500"


def _cassette(path: Path, amount: float) -> None:
    interaction = {
        "request": {"method": "GET", "url": _URL},
        "response": {"status": 200, "json": {"data": [{"card_no": "3401000012345678", "[fare]": amount}]}},
    }
    path.write_bytes(orjson.dumps({"interactions": [interaction]}))


def test_a_drifted_response_is_named_by_its_url_and_pointer_with_the_brackets_shown(tmp_path: Path) -> None:
    project = tmp_path / "adapter-project"
    (project / "cassettes").mkdir(parents=True)
    stored, fresh = project / "cassettes" / "resume.json", tmp_path / "recorded" / "resume.json"
    fresh.parent.mkdir()
    _cassette(stored, 2.0)
    _cassette(fresh, 1.8)
    manifest = {"adapter": "transit_card", "cassette": str(stored), "recorded": str(fresh)}
    (tmp_path / "recorded" / "manifest.jsonl").write_bytes(orjson.dumps(manifest) + b"\n")

    (verdict,) = compare(tmp_path / "recorded", None)
    assert verdict.state == "drift"
    assert verdict.detail == f"interaction #0 GET {_URL}: the response differs at /json/data/0/[fare]"

    console = Console(record=True, width=400, color_system=None)
    console.print(verdict_table([verdict], project))
    shown = console.export_text()
    assert "filter[status]=settled&page[size]=500" in shown  # rich markup would have eaten "[status]", "[size]"
    assert "/json/data/0/[fare]" in shown and "cassettes/resume.json" in shown
