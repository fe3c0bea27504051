"""The pydantic ReductionRecord and schemas/reduction-record.schema.json accept and reject the same documents.

Three judges look at every example: python-jsonschema (the reference, formats checked through rfc3339-validator),
jsonschema-rs (the hub's hot path, formats on) and the SDK model (``model_validate_json`` on the bytes). A record
one of them accepts and another rejects would pass the hub and fail a consumer, or the other way round.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import orjson
import pytest
from builtin_context import builtin_context
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from pydantic import ValidationError

from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import ReductionRecord, StreamContext

CST = timezone(timedelta(hours=8))
KEY = bytes.fromhex("5f1c0e7a9b3d4c2e8f6a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e")

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]


def _context(adapter: str, stream: str) -> StreamContext:
    return builtin_context(adapter, "0.3.1", stream, KEY)


def metro_trip() -> Doc:
    """A Hefei Metro Line 1 trip, Hefei Railway Station -> Dadongmen, 8.4 passenger-km, paid by transit card."""
    ctx = _context("transit_card", "trips")
    raw: Doc = {
        "trip_id": "HF-M1-20240501-000123",
        "card_no": "3401****5678",
        "tap_in": "2024-05-01T08:12:00+08:00",
        "tap_out": "2024-05-01T08:41:00+08:00",
        "km": 8.4,
    }
    return ctx.record(
        raw=raw,
        partner_record_id=raw["trip_id"],
        subject=ctx.subject("card", "3401010012345678"),
        scenario="metro",
        start=datetime(2024, 5, 1, 8, 12, tzinfo=CST),
        end=datetime(2024, 5, 1, 8, 41, tzinfo=CST),
        region="340100",
        activity=8.4,
        methodology="tph.transit.metro",
        details={"line": "Hefei Metro Line 1", "from": "Hefei Railway Station", "to": "Dadongmen", "transfer": False},
    )


def peak_saving_from_yrd() -> Doc:
    """A Wuhu household's peak-hour electricity saving reported through a YRD scenario platform (baseline, origin)."""
    ctx = _context("yrd_scenarios", "household_power")
    raw: Doc = {"id": "ZJ-TPH-2024-07-15-88231", "mobile": "13912345678", "peak_kwh": 3.1, "trailing_avg_kwh": 4.6}
    return ctx.record(
        raw=raw,
        partner_record_id=raw["id"],
        subject=ctx.subject("mobile", "+86 139-1234-5678"),
        scenario="peak_electricity_saving",
        start=datetime(2024, 7, 15, 6, 0, tzinfo=CST),
        end=datetime(2024, 7, 15, 22, 0, tzinfo=CST),
        region="340200",
        activity=3.1,
        methodology="tph.electricity.peak-saving",
        baseline=4.6,
        baseline_method="household trailing 7-day peak average",
        origin={"platform": "浙江碳普惠", "methodology_code": "ZJ-TPH-ELEC-01", "record_id": "ZJ-TPH-2024-07-15-88231"},
    )


@pytest.fixture(scope="module")
def schema() -> Doc:
    return load_builtin("reduction-record")


@pytest.fixture(scope="module")
def judges(schema: Doc) -> Callable[[Doc], tuple[bool, bool, bool]]:
    reference = Draft202012Validator(schema, format_checker=FormatChecker())
    fast = jsonschema_rs.validator_for(schema, validate_formats=True)

    def judge(doc: Doc) -> tuple[bool, bool, bool]:
        try:
            ReductionRecord.model_validate_json(orjson.dumps(doc))
            model = True
        except ValidationError:
            model = False
        return reference.is_valid(doc), fast.is_valid(doc), model

    return judge


def setting(path: str, value: Any) -> Mutation:
    """Set the value at a slash-separated path (list indexes as numbers)."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.strip("/").split("/")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value

    return mutate


def removing(path: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        *parents, last = path.strip("/").split("/")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return mutate


REJECTED = [
    pytest.param(removing("/record_id"), id="missing record_id"),
    pytest.param(removing("/schema_version"), id="missing schema_version"),
    pytest.param(removing("/fingerprint"), id="missing fingerprint"),
    pytest.param(removing("/subject/pseudonym"), id="missing nested subject.pseudonym"),
    pytest.param(removing("/quantification/factors/0/source"), id="factor without its source"),
    pytest.param(setting("/card_no", "3401010012345678"), id="extra field at the root"),
    pytest.param(setting("/subject/mobile", "13800138000"), id="extra field in subject"),
    pytest.param(setting("/quantification/factors/0/region", "340100"), id="extra field in a factor"),
    pytest.param(setting("/quantification/factors/0/valid_from", "2024-1-1"), id="vintage start not YYYY-MM-DD"),
    pytest.param(setting("/quantification/factors/0/valid_to", None), id="null vintage end"),
    pytest.param(setting("/quantification/factors/0/data_year", "2022"), id="data year as a string"),
    pytest.param(setting("/quantification/factors/0/data_year", 22), id="data year of two digits"),
    pytest.param(setting("/quantification/factors/0/single_source", "yes"), id="string as the single-source flag"),
    pytest.param(setting("/quantification/factors/0/derived", 1), id="int as the derived flag"),
    pytest.param(setting("/quantification/factors_as_of", "2024-05-01T08:12:00+08:00"), id="vintage date with a time"),
    pytest.param(setting("/period/start", "2024-05-01T10:00:00"), id="date-time without offset"),
    pytest.param(setting("/period/start", "2024-05-01 10:00:00+08:00"), id="date-time with a space for T"),
    pytest.param(setting("/period/start", "1714557600"), id="unix seconds as a date-time string"),
    pytest.param(setting("/period/end", 1714557600), id="unix seconds as a number"),
    pytest.param(setting("/period/start", "2024-05-01T10:00+08:00"), id="date-time without seconds"),
    pytest.param(setting("/period/start", "2024-05-01T10:00:00+0800"), id="offset without colon"),
    pytest.param(setting("/period/start", "2024-05-01"), id="date without time"),
    pytest.param(setting("/period/start", "2024-02-30T10:00:00+08:00"), id="30 February"),
    pytest.param(setting("/period/end", "2016-12-31T23:59:60Z"), id="leap second"),
    pytest.param(setting("/period/end", "0999-12-31T10:00:00Z"), id="year before 1000"),
    pytest.param(setting("/activity/quantity", -8.4), id="negative quantity"),
    pytest.param(setting("/quantification/reduction_kgco2e", -0.39228), id="negative reduction"),
    pytest.param(setting("/activity/quantity", "8.4"), id="quantity as a string"),
    pytest.param(setting("/activity/quantity", True), id="bool where a number is expected"),
    pytest.param(setting("/quantification/factors/0/value", False), id="bool as a factor value"),
    pytest.param(setting("/quantification/factors/0/default", "yes"), id="string as the default flag"),
    pytest.param(setting("/record_id", "01hwrqwv40sqgmn7xh1yhwrrjr"), id="lower-case record_id"),
    pytest.param(setting("/record_id", "01HWRQWV40SQGMN7XH1YHWRRJU"), id="record_id with U (not Crockford)"),
    pytest.param(setting("/record_id", "01HWRQWV40SQGMN7XH1YHWRRJ"), id="record_id of 25 characters"),
    pytest.param(
        setting("/subject/pseudonym", "47CE9F79E63055E6B1CDD00239E5E60DCCB0C7D2ED565889A5A7526480BCFDB3"),
        id="upper-case pseudonym hex",
    ),
    pytest.param(
        setting("/subject/pseudonym", "47ce9f79e63055e6b1cdd00239e5e60dccb0c7d2ed565889a5a7526480bcfdb"),
        id="pseudonym of 63 hex",
    ),
    pytest.param(setting("/subject/kind", "household"), id="unknown subject kind"),
    pytest.param(setting("/subject/key_version", ""), id="empty key version"),
    pytest.param(setting("/region", "040100"), id="region starting with 0"),
    pytest.param(setting("/region", "34010"), id="region of 5 digits"),
    pytest.param(setting("/region", "３４０１００"), id="region in full-width digits"),
    pytest.param(setting("/region", 340100), id="int where a string is expected"),
    pytest.param(setting("/source/partner_record_id", 123), id="int partner record id"),
    pytest.param(setting("/source/adapter", "Transit-Card"), id="adapter name with capitals and hyphen"),
    pytest.param(setting("/source/raw_sha256", "F" * 64), id="upper-case raw hash"),
    pytest.param(setting("/scenario", "Metro"), id="capitalised scenario"),
    pytest.param(setting("/quantification/methodology_version", "1.0"), id="methodology version 1.0"),
    pytest.param(setting("/quantification/formula", ""), id="empty formula"),
    pytest.param(setting("/quantification/factors", {"ef_reduction": 0.0467}), id="factors as an object"),
    pytest.param(setting("/activity/unit", "passenger-kilometres-travelled-xx"), id="unit of 33 characters"),
    pytest.param(setting("/activity/details/station", {"name": "Dadongmen"}), id="details with a nested object"),
    pytest.param(setting("/activity/details/stops", ["Hefei Railway Station", "Dadongmen"]), id="details with a list"),
    pytest.param(setting("/activity/details", None), id="null details"),
    pytest.param(setting("/origin", None), id="null origin"),
    pytest.param(
        setting("/origin", {"platform": "浙江碳普惠", "methodology_code": None}), id="null origin methodology code"
    ),
    pytest.param(setting("/quantification/baseline", None), id="null baseline"),
    pytest.param(
        setting("/quantification/baseline", {"quantity": -4.6, "unit": "kWh", "method": "trailing 7-day"}),
        id="negative baseline",
    ),
    pytest.param(setting("/schema_version", "1.1"), id="schema version 1.1"),
    pytest.param(
        setting("/fingerprint", "202405010010:metro:081BD85AAC462789453EB243E86BB365"), id="upper-case fingerprint hash"
    ),
]

ACCEPTED = [
    pytest.param(setting("/period/start", "2024-05-01T00:12:00Z"), id="UTC with Z"),
    pytest.param(setting("/period/start", "2024-05-01t00:12:00z"), id="lower-case t and z"),
    pytest.param(setting("/period/start", "2024-05-01T08:12:00.250+08:00"), id="fractional seconds"),
    pytest.param(setting("/period/end", "2024-04-30T20:41:00-04:00"), id="negative offset"),
    pytest.param(setting("/activity/quantity", 8), id="integer quantity"),
    pytest.param(setting("/activity/quantity", 0), id="zero quantity"),
    pytest.param(setting("/activity/details/conn_mark", None), id="null value inside details"),
    pytest.param(removing("/activity/details"), id="details left out"),
    pytest.param(setting("/origin", {"platform": "上海碳普惠"}), id="origin with platform only"),
    pytest.param(setting("/quantification/factors", []), id="no factors"),
]


@pytest.mark.parametrize("build", [metro_trip, peak_saving_from_yrd], ids=["metro trip", "peak saving via YRD"])
def test_records_built_by_the_context_are_accepted_by_all_three(
    build: Callable[[], Doc], judges: Callable[[Doc], tuple[bool, bool, bool]]
) -> None:
    assert judges(build()) == (True, True, True)


@pytest.mark.parametrize("mutation", REJECTED)
def test_schema_and_model_reject_the_same_bad_records(
    mutation: Mutation, judges: Callable[[Doc], tuple[bool, bool, bool]]
) -> None:
    doc = copy.deepcopy(metro_trip())
    mutation(doc)
    assert judges(doc) == (False, False, False), "(jsonschema, jsonschema-rs, ReductionRecord) disagree"


@pytest.mark.parametrize("mutation", ACCEPTED)
def test_schema_and_model_accept_the_same_variants(
    mutation: Mutation, judges: Callable[[Doc], tuple[bool, bool, bool]]
) -> None:
    doc = copy.deepcopy(metro_trip())
    mutation(doc)
    assert judges(doc) == (True, True, True), "(jsonschema, jsonschema-rs, ReductionRecord) disagree"


def test_reference_validator_really_checks_date_time_formats() -> None:
    # Without rfc3339-validator installed, python-jsonschema silently passes any string as a date-time.
    assert not FormatChecker().conforms("2024-05-01T10:00:00", "date-time")


@pytest.mark.parametrize(
    "path, value",
    [("/record_id", "01HWRQWV40SQGMN7XH1YHWRRJR\n"), ("/subject/key_version", "v1\n")],
    ids=["record_id", "key_version"],
)
def test_trailing_newline_in_an_identifier_is_rejected_by_the_hub_and_the_model(path: str, value: str) -> None:
    # JSON Schema patterns are ECMA-262: "$" is the very end. python-jsonschema uses Python's re, whose "$" also
    # matches before a final newline, so it alone accepts these; the hub validates with jsonschema-rs.
    doc = metro_trip()
    setting(path, value)(doc)
    fast = jsonschema_rs.validator_for(load_builtin("reduction-record"), validate_formats=True)
    assert not fast.is_valid(doc)
    with pytest.raises(ValidationError):
        ReductionRecord.model_validate_json(orjson.dumps(doc))


@pytest.mark.parametrize("build", [metro_trip, peak_saving_from_yrd], ids=["metro trip", "peak saving via YRD"])
def test_to_json_dict_round_trips_a_record(build: Callable[[], Doc]) -> None:
    doc = build()
    model = ReductionRecord.model_validate_json(orjson.dumps(doc))
    assert model.to_json_dict() == doc
    assert ReductionRecord.model_validate_json(orjson.dumps(model.to_json_dict())) == model


def test_a_record_document_also_validates_as_a_python_dict() -> None:
    # Adapter authors build documents with ctx.record and may turn them into models without going through bytes.
    doc = peak_saving_from_yrd()
    model = ReductionRecord.model_validate(doc)
    assert model.period.start == datetime(2024, 7, 15, 6, 0, tzinfo=CST)
    assert model.to_json_dict() == doc


def test_record_keeps_the_offset_of_the_period() -> None:
    model = ReductionRecord.model_validate_json(orjson.dumps(metro_trip()))
    assert model.to_json_dict()["period"] == {"start": "2024-05-01T08:12:00+08:00", "end": "2024-05-01T08:41:00+08:00"}


def test_model_message_for_a_naive_date_time_names_the_expected_form() -> None:
    doc = metro_trip()
    doc["period"]["start"] = "2024-05-01 08:12:00"
    with pytest.raises(ValidationError) as info:
        ReductionRecord.model_validate_json(orjson.dumps(doc))
    assert "RFC 3339" in str(info.value)
    assert info.value.errors()[0]["loc"] == ("period", "start")
