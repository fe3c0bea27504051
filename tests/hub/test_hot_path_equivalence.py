"""The pull path's shortcuts (issue 19, round two) give what the plain code gave, byte for byte: details masked from
the context's cache, the plausibility rules looked up once, the batch digest hashed over joined rows."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from builtin_context import builtin_context

from tanpuhui.hub.audit import batch_digest
from tanpuhui.hub.plausibility import DayCounts, Plausibility, plausibility_settings
from tanpuhui.sdk import StreamContext

CST = timezone(timedelta(hours=8))
MOBILE = "13800138000"


def _ctx() -> StreamContext:
    return builtin_context("transit_card", "0.3.0", "transactions")


def _metro(ctx: StreamContext, txn: str, details: dict[str, Any]) -> dict[str, Any]:
    return ctx.record(
        raw={"txn_id": txn},
        partner_record_id=txn,
        subject=ctx.subject("card", "9900355694391974"),
        scenario="metro",
        start=datetime(2024, 11, 5, 8, 1, tzinfo=CST),
        end=datetime(2024, 11, 5, 8, 31, tzinfo=CST),
        region="340100",
        activity=12.4,
        unit="pkm",
        methodology="tph.transit.metro",
        details=details,
    )


def test_details_are_masked_alike_whether_the_text_is_cached_or_not() -> None:
    details = {
        "origin_stop": "M1-03",
        "destination_stop": f"call {MOBILE}",
        "transfers": 1,
        "accessible": True,
        "line_in": "M1",
        "note": None,
    }
    ctx = _ctx()
    first = _metro(ctx, "HF0001", details)  # every text new to the context's cache
    second = _metro(ctx, "HF0002", details)  # every text remembered
    expected = {**details, "destination_stop": "call 138****8000"}
    for record in (first, second):
        assert record["activity"]["details"] == expected
        assert list(record["activity"]["details"]) == list(details)  # the partner's order, as JSON writes it
        assert record["activity"]["details"] is not details
    assert orjson.dumps(first["activity"]) == orjson.dumps(second["activity"])


def test_a_record_built_without_earlier_keys_carries_no_alias_fingerprints() -> None:
    record = _metro(_ctx(), "HF0003", {"line_in": "M1"})
    assert record.aliases == ()  # type: ignore[attr-defined]


def test_plausibility_findings_follow_the_configured_rules_after_the_lookup_is_prepared() -> None:
    settings = plausibility_settings(
        {
            "rules": {
                "metro_speed": {"limit": 20, "action": "flag"},
                "transit_trips_per_day": {"limit": 2, "action": "hold"},
            }
        },
        "hub.toml",
    )
    rules = Plausibility(settings)
    ctx = _ctx()
    state = DayCounts((), [], ())  # a page's day counts, nothing committed before it
    findings = [rules.check(_metro(ctx, f"HF01{i}", {}), state) for i in range(3)]
    # 12.4 pkm in 30 min is 24.8 km/h: above 20, flagged on every trip; the third trip of the day is held
    assert [[(f.rule, f.action) for f in found] for found in findings] == [
        [("metro_speed", "flag")],
        [("metro_speed", "flag")],
        [("metro_speed", "flag"), ("transit_trips_per_day", "hold")],
    ]
    # the same record again keeps its place in the day's count
    again = rules.check(_metro(ctx, "HF010", {}), state)
    assert [(f.rule, f.action) for f in again] == [("metro_speed", "flag")]


def test_the_batch_digest_is_the_sha256_of_the_rows_written_one_after_another() -> None:
    rows = [(f"01JC{i:022d}", orjson.dumps({"n": i, "pad": "x" * (i % 37)})) for i in range(700)]
    expected = hashlib.sha256(b"".join(rid.encode() + b"\0" + body + b"\n" for rid, body in rows)).hexdigest()
    assert batch_digest(iter(rows)) == expected  # 700 rows: past the 256-row chunks, with a partial one at the end
    assert (
        batch_digest(iter(rows[:256]))
        == hashlib.sha256(b"".join(rid.encode() + b"\0" + body + b"\n" for rid, body in rows[:256])).hexdigest()
    )
    assert batch_digest(()) == hashlib.sha256(b"").hexdigest()
