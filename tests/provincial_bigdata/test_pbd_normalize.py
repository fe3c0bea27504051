"""normalize() of each dataset: what is credited, with which methodology, baseline and subject."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tanpuhui.adapters.provincial_bigdata.adapter import ProvincialBigDataAdapter
from tanpuhui.sdk import ItemRejected, PullStream, StreamContext, recompute

from .conftest import RECORD, make_adapter, make_ctx

RESIDENT_ID = "34052419800101001X"
MOBILE = "13955123456"


def appliance(**overrides: Any) -> dict[str, Any]:
    item = {
        "orderId": "GA20241105000017",
        "buyerIdNo": RESIDENT_ID,
        "category": "air_conditioner",
        "energyGrade": 1,
        "energyStandard": "GB 21455-2019",
        "quantity": 1,
        "purchaseTime": "2024-11-05T14:32:10+08:00",
        "regionCode": "340100",
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not None}


def reading(day: int, m3: float, account: str = "W340100000017", **overrides: Any) -> dict[str, Any]:
    item = {
        "recordId": f"WU202411{day:02d}{account[-6:]}",
        "accountNo": account,
        "usageDate": f"2024-11-{day:02d}",
        "peakWindow": "06:30-08:30,18:00-21:00",
        "peakUsageM3": m3,
        "regionCode": "340100",
    }
    item.update(overrides)
    return item


def generation(kwh: float, capacity: float = 6.0) -> dict[str, Any]:
    return {
        "genId": "PVG20241105000017",
        "consNo": "3400000017",
        "installationId": "AHPV-340100-00017",
        "capacityKw": capacity,
        "genDate": "2024-11-05",
        "generationKwh": kwh,
        "regionCode": "340100",
    }


def normalize(
    adapter: ProvincialBigDataAdapter, stream: str, item: dict[str, Any], ctx: StreamContext
) -> list[dict[str, Any]]:
    target = adapter.stream(stream)
    assert isinstance(target, PullStream)
    out = [dict(r) for r in target.normalize(item, ctx)]
    for record in out:
        assert not list(RECORD.iter_errors(record)), record
    return out


def test_a_grade_one_air_conditioner_is_credited_its_first_year_saving() -> None:
    (record,) = normalize(make_adapter(), "green_appliances", appliance(), make_ctx("green_appliances"))
    q = record["quantification"]
    assert q["methodology_id"] == "tph.appliance.green.air-conditioner"
    assert q["formula"] == "activity * kwh_saved_per_unit * ef_grid"
    assert q["reduction_kgco2e"] == pytest.approx(180 * 0.6782)
    assert record["scenario"] == "green_appliance"
    assert record["activity"] == {
        "quantity": 1.0,
        "unit": "unit",
        "details": {"category": "air_conditioner", "energy_grade": 1, "energy_standard": "GB 21455-2019"},
    }
    assert recompute(record) == q["reduction_kgco2e"]


def test_the_factor_is_labelled_as_a_default_and_the_grid_factor_is_not() -> None:
    (record,) = normalize(make_adapter(), "green_appliances", appliance(), make_ctx("green_appliances"))
    factors = {f["name"]: f for f in record["quantification"]["factors"]}
    assert factors["kwh_saved_per_unit"]["default"] is True
    assert "labelled default" in factors["kwh_saved_per_unit"]["source"]
    assert factors["ef_grid"] == {
        "name": "ef_grid",
        "value": 0.6782,
        "unit": "kgCO2/kWh",
        "source": "MEE/NBS announcement (2024-12): 2022 electricity CO2 emission factor, Anhui province, location-based",
        "default": False,
        "valid_from": "2024-01-01",
        "valid_to": "2024-12-31",
        "data_year": 2022,
    }


def test_two_units_on_one_line_are_credited_twice() -> None:
    (record,) = normalize(
        make_adapter(), "green_appliances", appliance(category="refrigerator", quantity=2), make_ctx("green_appliances")
    )
    assert record["quantification"]["methodology_id"] == "tph.appliance.green.refrigerator"
    assert record["quantification"]["reduction_kgco2e"] == pytest.approx(2 * 110 * 0.6782)


def test_grades_that_are_not_credited_give_no_record() -> None:
    assert normalize(make_adapter(), "green_appliances", appliance(energyGrade=2), make_ctx("green_appliances")) == []


def test_credited_grades_are_configurable() -> None:
    adapter = make_adapter(credited_grades=[1, 2])
    assert len(normalize(adapter, "green_appliances", appliance(energyGrade=2), make_ctx("green_appliances"))) == 1


def test_the_buyer_is_credited_by_resident_id_when_both_are_sent() -> None:
    ctx = make_ctx("green_appliances")
    (both,) = normalize(make_adapter(), "green_appliances", appliance(buyerMobile=MOBILE), ctx)
    (by_id,) = normalize(make_adapter(), "green_appliances", appliance(), ctx)
    assert both["subject"] == by_id["subject"] == ctx.subject("resident_id", RESIDENT_ID)


def test_a_buyer_known_only_by_mobile_is_credited_by_mobile() -> None:
    ctx = make_ctx("green_appliances")
    (record,) = normalize(
        make_adapter(), "green_appliances", appliance(buyerIdNo=None, buyerMobile="+86 139-5512-3456"), ctx
    )
    assert record["subject"] == ctx.subject("mobile", MOBILE)
    assert MOBILE not in orjson.dumps(record).decode()


def test_a_resident_id_with_a_wrong_check_character_is_rejected_masked() -> None:
    with pytest.raises(ItemRejected) as caught:
        normalize(
            make_adapter(), "green_appliances", appliance(buyerIdNo="340524198001010019"), make_ctx("green_appliances")
        )
    (problem,) = caught.value.problems
    assert problem.pointer == "/buyerIdNo"
    assert "340524********0019" in problem.message and "340524198001010019" not in problem.message


def test_a_reading_with_the_utilitys_baseline_is_credited_against_it() -> None:
    ctx = make_ctx("gas_usage")
    item = reading(5, 0.386, "G340100000017", baselineM3=0.452, baselineMethod="utility: same month last year")
    (record,) = normalize(make_adapter(), "gas_usage", item, ctx)
    q = record["quantification"]
    assert q["methodology_id"] == "tph.gas.peak-saving"
    assert q["baseline"] == {"quantity": 0.452, "unit": "m3", "method": "partner: utility: same month last year"}
    assert q["reduction_kgco2e"] == round((0.452 - 0.386) * 2.1622, 6)  # methodologies round to 6 places
    assert record["scenario"] == "peak_gas_saving"
    assert record["period"] == {"start": "2024-11-05T00:00:00+08:00", "end": "2024-11-06T00:00:00+08:00"}


def test_a_reading_at_or_above_its_baseline_gives_no_record() -> None:
    item = reading(5, 0.5, "G340100000017", baselineM3=0.452)
    assert normalize(make_adapter(), "gas_usage", item, make_ctx("gas_usage")) == []


def test_without_a_sent_baseline_the_first_days_only_build_the_households_own() -> None:
    adapter, ctx = make_adapter(), make_ctx("water_usage")
    for day, m3 in ((1, 0.150), (2, 0.170), (3, 0.160)):
        assert normalize(adapter, "water_usage", reading(day, m3), ctx) == []
    (record,) = normalize(adapter, "water_usage", reading(4, 0.120), ctx)
    baseline = record["quantification"]["baseline"]
    assert baseline["quantity"] == pytest.approx(0.160)
    assert baseline["method"] == "trailing mean of the household's peak usage on 3 of the previous 7 days"
    assert record["quantification"]["reduction_kgco2e"] == round((0.160 - 0.120) * 0.30 * 0.6782, 6)
    assert record["quantification"]["methodology_id"] == "tph.water.peak-saving"


def test_the_trailing_baseline_only_looks_back_the_configured_days() -> None:
    adapter, ctx = make_adapter(baseline_days=3, baseline_min_days=2), make_ctx("water_usage")
    for day, m3 in ((1, 0.900), (2, 0.100), (3, 0.120), (4, 0.110)):
        normalize(adapter, "water_usage", reading(day, m3), ctx)
    (record,) = normalize(adapter, "water_usage", reading(5, 0.100), ctx)
    assert record["quantification"]["baseline"]["quantity"] == pytest.approx(0.110)  # day 1 is out of the window


def test_households_keep_separate_baselines() -> None:
    adapter, ctx = make_adapter(baseline_min_days=1), make_ctx("water_usage")
    normalize(adapter, "water_usage", reading(1, 0.300, "W340100000001"), ctx)
    normalize(adapter, "water_usage", reading(1, 0.100, "W340100000002"), ctx)
    (record,) = normalize(adapter, "water_usage", reading(2, 0.250, "W340100000001"), ctx)
    assert record["quantification"]["baseline"]["quantity"] == pytest.approx(0.300)
    assert normalize(adapter, "water_usage", reading(2, 0.250, "W340100000002"), ctx) == []


def test_a_second_reading_for_the_same_account_and_day_is_rejected() -> None:
    adapter, ctx = make_adapter(), make_ctx("water_usage")
    normalize(adapter, "water_usage", reading(1, 0.150), ctx)
    with pytest.raises(ItemRejected) as caught:
        normalize(adapter, "water_usage", reading(1, 0.050, recordId="WU20241101000017-R"), ctx)
    assert caught.value.problems[0].pointer == "/usageDate"
    assert "already counted" in caught.value.problems[0].message


def test_a_reading_older_than_the_remembered_window_is_rejected() -> None:
    adapter, ctx = make_adapter(baseline_days=3, baseline_min_days=1), make_ctx("water_usage")
    normalize(adapter, "water_usage", reading(10, 0.150), ctx)
    with pytest.raises(ItemRejected, match="too late"):
        normalize(adapter, "water_usage", reading(6, 0.050), ctx)


def test_the_state_holds_pseudonyms_not_account_numbers() -> None:
    adapter, ctx = make_adapter(), make_ctx("water_usage")
    normalize(adapter, "water_usage", reading(1, 0.150), ctx)
    text = orjson.dumps(ctx.state).decode()
    assert "W340100000017" not in text
    assert list(ctx.state["households"]) == [ctx.pseudonym("account", "W340100000017")]


def test_the_final_flush_forgets_households_silent_for_a_whole_window() -> None:
    adapter, ctx = make_adapter(), make_ctx("water_usage")
    normalize(adapter, "water_usage", reading(1, 0.150, "W340100000001"), ctx)
    normalize(adapter, "water_usage", reading(20, 0.150, "W340100000002"), ctx)
    stream = adapter.stream("water_usage")
    assert list(stream.flush(ctx, final=False)) == [] and len(ctx.state["households"]) == 2
    list(stream.flush(ctx, final=True))
    assert list(ctx.state["households"]) == [ctx.pseudonym("account", "W340100000002")]


def test_pv_generation_is_credited_as_displaced_grid_electricity() -> None:
    ctx = make_ctx("rooftop_pv")
    (record,) = normalize(make_adapter(), "rooftop_pv", generation(17.82), ctx)
    assert record["quantification"]["methodology_id"] == "tph.pv.rooftop"
    assert record["quantification"]["reduction_kgco2e"] == pytest.approx(17.82 * 0.6782)
    assert record["activity"]["unit"] == "kWh"
    assert record["subject"] == ctx.subject("account", "3400000017")
    # the installation id identifies one household's system: only its keyed pseudonym goes downstream
    installation = ctx.pseudonym("reference", "AHPV-340100-00017")
    assert record["activity"]["details"] == {"capacity_kw": 6.0, "installation": installation}


def test_pv_days_beyond_the_full_load_hours_ceiling_are_rejected() -> None:
    with pytest.raises(ItemRejected) as caught:
        normalize(make_adapter(), "rooftop_pv", generation(84.0, capacity=6.0), make_ctx("rooftop_pv"))
    assert caught.value.problems[0].pointer == "/generationKwh"
    assert "14.0 full-load hours" in caught.value.problems[0].message
    assert (
        len(normalize(make_adapter(pv_max_full_load_hours=15), "rooftop_pv", generation(84.0), make_ctx("rooftop_pv")))
        == 1
    )


def test_methodologies_are_configurable_per_dataset() -> None:
    ctx = make_ctx("rooftop_pv")
    with pytest.raises(KeyError):
        normalize(make_adapter(pv_methodology="city.pv.v2"), "rooftop_pv", generation(10.0), ctx)


def test_an_identifier_in_the_partners_baseline_method_is_masked_in_the_record() -> None:
    adapter, ctx = make_adapter(), make_ctx("water_usage")
    item = reading(
        5,
        0.120,
        baselineM3=0.160,
        baselineMethod="agreed by phone with 13800138000 (resident 34052419800101001X)",
    )
    (record,) = normalize(adapter, "water_usage", item, ctx)
    method = record["quantification"]["baseline"]["method"]
    assert method == "partner: agreed by phone with 138****8000 (resident 340524********001X)"
    assert "13800138000" not in orjson.dumps(record).decode()
