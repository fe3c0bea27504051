"""normalize and flush: bus taps, metro pairing, distances, rejections, and what the stream state may hold."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter
from tanpuhui.sdk import ItemRejected, StreamContext, recompute

from .conftest import CARD, OTHER_CARD, RECORD, make_ctx, make_settings, tap

MOBILE = "+86 199-0000-0042"


def _one(stream: TransactionsStream, item: dict[str, Any], ctx: StreamContext) -> dict[str, Any]:
    (record,) = stream.normalize(item, ctx)
    assert isinstance(record, dict)
    return record


def _rejected(stream: TransactionsStream, item: dict[str, Any], ctx: StreamContext) -> ItemRejected:
    """The rejection normalizing ``item`` raises."""
    with pytest.raises(ItemRejected) as err:
        stream.normalize(item, ctx)
    return err.value


def _open_taps(ctx: StreamContext) -> list[str]:
    """The txn_ids of the tap-ins the stream state holds open."""
    return [t["txn_id"] for t in ctx.state["open"].values()]


def _trip(
    stream: TransactionsStream, ctx: StreamContext, origin: str, destination: str, **extra: Any
) -> dict[str, Any]:
    assert (
        list(stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", origin, txn_id="HF0803IN", **extra), ctx))
        == []
    )
    return _one(stream, tap("metro_out", "2024-11-05T08:31:40+08:00", destination, txn_id="HF0831OUT", **extra), ctx)


def test_a_bus_tap_is_credited_the_lines_average_trip_length(stream: TransactionsStream, ctx: StreamContext) -> None:
    record = _one(stream, tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B126"), ctx)
    assert record["scenario"] == "bus"
    assert record["activity"]["quantity"] == 4.2 and record["activity"]["unit"] == "pkm"
    assert record["quantification"]["methodology_id"] == "tph.transit.bus"
    assert record["quantification"]["reduction_kgco2e"] == pytest.approx(4.2 * 0.0269)
    assert record["source"]["partner_record_id"] == "HF1215B126"
    assert record["period"] == {"start": "2024-11-05T12:15:00+08:00", "end": "2024-11-05T12:15:00+08:00"}
    assert record["activity"]["details"]["line"] == "B126"
    assert record["activity"]["details"]["network_version"] == "hf-test-1"


def test_a_bus_tap_on_a_line_missing_from_the_table_is_rejected_at_line_id(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    rejected = _rejected(stream, tap("bus", "2024-11-05T12:15:00+08:00", "B1024-03", txn_id="HF1215B1024"), ctx)
    (problem,) = rejected.problems
    assert problem.pointer == "/line_id" and "'B1024' is not in the distance table" in problem.message


def test_a_metro_tap_in_is_held_until_its_tap_out(stream: TransactionsStream, ctx: StreamContext) -> None:
    out = stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-01", txn_id="HF0803IN"), ctx)
    assert list(out) == []
    (held,) = ctx.state["open"].values()
    assert held == {
        "txn_id": "HF0803IN",
        "deal_time": "2024-11-05T08:03:12+08:00",
        "line_id": "M1",
        "stop_id": "M1-01",
        "region": "340100",
    }


def test_a_metro_pair_is_credited_the_shortest_distance_between_its_stops(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    record = _trip(stream, ctx, "M1-01", "M2-05")
    assert record["scenario"] == "metro"
    assert record["activity"]["quantity"] == pytest.approx(4.4)
    assert record["quantification"]["methodology_id"] == "tph.transit.metro"
    assert record["quantification"]["reduction_kgco2e"] == pytest.approx(4.4 * 0.0467)
    assert recompute(record) == record["quantification"]["reduction_kgco2e"]
    assert record["activity"]["details"] == {
        "origin_stop": "M1-01",
        "destination_stop": "M2-05",
        "line_in": "M1",
        "line_out": "M2",
        "network_version": "hf-test-1",
    }


def test_a_metro_record_spans_tap_in_to_tap_out_and_is_identified_by_both_transactions(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    record = _trip(stream, ctx, "M1-02", "M1-05")
    assert record["period"] == {"start": "2024-11-05T08:03:12+08:00", "end": "2024-11-05T08:31:40+08:00"}
    assert record["source"]["partner_record_id"] == "HF0803IN+HF0831OUT"
    assert ctx.state["open"] == {}


def test_records_satisfy_the_reduction_record_schema(stream: TransactionsStream, ctx: StreamContext) -> None:
    metro = _trip(stream, ctx, "M1-01", "M2-05")
    bus = _one(stream, tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B126"), ctx)
    for record in (metro, bus):
        assert list(RECORD.iter_errors(record)) == []


def test_the_same_trip_gets_the_same_record_id_on_every_pull(stream: TransactionsStream) -> None:
    first = _trip(stream, make_ctx(), "M1-01", "M2-05")
    again = _trip(stream, make_ctx(), "M1-01", "M2-05")
    assert first["record_id"] == again["record_id"]


def test_the_subject_is_the_cards_pseudonym(stream: TransactionsStream, ctx: StreamContext) -> None:
    record = _trip(stream, ctx, "M1-01", "M2-05")
    assert record["subject"] == {"kind": "person", "pseudonym": ctx.pseudonym("card", CARD), "key_version": "v1"}


def test_an_account_mobile_identifies_the_person_instead_of_the_card(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    record = _one(
        stream, tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B", account_mobile=MOBILE), ctx
    )
    assert record["subject"]["pseudonym"] == ctx.pseudonym("mobile", "19900000042")


def test_an_account_mobile_that_is_not_a_mobile_number_is_rejected_masked(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    item = tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B", account_mobile="0551-6288-1234")
    rejected = _rejected(stream, item, ctx)
    (problem,) = rejected.problems
    assert problem.pointer == "/account_mobile"
    assert "not an 11-digit mainland number" in problem.message
    assert "055162881234" not in problem.message and "6288" not in problem.message


def test_neither_card_numbers_nor_mobiles_are_kept_in_clear_in_state_or_records(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-01", txn_id="HF0803IN"), ctx)
    stream.normalize(
        tap("metro_in", "2024-11-05T08:05:00+08:00", "M1-02", txn_id="HF0805IN", account_mobile=MOBILE), ctx
    )
    bus = _one(stream, tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B", card_no=OTHER_CARD), ctx)
    dumped = orjson.dumps([ctx.state, bus]).decode()
    for identifier in (CARD, OTHER_CARD, "19900000042", "0042"):
        assert identifier not in dumped


def test_pairing_keeps_cards_apart(stream: TransactionsStream, ctx: StreamContext) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-01", txn_id="HFA-IN"), ctx)
    stream.normalize(tap("metro_in", "2024-11-05T08:04:00+08:00", "M2-01", txn_id="HFB-IN", card_no=OTHER_CARD), ctx)
    a = _one(stream, tap("metro_out", "2024-11-05T08:20:00+08:00", "M1-04", txn_id="HFA-OUT"), ctx)
    b = _one(stream, tap("metro_out", "2024-11-05T08:21:00+08:00", "M2-03", txn_id="HFB-OUT", card_no=OTHER_CARD), ctx)
    assert a["source"]["partner_record_id"] == "HFA-IN+HFA-OUT" and a["activity"]["quantity"] == pytest.approx(3.9)
    assert b["source"]["partner_record_id"] == "HFB-IN+HFB-OUT" and b["activity"]["quantity"] == pytest.approx(2.9)


def test_a_tap_out_without_tap_in_is_rejected(stream: TransactionsStream, ctx: StreamContext) -> None:
    with pytest.raises(ItemRejected, match="metro tap-out without a tap-in"):
        stream.normalize(tap("metro_out", "2024-11-05T08:31:40+08:00", "M1-05", txn_id="HF0831OUT"), ctx)


def test_tap_in_and_tap_out_at_the_same_station_is_rejected_not_credited(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-03", txn_id="HF0803IN"), ctx)
    # the M2 platform of 大东门: another line, the same station
    rejected = _rejected(stream, tap("metro_out", "2024-11-05T08:07:40+08:00", "M2-04", txn_id="HF0807OUT"), ctx)
    assert "tap-in and tap-out at the same station" in str(rejected)
    assert ctx.state["open"] == {}


def test_a_second_tap_in_gives_up_the_first_as_a_tap_in_without_tap_out(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-01", txn_id="HF0803IN"), ctx)
    stream.normalize(tap("metro_in", "2024-11-05T09:10:00+08:00", "M2-01", txn_id="HF0910IN"), ctx)
    (rejection,) = ctx.rejections
    assert rejection.partner_record_id == "HF0803IN"
    assert rejection.raw["stop_id"] == "M1-01" and "card_no" not in rejection.raw
    assert rejection.problems[0].pointer == "/deal_time"
    assert "tap-in without tap-out" in rejection.problems[0].message
    record = _one(stream, tap("metro_out", "2024-11-05T09:30:00+08:00", "M2-03", txn_id="HF0930OUT"), ctx)
    assert record["source"]["partner_record_id"] == "HF0910IN+HF0930OUT"


def test_flush_gives_up_tap_ins_older_than_the_journey_limit_before_the_latest_tap(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-01", txn_id="HF0803IN"), ctx)
    stream.normalize(tap("bus", "2024-11-05T12:03:12+08:00", "B126-07", txn_id="HF1203B", card_no=OTHER_CARD), ctx)
    assert list(stream.flush(ctx, final=False)) == [] and ctx.rejections == []  # exactly 240 min: still waiting
    stream.normalize(tap("bus", "2024-11-05T12:03:13+08:00", "B126-07", txn_id="HF1203C", card_no=OTHER_CARD), ctx)
    assert list(stream.flush(ctx, final=False)) == []
    (rejection,) = ctx.rejections
    assert rejection.partner_record_id == "HF0803IN"
    assert rejection.problems[0].pointer == "/deal_time"
    assert rejection.problems[0].message == "metro tap-in without tap-out within 240 min"
    assert ctx.state["open"] == {}


def test_flush_gives_up_only_the_tap_ins_still_open_oldest_first_across_pages_and_runs(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.flush(ctx, final=False)  # the flush index is built before the taps below arrive
    stream.normalize(tap("metro_in", "2024-11-05T08:00:00+08:00", "M1-01", txn_id="HF0800IN"), ctx)  # paired
    _one(stream, tap("metro_out", "2024-11-05T08:20:00+08:00", "M1-04", txn_id="HF0820OUT"), ctx)
    stream.normalize(tap("metro_in", "2024-11-05T08:30:00+08:00", "M1-01", txn_id="HF0830IN"), ctx)  # replaced
    stream.normalize(tap("metro_in", "2024-11-05T08:40:00+08:00", "M1-02", txn_id="HF0840IN"), ctx)
    stream.normalize(tap("metro_in", "2024-11-05T08:10:00+08:00", "M2-01", txn_id="HF0810IN", card_no=OTHER_CARD), ctx)
    ctx.rejections.clear()  # HF0830IN, given up when HF0840IN came
    stream.normalize(tap("bus", "2024-11-05T12:45:00+08:00", "B126-07", txn_id="HF1245B", card_no="9" * 16), ctx)
    stream.flush(ctx, final=False)
    assert [r.partner_record_id for r in ctx.rejections] == ["HF0810IN", "HF0840IN"]
    assert ctx.state["open"] == {}
    # A run resuming from the saved state (new objects) gives up its old tap-ins as well.
    stream.normalize(tap("metro_in", "2024-11-05T13:00:00+08:00", "M1-01", txn_id="HF1300IN"), ctx)
    resumed = make_ctx(orjson.loads(orjson.dumps(ctx.state)))
    stream.normalize(tap("bus", "2024-11-05T17:01:00+08:00", "B126-07", txn_id="HF1701B", card_no="9" * 16), resumed)
    stream.flush(resumed, final=False)
    assert [r.partner_record_id for r in resumed.rejections] == ["HF1300IN"]


def test_the_final_flush_keeps_recent_tap_ins_for_the_next_run(stream: TransactionsStream, ctx: StreamContext) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T22:41:00+08:00", "M1-01", txn_id="HF2241IN"), ctx)
    stream.flush(ctx, final=True)
    assert ctx.rejections == []
    next_run = make_ctx(orjson.loads(orjson.dumps(ctx.state)))  # the state as the store gives it back
    record = _one(stream, tap("metro_out", "2024-11-05T23:02:00+08:00", "M1-04", txn_id="HF2302OUT"), next_run)
    assert record["source"]["partner_record_id"] == "HF2241IN+HF2302OUT"


def test_the_journey_limit_is_a_setting(ctx: StreamContext) -> None:
    from .conftest import NETWORK

    adapter = TransitCardAdapter(make_settings(max_journey_minutes=90))
    stream = adapter.stream("transactions")
    assert isinstance(stream, TransactionsStream)
    stream.use_network(NETWORK)
    stream.normalize(tap("metro_in", "2024-11-05T08:00:00+08:00", "M1-01", txn_id="HF0800IN"), ctx)
    stream.normalize(tap("bus", "2024-11-05T09:31:00+08:00", "B126-07", txn_id="HF0931B", card_no=OTHER_CARD), ctx)
    stream.flush(ctx, final=False)
    assert ctx.rejections[0].problems[0].message == "metro tap-in without tap-out within 90 min"


def test_a_tap_out_after_the_journey_limit_is_not_credited_whatever_the_paging(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:00:00+08:00", "M1-01", txn_id="HF0800IN"), ctx)
    with pytest.raises(ItemRejected, match="longer than max_journey_minutes"):
        stream.normalize(tap("metro_out", "2024-11-05T12:30:00+08:00", "M1-04", txn_id="HF1230OUT"), ctx)
    (rejection,) = ctx.rejections
    assert rejection.partner_record_id == "HF0800IN"
    assert ctx.state["open"] == {}


def test_a_tap_out_earlier_than_the_open_tap_in_is_rejected_and_the_tap_in_kept(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:30:00+08:00", "M1-01", txn_id="HF0830IN"), ctx)
    with pytest.raises(ItemRejected, match="earlier than the card's open tap-in"):
        stream.normalize(tap("metro_out", "2024-11-05T08:10:00+08:00", "M1-04", txn_id="HF0810OUT"), ctx)
    assert _open_taps(ctx) == ["HF0830IN"]


def test_a_tap_in_at_a_stop_missing_from_the_table_is_rejected_at_stop_id(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    rejected = _rejected(stream, tap("metro_in", "2024-11-05T08:03:12+08:00", "M9-01", txn_id="HF0803IN"), ctx)
    assert rejected.problems[0].pointer == "/stop_id"
    assert "open" not in ctx.state or ctx.state["open"] == {}


def test_a_deal_time_without_offset_is_rejected(stream: TransactionsStream, ctx: StreamContext) -> None:
    rejected = _rejected(stream, tap("bus", "2024-11-05T12:15:00", "B126-07", txn_id="HF1215B"), ctx)
    assert rejected.problems[0].pointer == "/deal_time" and "no UTC offset" in rejected.problems[0].message


def test_an_unknown_deal_type_is_rejected(stream: TransactionsStream, ctx: StreamContext) -> None:
    rejected = _rejected(stream, tap("recharge", "2024-11-05T12:15:00+08:00", "M1-01", txn_id="HF1215R"), ctx)
    assert rejected.problems[0].pointer == "/deal_type"


def test_the_latest_tap_time_is_tracked_in_state(stream: TransactionsStream, ctx: StreamContext) -> None:
    stream.normalize(tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B"), ctx)
    stream.normalize(tap("bus", "2024-11-05T04:15:00Z", "B126-07", txn_id="HF1215C"), ctx)  # 12:15+08:00, not later
    stream.normalize(tap("bus", "2024-11-05T12:16:00+08:00", "B126-07", txn_id="HF1216B"), ctx)
    assert ctx.state["latest"] == "2024-11-05T12:16:00+08:00"


def test_normalizing_before_the_distance_table_is_loaded_is_rejected_with_the_reason(ctx: StreamContext) -> None:
    stream = TransitCardAdapter(make_settings()).stream("transactions")
    with pytest.raises(ItemRejected, match="no distance table loaded"):
        stream.normalize(tap("bus", "2024-11-05T12:15:00+08:00", "B126-07", txn_id="HF1215B"), ctx)


def test_a_tap_out_at_a_stop_missing_from_the_table_leaves_the_tap_in_open(
    stream: TransactionsStream, ctx: StreamContext
) -> None:
    stream.normalize(tap("metro_in", "2024-11-05T08:03:12+08:00", "M1-01", txn_id="HF0803IN"), ctx)
    rejected = _rejected(stream, tap("metro_out", "2024-11-05T08:31:40+08:00", "M9-04", txn_id="HF0831OUT"), ctx)
    assert rejected.problems[0].pointer == "/stop_id"
    assert _open_taps(ctx) == ["HF0803IN"]
