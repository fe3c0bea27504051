"""Partner free text and references: every partner string a record carries passes the personal-data masker, in
whatever field an adapter puts it (baseline method, details, origin, partner record id, an origin's cited source)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from builtin_context import builtin_context

from tanpuhui.sdk import StreamContext, mask_identifiers, recompute

CST = timezone(timedelta(hours=8))
MOBILE = "13800138000"
RESIDENT_ID = "34052419800101001X"


def _ctx() -> StreamContext:
    return builtin_context("water_partner", "0.1.0", "usage")


def _record(ctx: StreamContext, **fields: Any) -> dict[str, Any]:
    """A peak-gas-saving record whose free text carries a mobile number and a resident id; ``fields`` replace or
    add :meth:`StreamContext.record` arguments."""
    defaults: dict[str, Any] = {
        "raw": {"id": "x"},
        "partner_record_id": f"WU-{MOBILE}-20241105",
        "subject": ctx.subject("account", "3401889021"),
        "scenario": "peak_gas_saving",
        "start": datetime(2024, 11, 5, 6, 0, tzinfo=CST),
        "region": "340104",
        "activity": 1.2,
        "methodology": "tph.gas.peak-saving",
        "baseline": 1.8,
        "baseline_method": f"estimated by the meter reader, call {MOBILE}",
        "details": {"note": f"resident {RESIDENT_ID} on leave", "floor": 3},
        "origin": {"platform": "zhejiang", "record_id": f"ZJ-{MOBILE}"},
    }
    return ctx.record(**{**defaults, **fields})


def test_every_partner_string_in_a_record_is_masked() -> None:
    record = _record(_ctx())
    text = orjson.dumps(record).decode()
    assert MOBILE not in text and RESIDENT_ID not in text
    assert record["quantification"]["baseline"]["method"] == "estimated by the meter reader, call 138****8000"
    assert record["activity"]["details"] == {"note": "resident 340524********001X on leave", "floor": 3}
    assert record["origin"] == {"platform": "zhejiang", "record_id": "ZJ-138****8000"}
    assert record["source"]["partner_record_id"] == "WU-138****8000-20241105"
    assert recompute(record) == record["quantification"]["reduction_kgco2e"]


def test_the_record_id_still_comes_from_the_partners_own_id() -> None:
    # two items whose ids differ only inside the masked part stay two records
    ctx = _ctx()
    first = _record(ctx)
    second = _record(ctx, raw={"id": "y"}, partner_record_id="WU-13900139000-20241105")
    assert first["record_id"] != second["record_id"]


def test_an_origin_platforms_cited_source_is_masked_too() -> None:
    quantification = {
        "methodology_id": "tph.transit.metro",
        "methodology_version": "1.0.0",
        "formula": "origin_kgco2e",
        "factors": [
            {
                "name": "origin_kgco2e",
                "value": 0.7,
                "unit": "kgCO2e",
                "source": f"reported by the platform operator {MOBILE}",
                "default": False,
                "derived": True,
            }
        ],
        "reduction_kgco2e": 0.7,
    }
    record = _record(_ctx(), quantification=quantification)
    assert record["quantification"]["factors"][0]["source"] == "reported by the platform operator 138****8000"


def test_text_without_identifiers_is_returned_as_is() -> None:
    text = "trailing mean of the household's peak usage on 7 of the previous 7 days"
    assert mask_identifiers(text) is text
    assert mask_identifiers("HF20241105080312A1+HF20241105083544B7") == "HF20241105080312A1+HF20241105083544B7"
