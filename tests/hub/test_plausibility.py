"""Plausibility rules through the hub: a metro trip faster than a train is held in the quarantine with the rule
named, released by an operator, retuned in hub.toml, flagged instead of held, counted in metrics; bad rule tables
are refused naming the key. And factor vintages through the hub: an activity no vintage covers is quarantined and
replays once hub.toml adds the vintage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from one_stream import OnePage, closing_hub, one_stream_hub

from tanpuhui.hub.audit import AuditEvent
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.metrics import HubMetrics
from tanpuhui.hub.store.base import Checkpoint
from tanpuhui.sdk import ConfigError, PullStream, StreamContext


def trip(n: int, minutes: int, km: float, card: str = "", day: str = "2024-11-05") -> dict[str, Any]:
    return {
        "id": f"M{n:05d}",
        "card": card or f"9900{n:08d}",
        "tap_in": f"{day}T08:00:00+08:00",
        "tap_out": f"{day}T08:{minutes:02d}:00+08:00",
        "km": km,
    }


class MetroTrips(OnePage):
    """Each item a metro trip of ``km`` passenger-km by one card."""

    name = "trips"
    schema = "test-metro-trip"
    id_field = "id"
    subject_kind = "card"
    fields: ClassVar[dict[str, Any]] = {"scenario": "metro", "methodology": "tph.transit.metro"}
    """The record's arguments that are not read from the item."""

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        yield ctx.record(
            raw=item,
            partner_record_id=item["id"],
            subject=ctx.subject(self.subject_kind, item["card"]),
            start=datetime.fromisoformat(item["tap_in"]),
            end=datetime.fromisoformat(item["tap_out"]),
            region="340100",
            activity=float(item["km"]),
            **self.fields,
        )


class PeakReadings(MetroTrips):
    """The same items read as a household's peak-hour kWh (``km``) against a baseline: a methodology whose factor
    has vintages."""

    subject_kind = "account"
    fields: ClassVar[dict[str, Any]] = {
        "scenario": "peak_electricity_saving",
        "methodology": "tph.electricity.peak-saving",
        "baseline": 4.6,
        "baseline_method": "household trailing 7-day peak average",
    }


def make_hub(
    tmp_path: Path, stream: type[PullStream], observers: Any = (), **tables: Any
) -> AbstractContextManager[Hub]:
    """The hub of the one partner, ``metro_partner``, whose one stream is ``stream``; closed as the block ends."""
    return closing_hub(one_stream_hub(tmp_path, "metro_partner", stream, observers, **tables))


def records(hub: Hub) -> dict[str, dict[str, Any]]:
    rows = hub.store.read_outbox(0, 1000)
    return {orjson.loads(r.body)["source"]["partner_record_id"]: orjson.loads(r.body) for r in rows}


def pull_holding_one(hub: Hub, partner_record_id: str, rule: str, pointer: str, message: str, inserted: int) -> None:
    """Pull: ``inserted`` records credited, and one item quarantined, ``partner_record_id``, held by ``rule`` with
    a problem at ``pointer`` saying ``message``."""
    (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
    assert (summary.inserted, summary.quarantined) == (inserted, 1)
    assert summary.plausibility == {(rule, "hold"): 1}
    (entry,) = hub.store.quarantine_list(None, "open", 10)
    assert (entry.stage, entry.partner_record_id) == ("plausibility", partner_record_id)
    (problem,) = entry.problems
    assert (problem["keyword"], problem["pointer"]) == ("plausibility", pointer)
    assert problem["message"] == f"plausibility rule {rule}: {message}"


def held_on_replay_then_released(hub: Hub, because: str) -> None:
    """Pull: the one item held stays held on replay (its problem says ``because``) and is resolved on release."""
    asyncio.run(hub.pull("metro_partner", "trips"))
    (entry,) = hub.store.quarantine_list(None, "open", 10)
    (again,) = asyncio.run(hub.replay_quarantine([entry.id]))
    assert again.status == "failed" and because in again.problems[0].message
    (released,) = asyncio.run(hub.replay_quarantine([entry.id], release=True))
    assert released.status == "resolved"


def test_a_trip_faster_than_a_train_is_held_with_the_rule_named_and_the_rest_credited(tmp_path: Path) -> None:
    # 8.4 pkm in 31 min (16 km/h) is a trip; 12.6 pkm in 4 min (189 km/h) is not
    MetroTrips.items = [trip(1, 31, 8.4), trip(2, 4, 12.6), trip(3, 25, 7.0)]
    with make_hub(tmp_path, MetroTrips) as hub:
        message = "12.6 pkm in 4.0 min is 189.0 km/h, above the limit of 100 km/h"
        pull_holding_one(hub, "M00002", "metro_speed", "/period", message, inserted=2)
        assert set(records(hub)) == {"M00001", "M00003"}
        assert all("plausibility" not in r for r in records(hub).values())


def test_a_held_trip_stays_held_on_replay_and_is_credited_on_release_with_the_release_in_the_record(
    tmp_path: Path,
) -> None:
    MetroTrips.items = [trip(2, 4, 12.6)]
    with make_hub(tmp_path, MetroTrips) as hub:
        held_on_replay_then_released(hub, "metro_speed")
        record = records(hub)["M00002"]
        assert record["plausibility"] == [
            {
                "rule": "metro_speed",
                "action": "released",
                "message": "12.6 pkm in 4.0 min is 189.0 km/h, above the limit of 100 km/h",
            }
        ]
        assert hub.store.quarantine_list(None, "open", 10) == []


def test_a_limit_raised_in_hub_toml_lets_the_trip_through(tmp_path: Path) -> None:
    MetroTrips.items = [trip(2, 4, 12.6)]
    with make_hub(tmp_path, MetroTrips, plausibility={"rules": {"metro_speed": {"limit": 200}}}) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (1, 0)


def test_a_flag_rule_credits_the_record_and_marks_it(tmp_path: Path) -> None:
    MetroTrips.items = [trip(2, 4, 12.6)]
    with make_hub(tmp_path, MetroTrips, plausibility={"rules": {"metro_speed": {"action": "flag"}}}) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (1, 0)
        assert summary.plausibility == {("metro_speed", "flag"): 1}
        assert records(hub)["M00002"]["plausibility"][0]["action"] == "flag"


def test_the_seventeenth_trip_of_one_card_in_a_day_is_held(tmp_path: Path) -> None:
    MetroTrips.items = [trip(n, 30, 5.0, card="990000000001") for n in range(1, 18)]
    MetroTrips.items.append(trip(18, 30, 5.0, card="990000000001", day="2024-11-06"))  # a new day counts afresh
    with make_hub(tmp_path, MetroTrips) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (17, 1)
        (entry,) = hub.store.quarantine_list(None, "open", 10)
        assert entry.partner_record_id == "M00017"
        assert entry.problems[0]["message"] == (
            "plausibility rule transit_trips_per_day: record 17 of this person on 2024-11-05, above the limit of 16 "
            "a day"
        )


def test_an_item_sent_again_keeps_its_place_in_the_days_count(tmp_path: Path) -> None:
    MetroTrips.items = [trip(n, 30, 5.0, card="990000000001") for n in range(1, 17)]
    with make_hub(tmp_path, MetroTrips) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (16, 0)
        ctx = hub.stream("metro_partner", "trips").context(
            dict(hub.store.load_checkpoint("metro_partner", "trips").state)
        )
        processed = hub.pipeline.process(hub.stream("metro_partner", "trips"), ctx, MetroTrips.items[:3])
        assert processed.rejected == {} and len(processed.records) == 3  # the same three trips again: not held


def test_the_seventeenth_trip_keeps_its_place_on_replay_and_is_credited_on_release(tmp_path: Path) -> None:
    MetroTrips.items = [trip(n, 30, 5.0, card="990000000001") for n in range(1, 18)]
    with make_hub(tmp_path, MetroTrips) as hub:
        held_on_replay_then_released(hub, "record 17 of this person")
        assert records(hub)["M00017"]["plausibility"][0]["rule"] == "transit_trips_per_day"
        (doc,) = [d for d in records(hub).values() if d["source"]["partner_record_id"] == "M00017"]
        key = ("transit_trips_per_day", "2024-11-05", doc["subject"]["pseudonym"][:16])
        assert len(hub.store.day_counts("metro_partner", "trips", {key})) == 17  # counted once, not again


def test_the_days_counts_are_kept_in_the_store_not_in_the_stream_state(tmp_path: Path) -> None:
    MetroTrips.items = [trip(n, 30, 5.0, card="990000000001") for n in range(1, 4)]
    with make_hub(tmp_path, MetroTrips) as hub:
        asyncio.run(hub.pull("metro_partner", "trips"))
        assert "_plausibility" not in hub.store.load_checkpoint("metro_partner", "trips").state
        (doc,) = [d for d in records(hub).values() if d["source"]["partner_record_id"] == "M00001"]
        key = ("transit_trips_per_day", "2024-11-05", doc["subject"]["pseudonym"][:16])
        counted = hub.store.day_counts("metro_partner", "trips", {key})
        assert sorted(c.n for c in counted) == [1, 2, 3]


def test_counts_an_earlier_version_kept_in_the_stream_state_are_ignored(tmp_path: Path) -> None:
    MetroTrips.items = [trip(n, 30, 5.0, card="990000000001") for n in range(1, 17)]
    with make_hub(tmp_path, MetroTrips) as hub:
        card = hub.stream("metro_partner", "trips").context({}).subject("card", "990000000001")["pseudonym"][:16]
        full_day = {"transit_trips_per_day": {"2024-11-05": {card: [f"{n:010d}" for n in range(16)]}}}
        hub.store.commit_page("metro_partner", "trips", [], [], Checkpoint(None, {"_plausibility": full_day}))
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (16, 0)
        assert "_plausibility" not in hub.store.load_checkpoint("metro_partner", "trips").state  # not carried on


def test_pages_processed_before_the_earlier_ones_commit_count_them_and_an_uncommitted_page_counts_nothing(
    tmp_path: Path,
) -> None:
    # As a group of pushed requests: several pages of one stream processed on one context, then committed together.
    items = [trip(n, 30, 5.0, card="990000000001") for n in range(1, 18)]
    with make_hub(tmp_path, MetroTrips) as hub:
        bound = hub.stream("metro_partner", "trips")
        ctx = bound.context({})
        first = hub.pipeline.process(bound, ctx, items[:10])
        second = hub.pipeline.process(bound, ctx, items[10:])
        assert (len(first.records), len(second.records), list(second.rejected)) == (10, 6, [6])
        # Neither was committed: a new context (a retry after the failed commit) counts from the store alone.
        again = hub.pipeline.process(bound, bound.context({}), items[10:])
        assert (len(again.records), again.rejected) == (7, {})
        audit = AuditEvent("page.commit", bound.label, {})
        hub.store.commit_pages([first.write(None, audit), second.write(None, audit)])
        later = hub.pipeline.process(bound, bound.context({}), items[15:])
        assert (len(later.records), list(later.rejected)) == (1, [1])  # the 16th is in, the 17th still held


def test_disabled_plausibility_holds_nothing(tmp_path: Path) -> None:
    MetroTrips.items = [trip(2, 4, 12.6)]
    with make_hub(tmp_path, MetroTrips, plausibility={"enabled": False}) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (1, 0)


def test_rule_counts_reach_the_metrics_for_pulled_and_replayed_pages(tmp_path: Path) -> None:
    MetroTrips.items = [trip(1, 31, 8.4), trip(2, 4, 12.6), trip(3, 2, 9.0)]
    metrics = HubMetrics()
    with make_hub(tmp_path, MetroTrips, observers=[metrics]) as hub:
        asyncio.run(hub.pull("metro_partner", "trips"))
        first, _ = hub.store.quarantine_list(None, "open", 10)
        asyncio.run(hub.replay_quarantine([first.id], release=True))
    text = metrics.render().decode()
    labels = 'adapter="metro_partner",rule="metro_speed",stream="trips"'
    assert f'tanpuhui_plausibility_total{{action="hold",{labels}}} 2.0' in text
    assert f'tanpuhui_plausibility_total{{action="released",{labels}}} 1.0' in text


@pytest.mark.parametrize(
    "table, message",
    [
        ({"rules": {"metro_speed": {"limit": -5}}}, "plausibility.rules.metro_speed.limit: Input should be greater"),
        ({"rules": {"metro_speed": {"action": "drop"}}}, "plausibility.rules.metro_speed.action: Input should be"),
        ({"rules": {"metro_speed": {"kind": "max_speed"}}}, "plausibility.rules.metro_speed.kind: Input should be"),
        ({"rules": {"night_trips": {"limit": 3}}}, "plausibility.rules.night_trips is not a shipped rule"),
        ({"rules": {"Night-Trips": {"limit": 3}}}, "plausibility.rules.Night-Trips: a rule name is lower-case"),
        ({"rules": {"metro_speed": {"scenarios": []}}}, "plausibility.rules.metro_speed.scenarios: List should"),
        ({"rules": {"metro_speed": {"limt": 120}}}, "plausibility.rules.metro_speed.limt: Extra inputs"),
        ({"enable": True}, "plausibility.enable: Extra inputs are not permitted"),
    ],
    ids=[
        "negative limit",
        "unknown action",
        "unknown kind",
        "new rule without kind",
        "bad rule name",
        "no scenarios",
        "misspelt key",
        "misspelt table key",
    ],
)
def test_a_bad_rule_table_is_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HubConfig.from_dict({"plausibility": table}, source="hub.toml", environ={})
    assert str(caught.value).startswith("hub.toml: ")
    assert message in str(caught.value)


# -- a household's use against its own history; a record's reduction --------------------------------------------


def reading(n: int, kwh: float) -> dict[str, Any]:
    """A day's peak-hour use of household ``n`` (``PeakReadings``: against its trailing average of 4.6 kWh)."""
    return trip(n, 30, kwh)


def test_peak_use_far_above_the_households_history_is_flagged_and_a_normal_day_is_not(tmp_path: Path) -> None:
    # 3.1 kWh saves against 4.6; 9.2 kWh (2 x, a cold evening) saves nothing and is no fault; 31.0 kWh (6.7 x) is a
    # meter fault or a new occupant: flagged (the shipped action), credited (nothing) for the verifier to look at
    PeakReadings.items = [reading(1, 3.1), reading(2, 9.2), reading(3, 31.0)]
    with make_hub(tmp_path, PeakReadings) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (3, 0)
        assert summary.plausibility == {("household_use_vs_history", "flag"): 1}
        found = records(hub)
        assert found["M00003"]["plausibility"] == [
            {
                "rule": "household_use_vs_history",
                "action": "flag",
                "message": "31 kWh is 6.7 x the baseline of 4.6, above 5 x",
            }
        ]
        assert "plausibility" not in found["M00001"] and "plausibility" not in found["M00002"]


def test_peak_use_far_above_the_households_history_is_held_when_hub_toml_says_hold(tmp_path: Path) -> None:
    PeakReadings.items = [reading(1, 3.1), reading(3, 31.0)]
    rules = {"household_use_vs_history": {"action": "hold"}}
    with make_hub(tmp_path, PeakReadings, plausibility={"rules": rules}) as hub:
        message = "31 kWh is 6.7 x the baseline of 4.6, above 5 x"
        pull_holding_one(hub, "M00003", "household_use_vs_history", "/activity/quantity", message, inserted=1)
        assert set(records(hub)) == {"M00001"}


@pytest.mark.parametrize("action", ["hold", "flag"])
def test_a_reduction_above_a_configured_cap_is_held_or_flagged_and_one_below_is_not(
    tmp_path: Path, action: str
) -> None:
    # 3.1 kWh against 4.6 saves 1.0173 kgCO2e; 0.4 kWh (the household away, the fridge running) 2.84844 kgCO2e
    PeakReadings.items = [reading(1, 3.1), reading(2, 0.4)]
    cap = {"kind": "max_reduction_kg", "scenarios": ["peak_electricity_saving"], "limit": 2.5, "action": action}
    message = "2.84844 kgCO2e is above the limit of 2.5 kgCO2e a record"
    with make_hub(tmp_path, PeakReadings, plausibility={"rules": {"peak_saving_kg": cap}}) as hub:
        if action == "hold":
            pointer = "/quantification/reduction_kgco2e"
            pull_holding_one(hub, "M00002", "peak_saving_kg", pointer, message, inserted=1)
            assert set(records(hub)) == {"M00001"}
        else:
            (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
            assert (summary.inserted, summary.quarantined) == (2, 0)
            assert summary.plausibility == {("peak_saving_kg", "flag"): 1}
            flag = {"rule": "peak_saving_kg", "action": "flag", "message": message}
            assert records(hub)["M00002"]["plausibility"] == [flag]
        found = records(hub)
        assert found["M00001"]["quantification"]["reduction_kgco2e"] == 1.0173
        assert "plausibility" not in found["M00001"]


# -- factor vintages through the hub ----------------------------------------------------------------------------


def test_an_activity_no_vintage_covers_is_quarantined_and_replays_once_hub_toml_adds_it(tmp_path: Path) -> None:
    PeakReadings.items = [trip(1, 30, 3.1, day="2024-11-05"), trip(2, 30, 3.1, day="2026-03-02")]
    with make_hub(tmp_path, PeakReadings) as hub:
        (summary,) = asyncio.run(hub.pull("metro_partner", "trips"))
        assert (summary.inserted, summary.quarantined) == (1, 1)
        (entry,) = hub.store.quarantine_list(None, "open", 10)
        assert (entry.stage, entry.partner_record_id) == ("normalize", "M00002")
        assert entry.problems[0]["keyword"] == "factor_vintage"
        assert (
            "factor ef_grid (tph.electricity.peak-saving@1.1.0) covers the activity date 2026-03-02"
            in (entry.problems[0]["message"])
        )
        assert records(hub)["M00001"]["quantification"]["factors"][0]["data_year"] == 2022
    vintage = {
        "value": 0.6401,
        "data_year": 2024,
        "valid_from": datetime(2026, 1, 1).date(),
        "valid_to": datetime(2026, 12, 31).date(),
        "source": "MEE/NBS announcement of the 2024 electricity CO2 emission factors, Anhui (test figure)",
    }
    methodologies = {"tph.electricity.peak-saving": {"vintages": {"ef_grid": [vintage]}}}
    with make_hub(tmp_path, PeakReadings, methodologies=methodologies) as hub:
        (result,) = asyncio.run(hub.replay_quarantine([entry.id]))
        assert result.status == "resolved"
        q = records(hub)["M00002"]["quantification"]
        assert (q["factors_as_of"], q["factors"][0]["value"], q["factors"][0]["data_year"]) == (
            "2026-03-02",
            0.6401,
            2024,
        )
        assert q["factors"][0]["source"].startswith("MEE/NBS announcement of the 2024")


@pytest.mark.parametrize(
    "vintages, message",
    [
        (
            {"ef_grid": [{"value": 0.7, "valid_from": "2024-06-01", "source": "x"}]},
            "vintages overlap",
        ),
        ({"ef_gird": [{"value": 0.7, "valid_from": "2026-01-01", "source": "x"}]}, "vintages.ef_gird: methodology"),
        (
            {"ef_grid": [{"value": 0.7, "valid_from": "2026-01-01", "valid_to": "2025-01-01", "source": "x"}]},
            "valid_to 2025-01-01 is before valid_from 2026-01-01",
        ),
        ({"ef_grid": [{"value": 0.7, "valid_from": "2026-01-01"}]}, "vintages.ef_grid.0.source: Field required"),
    ],
    ids=["overlapping a shipped vintage", "unknown factor", "ends before it starts", "without a source"],
)
def test_a_bad_vintage_table_is_refused_when_the_hub_starts(
    tmp_path: Path, vintages: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        one_stream_hub(
            tmp_path,
            "metro_partner",
            PeakReadings,
            methodologies={"tph.electricity.peak-saving": {"vintages": vintages}},
        )
    assert message in str(caught.value)
    assert "hub.toml" in str(caught.value)
