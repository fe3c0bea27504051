"""Normalizing YRD records: mutual recognition, re-quantification, quarantine reasons, withdrawn records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tanpuhui.adapters.yrd_scenarios import RecordsPushStream, RecordsStream, YrdScenariosAdapter
from tanpuhui.adapters.yrd_scenarios.recognition import recognised_quantification
from tanpuhui.sdk import ItemRejected, StreamContext, recompute

from .conftest import (
    METHODOLOGIES,
    MOBILE,
    REDUCTION,
    RESIDENT_ID,
    jiangsu_metro,
    make_ctx,
    make_settings,
    metro_record,
)


def normalize(adapter: YrdScenariosAdapter, item: dict[str, Any], ctx: StreamContext) -> list[dict[str, Any]]:
    stream = adapter.stream("records")
    assert isinstance(stream, RecordsStream)
    return [dict(r) for r in stream.normalize(item, ctx)]


def rejected(adapter: YrdScenariosAdapter, item: dict[str, Any], ctx: StreamContext) -> list[tuple[str, str]]:
    with pytest.raises(ItemRejected) as caught:
        normalize(adapter, item, ctx)
    return [(p.pointer, p.message) for p in caught.value.problems]


# -- recognised -------------------------------------------------------------------------------------------------


def test_recognised_record_keeps_the_origin_figure_under_our_methodology(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, metro_record(), ctx)
    q = record["quantification"]
    assert (q["methodology_id"], q["methodology_version"]) == ("tph.transit.metro", "1.0.0")
    assert q["reduction_kgco2e"] == 0.7006
    assert q["formula"] == "activity * origin_factor"
    (factor,) = q["factors"]
    assert factor["name"] == "origin_factor" and factor["unit"] == "kgCO2e/pkm"
    assert factor["value"] == pytest.approx(0.7006 / 12.6)
    assert factor["source"] == (
        "derived, not a cited factor: the reduction / the activity reported by origin platform shanghai "
        "(methodology SHCER-RAIL-2024 v1.0), recognised as tph.transit.metro@1.0.0"
    )
    assert factor["derived"] is True
    # one unit per scenario: the origin's km of one resident's trip are our pkm, as the transit card's metro trips
    assert record["activity"]["quantity"] == 12.6 and record["activity"]["unit"] == "pkm"
    assert record["scenario"] == "metro"
    assert recompute(record) == q["reduction_kgco2e"]


def test_recognised_record_carries_its_origin_platform_code_and_record_id(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, metro_record(), ctx)
    assert record["origin"] == {
        "platform": "shanghai",
        "methodology_code": "SHCER-RAIL-2024",
        "record_id": "SH2024110500000017",
    }
    assert record["source"]["partner_record_id"] == "shanghai:SH2024110500000017"
    assert record["activity"]["details"]["treatment"] == "recognised"
    assert record["activity"]["details"]["origin_methodology_version"] == "1.0"


def test_recognised_record_without_activity_recomputes_from_the_origin_figure(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    item = metro_record(
        scenario_id="SH-POWER-TOU",
        methodology_code="SHCER02010022024II",
        methodology_version="2024II",
        start_time="2024-11-04T06:00:00+08:00",
        end_time="2024-11-04T22:00:00+08:00",
        activity_quantity=None,
        activity_unit=None,
        reduction_kgco2e=1.265,
    )
    (record,) = normalize(adapter, item, ctx)
    q = record["quantification"]
    assert q["methodology_id"] == "tph.electricity.peak-saving"
    assert q["formula"] == "origin_kgco2e"
    assert q["factors"][0]["name"] == "origin_kgco2e" and q["factors"][0]["value"] == 1.265
    assert record["activity"] == {"quantity": 1.0, "unit": "record", "details": record["activity"]["details"]}
    assert record["scenario"] == "peak_electricity_saving"
    assert recompute(record) == 1.265


def test_recognised_record_with_zero_activity_still_recomputes(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, metro_record(activity_quantity=0, reduction_kgco2e=0.05), ctx)
    assert record["quantification"]["formula"] == "origin_kgco2e"
    assert recompute(record) == 0.05


@pytest.mark.parametrize("kg", [0.1, 0.7006, 1.0 / 3.0, 2.145, 0.0000004, 123.456789, 9.9999995])
@pytest.mark.parametrize("activity", [0.3, 1.7, 3.0, 12.6, 29.9, 0.1, 7.0 / 3.0])
def test_recompute_of_a_recognised_figure_gives_it_back(kg: float, activity: float) -> None:
    metro = METHODOLOGIES["tph.transit.metro"]
    q = recognised_quantification(
        metro, platform="shanghai", code="C", version="1", reduction_kgco2e=kg, activity=activity, unit="km"
    )
    record = {"quantification": q, "activity": {"quantity": activity, "unit": "km"}}
    assert recompute(record) == q["reduction_kgco2e"] == round(kg, 6)


def test_a_version_specific_recognition_wins_over_the_code_alone() -> None:
    adapter = YrdScenariosAdapter(
        make_settings(recognition={"SHCER-RAIL-2024": "tph.transit.bus", "SHCER-RAIL-2024@1.0": "tph.transit.metro"})
    )
    (record,) = normalize(adapter, metro_record(), make_ctx())
    assert record["quantification"]["methodology_id"] == "tph.transit.metro"


def test_recognition_of_another_version_does_not_apply() -> None:
    adapter = YrdScenariosAdapter(make_settings(recognition={"SHCER-RAIL-2024@2.0": "tph.transit.metro"}))
    problems = rejected(adapter, metro_record(), make_ctx())
    assert problems[0][0] == "/methodology_code"


def test_recognition_mapped_to_an_unknown_methodology_is_quarantined_naming_it() -> None:
    adapter = YrdScenariosAdapter(make_settings(recognition={"SHCER-RAIL-2024": "tph.transit.maglev"}))
    ((pointer, message),) = rejected(adapter, metro_record(), make_ctx())
    assert pointer == "/methodology_code"
    assert "recognition table maps 'SHCER-RAIL-2024' to 'tph.transit.maglev'" in message


# -- re-quantified ----------------------------------------------------------------------------------------------


def test_unrecognised_record_with_activity_is_requantified_with_our_methodology(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, jiangsu_metro(), ctx)
    q = record["quantification"]
    assert q["methodology_id"] == "tph.transit.metro" and q["formula"] == "activity * ef_reduction"
    assert q["reduction_kgco2e"] == pytest.approx(9.8 * 0.0467)
    assert record["activity"]["quantity"] == 9.8 and record["activity"]["unit"] == "pkm"
    details = record["activity"]["details"]
    assert details["treatment"] == "requantified" and details["origin_reduction_kgco2e"] == 0.4802
    assert record["origin"] == {
        "platform": "jiangsu",
        "methodology_code": "JS-TPH-METRO-2024",
        "record_id": "JS2024110500000042",
    }
    assert record["region"] == "320100"
    assert recompute(record) == q["reduction_kgco2e"]


def test_scenario_mapping_without_platform_prefix_applies_to_any_platform(ctx: StreamContext) -> None:
    adapter = YrdScenariosAdapter(make_settings(scenario_methodologies={"JS-METRO": "tph.transit.metro"}))
    (record,) = normalize(adapter, jiangsu_metro(platform="zhejiang"), ctx)
    assert record["quantification"]["methodology_id"] == "tph.transit.metro"


def test_unrecognised_record_without_activity_is_quarantined_with_the_fix(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    item = jiangsu_metro(activity_quantity=None, activity_unit=None)
    ((pointer, message),) = rejected(adapter, item, ctx)
    assert pointer == "/methodology_code"
    assert "'JS-TPH-METRO-2024' v1.0 (jiangsu scenario JS-METRO) is not in the mutual-recognition table" in message
    assert "no activity to re-quantify with tph.transit.metro" in message
    assert "add 'JS-TPH-METRO-2024' to [adapters.yrd_scenarios.recognition]" in message


def test_unrecognised_record_of_an_unmapped_scenario_is_quarantined_even_with_activity(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    item = jiangsu_metro(scenario_id="JS-NEV", methodology_code="JS-TPH-NEV-2024", activity_quantity=38.0)
    ((pointer, message),) = rejected(adapter, item, ctx)
    assert pointer == "/methodology_code"
    assert "scenario jiangsu:JS-NEV has no methodology of ours to re-quantify it with" in message


def test_requantification_refuses_an_activity_unit_it_cannot_convert(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    ((pointer, message),) = rejected(adapter, jiangsu_metro(activity_unit="次"), ctx)
    assert pointer == "/activity_unit"
    assert "activity in '次' cannot be re-quantified with tph.transit.metro@1.0.0, which expects 'pkm'" in message


def test_requantification_with_a_baseline_methodology_is_refused_naming_the_fix(ctx: StreamContext) -> None:
    adapter = YrdScenariosAdapter(make_settings(scenario_methodologies={"JS-METRO": "tph.electricity.peak-saving"}))
    ((pointer, message),) = rejected(adapter, jiangsu_metro(activity_unit="kWh"), ctx)
    assert pointer == "/scenario_id"
    assert "needs a baseline that YRD records do not carry; recognise 'JS-TPH-METRO-2024' instead" in message


# -- the resident -----------------------------------------------------------------------------------------------


def test_mobile_and_resident_id_give_pseudonyms_never_clear_text(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (by_mobile,) = normalize(adapter, metro_record(), ctx)
    (by_id,) = normalize(adapter, metro_record("SH2024110500000018", mobile=None, resident_id=RESIDENT_ID), ctx)
    assert by_mobile["subject"]["pseudonym"] == ctx.pseudonym("mobile", MOBILE)
    assert by_id["subject"]["pseudonym"] == ctx.pseudonym("resident_id", RESIDENT_ID)
    text = orjson.dumps([by_mobile, by_id]).decode()
    assert MOBILE not in text and RESIDENT_ID not in text


def test_a_formatted_mobile_names_the_same_resident(adapter: YrdScenariosAdapter, ctx: StreamContext) -> None:
    (plain,) = normalize(adapter, metro_record(), ctx)
    (formatted,) = normalize(adapter, metro_record("SH2024110500000019", mobile="+86 199-5512-3456"), ctx)
    assert plain["subject"] == formatted["subject"]
    assert plain["fingerprint"] == formatted["fingerprint"]


def test_mobile_names_the_resident_when_both_identifiers_are_present(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, metro_record(resident_id=RESIDENT_ID), ctx)
    assert record["subject"]["pseudonym"] == ctx.pseudonym("mobile", MOBILE)


def test_subject_order_can_prefer_the_resident_id() -> None:
    adapter = YrdScenariosAdapter(make_settings(subject_order=["resident_id", "mobile"]))
    ctx = make_ctx()
    (record,) = normalize(adapter, metro_record(resident_id=RESIDENT_ID), ctx)
    assert record["subject"]["pseudonym"] == ctx.pseudonym("resident_id", RESIDENT_ID)


def test_a_record_identified_only_by_a_kind_subject_order_excludes_is_quarantined() -> None:
    adapter = YrdScenariosAdapter(make_settings(subject_order=["resident_id"]))
    ((pointer, message),) = rejected(adapter, metro_record(), make_ctx())
    assert pointer == "/mobile"
    assert "identifies the resident by mobile only" in message


def test_resident_id_with_a_wrong_check_character_is_quarantined_masked(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    item = metro_record(mobile=None, resident_id="340524198001010011")
    ((pointer, message),) = rejected(adapter, item, ctx)
    assert pointer == "/resident_id"
    assert "340524********0011 fails the GB 11643 check" in message
    assert "340524198001010011" not in message


def test_a_wrong_resident_id_next_to_a_good_mobile_is_still_quarantined(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    ((pointer, _),) = rejected(adapter, metro_record(resident_id="340524198001010011"), ctx)
    assert pointer == "/resident_id"


def test_a_mobile_that_is_not_a_mainland_number_is_quarantined(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    ((pointer, message),) = rejected(adapter, metro_record(mobile="12955123456"), ctx)
    assert pointer == "/mobile" and "129****3456" in message and "12955123456" not in message


# -- other checks -----------------------------------------------------------------------------------------------


def test_a_platform_the_hub_does_not_know_is_quarantined(adapter: YrdScenariosAdapter, ctx: StreamContext) -> None:
    ((pointer, message),) = rejected(adapter, metro_record(platform="anhui"), ctx)
    assert pointer == "/platform"
    assert "unknown platform 'anhui'; known: jiangsu, shanghai, zhejiang" in message


def test_an_endpoint_cannot_report_records_of_a_platform_it_does_not_serve(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    stream = adapter.stream("records")
    assert isinstance(stream, RecordsStream)
    stream.serving = frozenset({"zhejiang"})
    with pytest.raises(ItemRejected) as caught:
        list(stream.normalize(metro_record(), ctx))
    assert caught.value.problems[0].pointer == "/platform"
    assert "not one this endpoint serves (zhejiang)" in caught.value.problems[0].message


def test_an_end_before_the_start_is_quarantined(adapter: YrdScenariosAdapter, ctx: StreamContext) -> None:
    ((pointer, _),) = rejected(adapter, metro_record(end_time="2024-11-05T08:01:00+08:00"), ctx)
    assert pointer == "/end_time"


def test_region_defaults_to_the_origin_platforms_province(adapter: YrdScenariosAdapter, ctx: StreamContext) -> None:
    (record,) = normalize(adapter, jiangsu_metro(region=None), ctx)
    assert record["region"] == "320000"


def test_records_are_valid_reduction_records(adapter: YrdScenariosAdapter, ctx: StreamContext) -> None:
    items = [
        metro_record(),
        jiangsu_metro(),
        metro_record(
            "SH2024110500000020",
            activity_quantity=None,
            activity_unit=None,
            scenario_id="SH-POWER-TOU",
            methodology_code="SHCER02010022024II",
            methodology_version="2024II",
        ),
    ]
    for item in items:
        (record,) = normalize(adapter, item, ctx)
        assert list(REDUCTION.iter_errors(record)) == []


def test_the_same_origin_record_gets_one_record_id_pulled_or_pushed(adapter: YrdScenariosAdapter) -> None:
    push = adapter.stream("records_push")
    assert isinstance(push, RecordsPushStream)
    (pulled,) = normalize(adapter, metro_record(), make_ctx("records"))
    (pushed,) = push.normalize(metro_record(), make_ctx("records_push"))
    assert pulled["record_id"] == dict(pushed)["record_id"]
    assert dict(pushed)["source"]["stream"] == "records_push"


def test_record_ids_differ_between_platforms_with_the_same_origin_id(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (a,) = normalize(adapter, jiangsu_metro("R0001"), ctx)
    (b,) = normalize(adapter, jiangsu_metro("R0001", platform="zhejiang", scenario_id="ZJ-DTCX"), ctx)
    assert a["source"]["partner_record_id"] == "jiangsu:R0001"
    assert a["record_id"] != b["record_id"]


# -- withdrawn --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["credited", "cancelled"])
def test_a_record_credited_or_cancelled_at_its_origin_produces_no_record_and_is_counted(
    adapter: YrdScenariosAdapter, status: str
) -> None:
    ctx = make_ctx()
    assert normalize(adapter, metro_record(status=status), ctx) == []
    assert ctx.state["withdrawn"] == {f"shanghai:{status}": 1}
    (entry,) = ctx.state["withdrawn_log"]
    assert entry["origin"] == "shanghai:SH2024110500000017" and entry["status"] == status


def test_the_withdrawn_log_names_the_record_id_an_earlier_active_version_was_forwarded_under(
    adapter: YrdScenariosAdapter,
) -> None:
    ctx = make_ctx()
    (forwarded,) = normalize(adapter, metro_record(), ctx)
    assert normalize(adapter, metro_record(status="cancelled", updated_at="2024-11-05T15:00:00+08:00"), ctx) == []
    assert ctx.state["withdrawn_log"][0]["record_id"] == forwarded["record_id"]


def test_withdrawn_items_need_no_valid_identifier(adapter: YrdScenariosAdapter, ctx: StreamContext) -> None:
    item = metro_record(status="credited", mobile=None, resident_id="340524198001010011")
    assert normalize(adapter, item, ctx) == []


def test_the_withdrawn_log_is_bounded_but_the_counts_are_not() -> None:
    adapter = YrdScenariosAdapter(make_settings(withdrawn_log_size=3))
    ctx = make_ctx()
    for n in range(5):
        normalize(adapter, metro_record(f"SH20241105{n:08d}", status="cancelled"), ctx)
    assert ctx.state["withdrawn"] == {"shanghai:cancelled": 5}
    assert [e["origin"] for e in ctx.state["withdrawn_log"]] == [f"shanghai:SH20241105{n:08d}" for n in (2, 3, 4)]
    assert orjson.loads(orjson.dumps(ctx.state)) == ctx.state


# -- free text, references, derived values, units (verification-grade records) -------------------------------


def test_the_consent_reference_goes_downstream_only_as_a_keyed_pseudonym(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, metro_record(), ctx)
    assert "SH-CNS-000017" not in orjson.dumps(record).decode()
    assert "consent_id" not in record["activity"]["details"]
    assert record["activity"]["details"]["consent_ref"] == ctx.pseudonym("reference", "SH-CNS-000017")


def test_a_recognised_figure_is_labelled_derived_never_as_a_cited_factor(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    for item in (metro_record(), metro_record(activity_quantity=0, reduction_kgco2e=0.05)):
        (record,) = normalize(adapter, item, ctx)
        for factor in record["quantification"]["factors"]:
            assert factor["derived"] is True and factor["default"] is False
            assert factor["source"].startswith("derived, not a cited factor")


def test_recognised_transit_records_share_the_scenarios_unit_with_re_quantified_ones(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (recognised,) = normalize(adapter, metro_record(), ctx)
    (requantified,) = normalize(adapter, jiangsu_metro(), ctx)
    assert recognised["scenario"] == requantified["scenario"] == "metro"
    assert recognised["activity"]["unit"] == requantified["activity"]["unit"] == "pkm"


def test_a_recognised_activity_in_a_unit_of_its_own_is_one_record_with_the_origin_activity_kept(
    adapter: YrdScenariosAdapter, ctx: StreamContext
) -> None:
    (record,) = normalize(adapter, metro_record(activity_quantity=3, activity_unit="次"), ctx)
    assert record["activity"]["quantity"] == 1.0 and record["activity"]["unit"] == "record"
    assert record["activity"]["details"]["origin_activity"] == "3 次"
    assert record["quantification"]["formula"] == "origin_kgco2e"
    assert recompute(record) == 0.7006
