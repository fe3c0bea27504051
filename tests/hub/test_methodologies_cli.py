"""`tanpuhui methodologies` shows each factor vintage with its data year and window, and labels what is not a
confirmed official figure (rich markup does not eat the brackets)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.cli.listings import _vintage
from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.sdk import GRID_ANHUI_2022, GRID_ANHUI_2023, NATURAL_GAS

BUILTIN_METHODOLOGIES_BY_ID = {m.id: m for m in BUILTIN_METHODOLOGIES}


def test_the_listing_shows_every_vintage_and_the_labels() -> None:
    result = CliRunner().invoke(main, ["methodologies"])
    assert result.exit_code == 0, result.output
    assert "[labelled default]" in result.output and "[data year" in result.output  # not eaten as rich markup
    assert _vintage(GRID_ANHUI_2022) == " [data year 2022, activities 2024-01-01..2024-12-31]"
    assert _vintage(GRID_ANHUI_2023) == (
        " [data year 2023, activities 2025-01-01..2025-12-31, single or secondary source]"
    )
    assert _vintage(NATURAL_GAS) == " [activities 2016-06-01..…]"  # in force since, open-ended
    (tap_water,) = [f for f in BUILTIN_METHODOLOGIES_BY_ID["tph.water.peak-saving"].factors if f.name == "kwh_per_m3"]
    assert _vintage(tap_water) == ""  # a labelled default citing no dated source: no window


def test_the_json_listing_carries_validity_and_data_year() -> None:
    result = CliRunner().invoke(main, ["methodologies", "--json"])
    assert result.exit_code == 0, result.output
    (peak,) = [m for m in json.loads(result.output)["methodologies"] if m["id"] == "tph.electricity.peak-saving"]
    years = {(f["data_year"], f["valid_from"], f["valid_to"]) for f in peak["factors"]}
    assert years == {(2022, "2024-01-01", "2024-12-31"), (2023, "2025-01-01", "2025-12-31")}
