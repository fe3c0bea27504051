"""Methodologies: a safe formula language, the built-in figures of docs/methodologies.md, and recomputation from
records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from builtin_context import BY_ID, builtin_context

from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.sdk import Factor, Formula, Methodology, MethodologyError, recompute

CST = timezone(timedelta(hours=8))


# -- the formula language ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "activity.__class__",
        "__import__('os').system('id')",
        "import os",
        "(lambda: 1)()",
        "abs(activity)",
        "pow(activity, 2)",
        "eval('1')",
        "'kg' * 3",
        "activity ** 2",
        "activity if baseline else 0",
        "activity > baseline",
        "[activity][0]",
        "max(activity, default=0)",
        "max(*factors)",
        "max(activity)",
        "max",
        "activity +",
    ],
    ids=[
        "attribute access",
        "import call",
        "import statement",
        "lambda",
        "abs",
        "pow",
        "eval",
        "string constant",
        "power",
        "conditional",
        "comparison",
        "subscript",
        "keyword argument",
        "starred argument",
        "max of one argument",
        "bare max",
        "syntax error",
    ],
)
def test_formula_outside_plain_arithmetic_is_rejected(text: str) -> None:
    with pytest.raises(MethodologyError):
        Formula(text)


def test_formula_collects_the_names_it_uses() -> None:
    assert Formula("max(baseline - activity, 0) * kwh_per_m3 * ef_grid").names == {
        "baseline",
        "activity",
        "kwh_per_m3",
        "ef_grid",
    }


def test_formula_evaluates_arithmetic_with_min_and_max() -> None:
    assert Formula("min(max(baseline - activity, 0), 2) * ef / 2").evaluate(
        {"baseline": 4.6, "activity": 3.1, "ef": 0.6782}
    ) == pytest.approx(1.5 * 0.6782 / 2)


def test_formula_names_a_missing_variable() -> None:
    with pytest.raises(MethodologyError, match="needs ef_grid"):
        Formula("activity * ef_grid").evaluate({"activity": 12.6})


def test_division_by_zero_is_a_methodology_error() -> None:
    with pytest.raises(MethodologyError, match="divided by zero"):
        Formula("activity / kwh_per_m3").evaluate({"activity": 1.0, "kwh_per_m3": 0.0})


@pytest.mark.parametrize(
    "formula, factor, unknown",
    [
        ("activity * (ef_car - ef_bike)", Factor("ef_bike", 0.0, "kgCO2e/km", "human powered"), "ef_car"),
        ("(activity - baseline) * ef_grid", Factor("ef_grid", 0.6782, "kgCO2/kWh", "MEE/NBS 2022 Anhui"), "baseline"),
    ],
    ids=["a factor it does not have", "the baseline of a method without one"],
)
def test_methodology_formula_may_use_only_its_factors_and_activity(formula: str, factor: Factor, unknown: str) -> None:
    with pytest.raises(MethodologyError, match=f"formula uses {unknown}, which are not factors"):
        Methodology(
            id="hf.test",
            version="1.0.0",
            scenario="shared_bike",
            title="Test method",
            formula=Formula(formula),
            factors=(factor,),
            activity_unit="km",
        )


# -- the built-in methodologies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "methodology_id, activity, baseline, expected",
    [
        ("tph.transit.metro", 8.4, None, 8.4 * 0.0467),
        ("tph.transit.bus", 12.5, None, 12.5 * 0.0269),
        ("tph.electricity.peak-saving", 3.1, 4.6, (4.6 - 3.1) * 0.6782),
        ("tph.water.peak-saving", 0.2, 0.35, (0.35 - 0.2) * 0.30 * 0.6782),
        ("tph.gas.peak-saving", 1.2, 1.8, (1.8 - 1.2) * 2.1622),
        ("tph.pv.rooftop", 12.6, None, 12.6 * 0.6782),
    ],
    ids=[
        "8.4 pkm Hefei metro",
        "12.5 pkm bus",
        "1.5 kWh below peak baseline",
        "0.15 m3 water below baseline",
        "0.6 m3 gas below baseline",
        "12.6 kWh rooftop PV",
    ],
)
def test_builtin_methodology_quantifies_to_the_hand_computed_value(
    methodology_id: str, activity: float, baseline: float | None, expected: float
) -> None:
    quantified = BY_ID[methodology_id].quantify(
        activity, baseline, "household trailing 7-day peak average", on="2024-07-15"
    )
    assert quantified.reduction_kgco2e == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "methodology_id", ["tph.electricity.peak-saving", "tph.water.peak-saving", "tph.gas.peak-saving"]
)
def test_peak_saving_above_the_baseline_earns_nothing(methodology_id: str) -> None:
    assert BY_ID[methodology_id].quantify(5.2, 4.6, on="2024-07-15").reduction_kgco2e == 0.0


@pytest.mark.parametrize(
    "methodology_id", ["tph.electricity.peak-saving", "tph.water.peak-saving", "tph.gas.peak-saving"]
)
def test_peak_saving_at_the_baseline_earns_nothing(methodology_id: str) -> None:
    assert BY_ID[methodology_id].quantify(4.6, 4.6, on="2024-07-15").reduction_kgco2e == 0.0


def test_peak_saving_without_a_baseline_is_an_error() -> None:
    with pytest.raises(MethodologyError, match="needs a baseline"):
        BY_ID["tph.electricity.peak-saving"].quantify(3.1, on="2024-07-15")


def test_quantification_records_the_baseline_and_its_method() -> None:
    gas = BY_ID["tph.gas.peak-saving"]
    record = gas.quantify(1.2, 1.8, "household trailing 7-day peak average", on="2024-11-05").as_record()
    assert record["baseline"] == {"quantity": 1.8, "unit": "m3", "method": "household trailing 7-day peak average"}


def test_quantification_records_methodology_formula_and_factors() -> None:
    record = BY_ID["tph.transit.metro"].quantify(8.4, on="2024-11-05").as_record()
    assert record["methodology_id"] == "tph.transit.metro"
    assert record["methodology_version"] == "1.0.0"
    assert record["formula"] == "activity * ef_reduction"
    assert [(f["name"], f["valid_from"]) for f in record["factors"]] == [("ef_reduction", "2021-12-01")]
    assert record["factors_as_of"] == "2024-11-05"
    assert "baseline" not in record


@pytest.mark.parametrize(
    "methodology_id, activity, baseline",
    [
        ("tph.transit.metro", 8.4, None),
        ("tph.transit.bus", 12.5, None),
        ("tph.electricity.peak-saving", 3.1, 4.6),
        ("tph.water.peak-saving", 0.2, 0.35),
        ("tph.gas.peak-saving", 1.2, 1.8),
        ("tph.pv.rooftop", 12.6, None),
    ],
)
def test_recompute_gives_back_the_reduction_of_a_record(
    methodology_id: str, activity: float, baseline: float | None
) -> None:
    ctx = builtin_context("state_grid", "1.2.0", "daily_readings")
    method = BY_ID[methodology_id]
    record = ctx.record(
        raw={"cons_no": "3401889021", "date": "2024-07-15", "value": activity},
        partner_record_id=f"3401889021-20240715-{methodology_id}",
        subject=ctx.subject("account", "3401889021"),
        scenario=method.scenario,
        start=datetime(2024, 7, 15, 6, 0, tzinfo=CST),
        end=datetime(2024, 7, 15, 22, 0, tzinfo=CST),
        region="340104",
        activity=activity,
        methodology=methodology_id,
        baseline=baseline,
        baseline_method="household trailing 7-day peak average" if baseline is not None else "",
    )
    assert record["quantification"]["reduction_kgco2e"] > 0
    assert recompute(record) == record["quantification"]["reduction_kgco2e"]


def test_recompute_uses_the_factors_in_the_record_not_todays() -> None:
    record = {
        "activity": {"quantity": 8.4, "unit": "pkm"},
        "quantification": {
            "formula": "activity * ef_reduction",
            "factors": [
                {"name": "ef_reduction", "value": 0.0512, "unit": "kgCO2e/pkm", "source": "x", "default": False}
            ],
        },
    }
    assert recompute(record) == pytest.approx(8.4 * 0.0512)


def test_with_factors_changes_the_value_and_the_cited_source() -> None:
    water = BY_ID["tph.water.peak-saving"]
    source = "Hefei Water Supply Group 2023 annual report: 0.42 kWh/m3"
    local = water.with_factors({"kwh_per_m3": 0.42}, source)
    factor = local.factor("kwh_per_m3")
    assert (factor.value, factor.source, factor.default) == (0.42, source, False)
    assert local.quantify(0.2, 0.35, on="2024-07-15").reduction_kgco2e == pytest.approx(0.15 * 0.42 * 0.6782, abs=1e-6)
    assert local.factors_record[0]["source"] == source


def test_with_factors_leaves_the_builtin_untouched() -> None:
    water = BY_ID["tph.water.peak-saving"]
    water.with_factors({"kwh_per_m3": 0.42}, "hub.toml")
    assert water.factor("kwh_per_m3").value == 0.30
    assert water.quantify(0.2, 0.35, on="2024-07-15").reduction_kgco2e == pytest.approx(0.15 * 0.30 * 0.6782, abs=1e-6)


def test_with_factors_rejects_an_unknown_factor() -> None:
    with pytest.raises(MethodologyError, match="kwh_per_ton"):
        BY_ID["tph.water.peak-saving"].with_factors({"kwh_per_ton": 0.42}, "hub.toml")


@pytest.mark.parametrize("methodology", BUILTIN_METHODOLOGIES, ids=lambda m: m.key)
def test_every_builtin_factor_cites_a_source(methodology: Methodology) -> None:
    for factor in methodology.factors:
        assert factor.source.strip(), f"{methodology.key}: {factor.name} has no source"
        assert factor.unit.strip()


@pytest.mark.parametrize(
    "methodology_id, factor, default",
    [
        ("tph.transit.metro", "ef_reduction", True),
        ("tph.transit.bus", "ef_reduction", True),
        ("tph.water.peak-saving", "kwh_per_m3", True),
        ("tph.water.peak-saving", "ef_grid", False),
        ("tph.electricity.peak-saving", "ef_grid", False),
        ("tph.gas.peak-saving", "ef_gas", False),
        ("tph.pv.rooftop", "ef_grid", False),
    ],
)
def test_factors_without_an_official_figure_are_labelled_defaults(
    methodology_id: str, factor: str, default: bool
) -> None:
    assert BY_ID[methodology_id].factor(factor).default is default


def test_anhui_grid_factor_is_the_2022_official_figure() -> None:
    grid = BY_ID["tph.electricity.peak-saving"].factor("ef_grid", on="2024-11-05")
    assert (grid.value, grid.unit, grid.data_year) == (0.6782, "kgCO2/kWh", 2022)
    assert "Anhui" in grid.source


def test_unknown_factor_name_is_a_methodology_error() -> None:
    with pytest.raises(MethodologyError, match="no factor 'ef_car'"):
        BY_ID["tph.transit.metro"].factor("ef_car")
