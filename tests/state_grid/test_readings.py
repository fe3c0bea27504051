"""Readings: peak consumption from register differences, the household's own trailing baseline, data faults.

Every test runs raw readings through the real hub pipeline (schema validation, normalize, record validation, one
SQLite commit with the stream state), as a pull would.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from tanpuhui.sdk import recompute

from .conftest import (
    CONS_NO,
    KEYS,
    METER_ID,
    NEW_METER_ID,
    Household,
    HubFactory,
    feed,
    household_state,
    outbox,
    quarantine,
)

WEEK = [3.6, 3.8, 4.0, 4.2, 4.4, 4.0, 4.0]  # 4.0 kWh of peak use a day on average, never below it


def credited(record: dict[str, Any]) -> tuple[str, float, int, float]:
    """What a record credits: the start of its day, its peak kWh, and the days and kWh of the baseline it beat."""
    activity, baseline = record["activity"], record["quantification"]["baseline"]
    return record["period"]["start"], activity["quantity"], activity["details"]["baseline_days"], baseline["quantity"]


def test_a_day_below_the_households_trailing_average_is_credited(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    items.append(home.use(3.0, total=9.5).reading())
    result = feed(hub, items)
    assert (result.items, result.quarantined, result.inserted) == (9, 0, 1)
    (record,) = outbox(hub)
    assert record["scenario"] == "peak_electricity_saving"
    assert record["period"] == {"start": "2024-11-11T00:00:00+08:00", "end": "2024-11-12T00:00:00+08:00"}
    assert record["activity"]["quantity"] == pytest.approx(3.0)
    assert record["activity"]["unit"] == "kWh"
    assert record["activity"]["details"]["total_kwh"] == pytest.approx(9.5)
    assert record["activity"]["details"]["read_date"] == "2024-11-12"
    quantification = record["quantification"]
    assert quantification["methodology_id"] == "tph.electricity.peak-saving"
    assert quantification["baseline"]["quantity"] == pytest.approx(4.0)
    assert quantification["reduction_kgco2e"] == pytest.approx(1.0 * 0.6782)
    assert recompute(record) == quantification["reduction_kgco2e"]
    assert record["source"]["partner_record_id"] == "SG20241112234567"
    assert record["region"] == "340104"


def test_records_carry_a_pseudonym_and_no_customer_or_meter_number(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    feed(hub, [*home.week(WEEK), home.use(2.0).reading()])
    (record,) = outbox(hub)
    assert record["subject"] == {"kind": "person", "pseudonym": KEYS.pseudonym("account", CONS_NO), "key_version": "v1"}
    state = hub.store.load_checkpoint("state_grid", "readings").state
    for text in (orjson.dumps(record).decode(), orjson.dumps(state).decode()):
        assert CONS_NO not in text
        assert METER_ID not in text


def test_a_day_at_or_above_the_baseline_gives_no_record(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    items.append(home.use(4.0).reading())  # exactly the baseline
    items.append(home.use(6.5).reading())  # above it
    result = feed(hub, items)
    assert (result.valid_items, result.records, result.quarantined) == (10, 0, 0)


def test_nothing_is_credited_before_the_window_holds_the_minimum_days(make_hub: HubFactory) -> None:
    hub = make_hub(baseline_min_days=5)
    home = Household()
    items = home.week([4.0, 4.0, 4.0, 4.0])  # 4 days in the window
    items.append(home.use(1.0).reading())  # would save 3 kWh, but the baseline is not established yet
    items.append(home.use(1.0).reading())  # 5 days now: credited against their mean (4+4+4+4+1)/5
    feed(hub, items)
    (record,) = outbox(hub)
    assert record["period"]["start"] == "2024-11-09T00:00:00+08:00"
    assert record["quantification"]["baseline"]["quantity"] == pytest.approx(3.4)
    assert record["activity"]["details"]["baseline_days"] == 5


def test_the_baseline_only_counts_the_configured_trailing_days(make_hub: HubFactory) -> None:
    hub = make_hub(baseline_window_days=3, baseline_min_days=3)
    home = Household()
    items = home.week([9.0, 9.0, 2.0, 2.0, 2.0])
    items.append(home.use(1.5).reading())
    feed(hub, items)
    records = outbox(hub)
    # the 9 kWh days slide out of the 3-day window one by one
    assert [r["quantification"]["baseline"]["quantity"] for r in records] == [6.6667, 4.3333, 2.0]
    assert [r["activity"]["quantity"] for r in records] == [2.0, 2.0, 1.5]
    assert "over 3 of the 3 preceding days" in records[-1]["quantification"]["baseline"]["method"]


def test_peak_registers_setting_chooses_which_tariff_registers_are_peak(make_hub: HubFactory) -> None:
    hub = make_hub(peak_registers=["PAP_R2"])  # a meter whose sharp register is not part of the peak
    home = Household()
    feed(hub, [*home.week(WEEK), home.use(2.0).reading()])
    (record,) = outbox(hub)
    # Household.use puts 3/4 of peak use on PAP_R2: activity 1.5 against a baseline of 3.0
    assert record["activity"]["quantity"] == pytest.approx(1.5)
    assert record["quantification"]["baseline"]["quantity"] == pytest.approx(3.0)
    assert record["activity"]["details"]["peak_registers"] == "PAP_R2"


def test_households_are_tracked_separately_across_pages(make_hub: HubFactory) -> None:
    hub = make_hub()
    a, b = Household(), Household(cons_no="3401765432", meter_id="3340001000100055555555", region="340111")
    days_a, days_b = a.week(WEEK), b.week([2.0] * 7)
    for ra, rb in zip(days_a, days_b, strict=True):  # one page per day, households interleaved
        feed(hub, [ra, rb])
    feed(hub, [a.use(3.0).reading(), b.use(3.0).reading()])
    (record,) = outbox(hub)  # 3.0 is below a's 4.0 baseline, above b's 2.0
    assert record["subject"]["pseudonym"] == KEYS.pseudonym("account", CONS_NO)


# -- data faults ---------------------------------------------------------------------------------------------


def test_meter_replacement_restarts_the_chain_and_keeps_the_baseline_window(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    items.append(home.use(4.0).replace_meter(already_used=3.2).reading())  # new meter, registers near zero
    items.append(home.use(2.5).reading())
    result = feed(hub, items)
    assert result.quarantined == 0
    (record,) = outbox(hub)  # no difference across meters; the next day counts against the kept window
    # the window: 2024-11-05..11 minus the replacement day 11-11, whose difference spans two meters
    window = pytest.approx((3.8 + 4.0 + 4.2 + 4.4 + 4.0 + 4.0) / 6, abs=1e-4)
    assert credited(record) == ("2024-11-12T00:00:00+08:00", pytest.approx(2.5), 6, window)
    state = household_state(hub)
    assert state["m"] == KEYS.pseudonym("account", f"meter:{NEW_METER_ID}")[:16]
    assert state["d"] == date(2024, 11, 13).toordinal()


def test_a_missing_day_is_a_gap_not_credited_and_the_chain_goes_on(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    home.use(1.0)  # 2024-11-12's reading never arrives
    items.append(home.use(1.0).reading())  # 2 kWh of peak over two days: looks like a saving, is not one day
    items.append(home.use(3.0).reading())
    feed(hub, items)
    (record,) = outbox(hub)
    # the window 2024-11-06..12 holds 11-06..10: the gap days 11-11 and 11-12 are in no one-day difference
    assert credited(record) == ("2024-11-13T00:00:00+08:00", pytest.approx(3.0), 5, pytest.approx(4.12))


def test_a_reading_marked_missing_gives_no_record_and_keeps_the_chain(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    items.append(home.use(1.0).reading(status="missing"))
    items.append(home.use(1.0).reading())
    items.append(home.use(3.0).reading())
    result = feed(hub, items)
    assert (result.valid_items, result.quarantined) == (11, 0)
    assert [r["period"]["start"] for r in outbox(hub)] == ["2024-11-13T00:00:00+08:00"]


def test_an_estimated_reading_is_not_credited_and_does_not_move_the_chain(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    feed(hub, home.week(WEEK))
    anchor = household_state(hub)["r"]
    result = feed(hub, [home.use(1.0).reading(status="estimated")])
    assert (result.valid_items, result.records, result.quarantined) == (1, 0, 0)
    assert household_state(hub)["r"] == anchor
    feed(hub, [home.use(1.0).reading()])  # spans the estimated day: a gap, not credited
    assert outbox(hub) == []
    feed(hub, [home.use(3.0).reading()])
    assert [r["period"]["start"] for r in outbox(hub)] == ["2024-11-13T00:00:00+08:00"]


def test_a_register_going_backwards_is_quarantined_with_its_pointer(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    glitch = home.use(4.0).reading()
    glitch["PAP_R2"] = round(glitch["PAP_R2"] - 40.0, 2)
    glitch["PAP_R"] = round(glitch["PAP_R"] - 40.0, 2)
    result = feed(hub, [*items, glitch])
    assert result.quarantined == 1
    ((pid, stage, problems),) = quarantine(hub)
    assert (pid, stage) == ("SG20241112234567", "normalize")
    assert [p["pointer"] for p in problems] == ["/PAP_R", "/PAP_R2"]
    assert "PAP_R2 went backwards on the same meter" in problems[1]["message"]
    assert "not a meter replacement" in problems[1]["message"]
    assert CONS_NO not in orjson.dumps(problems).decode()


def test_a_backwards_reading_does_not_poison_the_chain(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    feed(hub, home.week(WEEK))
    anchor = household_state(hub)
    glitch = home.use(4.0).reading(PAP_R2=100.0, PAP_R=100.0)
    feed(hub, [glitch])
    after = household_state(hub)
    assert (after["d"], after["r"]) == (anchor["d"], anchor["r"])
    feed(hub, [home.use(3.0).reading()])  # spans the quarantined day: a gap
    feed(hub, [home.use(3.0).reading()])  # one day after a good reading: credited, from true registers
    (record,) = outbox(hub)
    assert record["activity"]["quantity"] == pytest.approx(3.0)
    assert record["activity"]["details"]["total_kwh"] == pytest.approx(10.0)


def test_a_register_reset_without_new_meter_id_restarts_the_chain_after_two_consistent_readings(
    make_hub: HubFactory,
) -> None:
    hub = make_hub(baseline_min_days=3)
    home = Household()
    items = home.week(WEEK)
    home.use(4.0).replace_meter(meter_id=METER_ID, already_used=1.0)  # registers cleared, same meter number
    items += [home.reading(), home.use(4.0).reading(), home.use(2.5).reading(), home.use(2.0).reading()]
    feed(hub, items)
    # 11-12 is quarantined (backwards); 11-13 agrees with it, so the chain restarts there instead of quarantining
    # every reading until the registers pass the old values. 11-13 -> 11-14 is the probation day (2.5 kWh, not
    # credited); 11-14 -> 11-15 is credited against the window without the old anchor's day (11-10).
    assert [(pid, stage) for pid, stage, _ in quarantine(hub)] == [("SG20241112234567", "normalize")]
    (record,) = outbox(hub)
    assert credited(record) == ("2024-11-14T00:00:00+08:00", pytest.approx(2.0), 3, pytest.approx(4.2))


def test_an_implausible_jump_is_quarantined_and_not_used(make_hub: HubFactory) -> None:
    hub = make_hub(max_daily_kwh=150)
    home = Household()
    items = home.week(WEEK)
    spike = home.use(4.0).reading()
    spike["PAP_R"] = round(spike["PAP_R"] + 900.0, 2)
    items += [spike, home.use(4.0).reading(), home.use(2.0).reading()]
    feed(hub, items)
    ((_, _, problems),) = quarantine(hub)
    assert problems[0]["pointer"] == "/PAP_R"
    assert "more than max_daily_kwh (150) per day" in problems[0]["message"]
    (record,) = outbox(hub)
    assert record["activity"]["details"]["total_kwh"] == pytest.approx(10.0)


def test_the_same_reading_delivered_twice_is_ignored(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    last = home.use(2.0).reading()
    feed(hub, [*items, last])
    again = feed(hub, [last])
    assert (again.valid_items, again.records, again.quarantined) == (1, 0, 0)
    assert len(outbox(hub)) == 1


def test_a_reading_older_than_the_chain_is_quarantined(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    feed(hub, items)
    late = dict(items[3], reading_id="SG20241107LATE01")
    result = feed(hub, [late])
    assert result.quarantined == 1
    ((_, _, problems),) = quarantine(hub)
    assert problems[0]["pointer"] == "/read_date"
    assert "arrived after this household's reading for 2024-11-11" in problems[0]["message"]


def test_a_late_reading_of_the_replaced_meter_does_not_restart_the_chain(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    items = home.week(WEEK)
    last_of_old_meter = items[-1]
    items.append(home.use(4.0).replace_meter(already_used=3.2).reading())
    items.append(home.use(2.5).reading())
    feed(hub, items)
    result = feed(hub, [dict(last_of_old_meter, reading_id="SG20241111RESENT")])  # the old meter, sent again late
    assert result.quarantined == 1
    assert household_state(hub)["m"] == KEYS.pseudonym("account", f"meter:{NEW_METER_ID}")[:16]
    feed(hub, [home.use(2.5).reading()])
    assert [r["period"]["start"][:10] for r in outbox(hub)] == ["2024-11-12", "2024-11-13"]


def test_schema_invalid_readings_are_quarantined_with_json_pointers(make_hub: HubFactory) -> None:
    hub = make_hub()
    home = Household()
    good = home.reading()
    text_register = home.use(4.0).reading(PAP_R="12873.46")
    no_registers = home.use(4.0).reading()
    del no_registers["PAP_R4"]
    bad_date = home.use(4.0).reading(read_date="2024/11/07")
    result = feed(hub, [good, text_register, no_registers, bad_date])
    assert (result.valid_items, result.quarantined) == (1, 3)
    entries = quarantine(hub)
    assert [stage for _, stage, _ in entries] == ["raw", "raw", "raw"]
    assert entries[0][2][0]["pointer"] == "/PAP_R"
    assert entries[1][2][0]["message"] == '"PAP_R4" is a required property'
    assert entries[2][2][0]["pointer"] == "/read_date"
