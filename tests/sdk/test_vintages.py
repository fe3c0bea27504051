"""Factor vintages: each grid factor value is valid for the activities of one year, picked by the activity's date,
recorded in the record, and an activity no vintage covers is rejected (quarantined), never given another year's."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone

import pytest
from builtin_context import BY_ID, builtin_context

from tanpuhui.sdk import (
    GRID_ANHUI,
    GRID_EAST_CHINA,
    GRID_NATIONAL,
    Factor,
    Formula,
    ItemRejected,
    MethodologyError,
    NoFactorVintage,
    recompute,
    vintage_problems,
)

CST = timezone(timedelta(hours=8))
PEAK = BY_ID["tph.electricity.peak-saving"]


def _series(factors: tuple[Factor, ...]) -> dict[int, float]:
    return {f.data_year: f.value for f in factors if f.data_year is not None}


def test_the_mee_nbs_series_ship_with_their_data_years() -> None:
    assert _series(GRID_NATIONAL) == {2021: 0.5568, 2022: 0.5366, 2023: 0.5306}
    assert _series(GRID_EAST_CHINA) == {2022: 0.5617, 2023: 0.5500}
    assert _series(GRID_ANHUI) == {2022: 0.6782, 2023: 0.6553}


def test_only_the_anhui_2023_figure_is_labelled_single_source() -> None:
    labelled = [(f.source, f.data_year) for f in (*GRID_NATIONAL, *GRID_EAST_CHINA, *GRID_ANHUI) if f.single_source]
    assert [year for _, year in labelled] == [2023]
    assert "Anhui" in labelled[0][0] and "single or secondary source" in labelled[0][0]


def test_every_vintage_cites_the_announcement_and_is_valid_two_years_after_its_data_year() -> None:
    for f in (*GRID_NATIONAL, *GRID_EAST_CHINA, *GRID_ANHUI):
        assert f.source.startswith("MEE/NBS announcement"), f.source
        assert f.data_year is not None
        assert (f.valid_from, f.valid_to) == (date(f.data_year + 2, 1, 1), date(f.data_year + 2, 12, 31))


@pytest.mark.parametrize(
    "day, value, data_year",
    [
        ("2024-01-01", 0.6782, 2022),
        ("2024-11-05", 0.6782, 2022),
        ("2024-12-31", 0.6782, 2022),
        ("2025-01-01", 0.6553, 2023),
        ("2025-06-30", 0.6553, 2023),
        ("2025-12-31", 0.6553, 2023),
    ],
)
def test_the_activity_date_picks_the_vintage_and_the_record_names_it(day: str, value: float, data_year: int) -> None:
    doc = PEAK.quantification(3.1, 4.6, "household trailing 7-day peak average", on=day)
    (factor,) = doc["factors"]
    assert (factor["value"], factor["data_year"], doc["factors_as_of"]) == (value, data_year, day)
    assert factor["valid_from"] <= day <= factor["valid_to"]
    assert doc["reduction_kgco2e"] == pytest.approx(1.5 * value, abs=1e-6)


@pytest.mark.parametrize("day", ["2023-12-31", "2026-01-01", "2021-06-01"])
def test_an_activity_no_vintage_covers_is_rejected_naming_factor_date_and_vintages(day: str) -> None:
    with pytest.raises(NoFactorVintage) as caught:
        PEAK.quantification(3.1, 4.6, "household trailing 7-day peak average", on=day)
    assert isinstance(caught.value, ItemRejected)  # so the pipeline quarantines the item, the page goes on
    (problem,) = caught.value.problems
    assert problem.keyword == "factor_vintage"
    assert f"factor ef_grid (tph.electricity.peak-saving@1.1.0) covers the activity date {day}" in problem.message
    assert "data year 2022, 2024-01-01..2024-12-31: 0.6782 kgCO2/kWh" in problem.message
    assert "data year 2023, 2025-01-01..2025-12-31: 0.6553 kgCO2/kWh (single or secondary source)" in problem.message
    assert '[[methodologies."tph.electricity.peak-saving".vintages.ef_grid]]' in problem.message


def test_a_vintaged_methodology_without_the_activity_date_is_an_error() -> None:
    with pytest.raises(MethodologyError, match="ef_grid come in vintages; the activity's date is needed"):
        PEAK.quantification(3.1, 4.6)


def test_a_methodology_without_vintages_needs_no_date_and_records_none() -> None:
    water = BY_ID["tph.water.peak-saving"]  # its tap-water default has no window; without ef_grid, nothing has
    undated = dataclasses.replace(water, formula=Formula("max(baseline - activity, 0) * kwh_per_m3"))
    undated = dataclasses.replace(undated, factors=undated.factors[:1])
    doc = undated.quantification(1.2, 1.8, "trailing")
    assert "factors_as_of" not in doc
    assert "valid_from" not in doc["factors"][0]


def test_the_gas_factor_is_one_value_from_the_day_its_cited_standard_took_effect() -> None:
    gas = BY_ID["tph.gas.peak-saving"]
    doc = gas.quantification(1.2, 1.8, "trailing", on="2016-06-01")  # GB/T 32151-2015, in force 2016-06-01
    assert (doc["factors"][0]["valid_from"], "valid_to" in doc["factors"][0]) == ("2016-06-01", False)
    assert gas.quantification(1.2, 1.8, "trailing", on="2030-01-01")["reduction_kgco2e"] == doc["reduction_kgco2e"]
    with pytest.raises(NoFactorVintage):
        gas.quantification(1.2, 1.8, "trailing", on="2016-05-31")


@pytest.mark.parametrize("methodology_id", ["tph.transit.metro", "tph.transit.bus"])
def test_a_shenzhen_transit_factor_values_trips_from_the_methodologys_publication_on(methodology_id: str) -> None:
    method = BY_ID[methodology_id]
    doc = method.quantification(8.4, on="2021-12-01")  # published 2021-12 (cited by month: from its first day)
    (factor,) = doc["factors"]
    assert (factor["valid_from"], "valid_to" in factor, doc["factors_as_of"]) == ("2021-12-01", False, "2021-12-01")
    assert method.quantification(8.4, on="2031-06-30")["reduction_kgco2e"] == doc["reduction_kgco2e"]  # open-ended
    with pytest.raises(NoFactorVintage) as caught:
        method.quantification(8.4, on="2021-11-30")
    assert (caught.value.factor, caught.value.day) == ("ef_reduction", "2021-11-30")


def test_overlapping_vintages_are_refused_when_the_methodology_is_built() -> None:
    extra = Factor("ef_grid", 0.7, "kgCO2/kWh", "x", valid_from=date(2024, 6, 1), valid_to=date(2025, 5, 31))
    with pytest.raises(MethodologyError, match="vintages overlap"):
        PEAK.with_vintages([extra])


def test_a_vintage_without_a_window_beside_others_is_refused() -> None:
    undated = Factor("ef_grid", 0.6, "kgCO2/kWh", "a figure of unknown date")
    with pytest.raises(MethodologyError, match="without valid_from/valid_to"):
        dataclasses.replace(PEAK, factors=(*GRID_ANHUI, undated))


def test_a_configured_vintage_covers_a_new_year() -> None:
    vintage = Factor(
        "ef_grid", 0.6401, "kgCO2/kWh", "hub.toml: data year 2024", valid_from=date(2026, 1, 1), data_year=2024
    )
    doc = PEAK.with_vintages([vintage]).quantification(3.1, 4.6, "trailing", on="2026-03-02")
    assert (doc["factors"][0]["value"], doc["factors"][0]["data_year"]) == (0.6401, 2024)
    assert "valid_to" not in doc["factors"][0]  # open-ended


def test_an_override_replaces_the_whole_series_with_one_value_for_every_date() -> None:
    local = PEAK.with_factors({"ef_grid": 0.7}, "override in hub.toml")
    assert not local.vintaged
    doc = local.quantification(3.1, 4.6, "trailing", on="2031-01-01")
    assert doc["factors"] == [
        {"name": "ef_grid", "value": 0.7, "unit": "kgCO2/kWh", "source": "override in hub.toml", "default": False}
    ]


def _record(start: datetime) -> dict[str, object]:
    ctx = builtin_context("state_grid", "1.2.0", "readings")
    return ctx.record(
        raw={"cons_no": "3401889021", "date": start.date().isoformat()},
        partner_record_id=f"3401889021-{start.date():%Y%m%d}",
        subject=ctx.subject("account", "3401889021"),
        scenario="peak_electricity_saving",
        start=start,
        end=start + timedelta(hours=16),
        region="340104",
        activity=3.1,
        methodology="tph.electricity.peak-saving",
        baseline=4.6,
        baseline_method="household trailing 7-day peak average",
    )


def test_a_record_picks_the_vintage_of_its_local_start_day_and_recomputes_from_its_fields() -> None:
    # 2025-01-01 06:00 in Hefei is still 2024 in UTC: the partner's own day decides
    record = _record(datetime(2025, 1, 1, 6, 0, tzinfo=CST))
    q = record["quantification"]
    assert isinstance(q, dict)
    assert (q["factors_as_of"], q["factors"][0]["data_year"]) == ("2025-01-01", 2023)
    assert recompute(record) == q["reduction_kgco2e"] == pytest.approx(1.5 * 0.6553, abs=1e-6)
    assert vintage_problems(record) == []


def test_vintage_problems_catches_a_factor_outside_its_window() -> None:
    record = _record(datetime(2024, 11, 5, 6, 0, tzinfo=CST))
    q = record["quantification"]
    assert isinstance(q, dict)
    q["factors_as_of"] = "2025-02-01"
    problems = vintage_problems(record)
    assert "factors_as_of 2025-02-01 is not the day the period starts (2024-11-05)" in problems
    assert "factor ef_grid valid 2024-01-01..2024-12-31 does not cover 2025-02-01" in problems
