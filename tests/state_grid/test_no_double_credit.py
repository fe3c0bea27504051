"""A demand-response result inside the same household's same-day peak saving is credited once, whichever comes first.

The household saves 1.0 kWh of peak use on 11 November 2024 (4.0 kWh trailing average, 3.0 used); the same evening
it takes part in a demand-response event and saves 0.74 kWh against the partner's event baseline (1.86 -> 1.12).
Those 0.74 kWh are part of the day's saving: the default rule credits the event in full and deducts its kWh from
the day's peak saving (0.26 kWh left), naming the event's record. Folding the forwarded events gives the same
current state in both orders.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.evidence import EvidenceError, evidence_pack
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.ledger import Ledger
from tanpuhui.sdk import ConfigError, Pseudonymiser, recompute

from .conftest import CONS_NO, KEY_SPEC, Household, HubFactory, dr_result, feed, signed

EF = 0.6782
WEEK = [3.6, 3.8, 4.0, 4.2, 4.4, 4.0, 4.0]
SAME_EVENING = {
    "result_id": "DR2024111101-000001",
    "event_id": "AHDR2024111101",
    "cons_no": CONS_NO,
    "window_start": "2024-11-11T18:00:00+08:00",
    "window_end": "2024-11-11T20:00:00+08:00",
}


def readings(hub: Hub) -> None:
    home = Household()
    feed(hub, [*home.week(WEEK), home.use(3.0, total=9.5).reading()])


def event(hub: Hub) -> None:
    body = orjson.dumps([dr_result(1, **SAME_EVENING)])
    hub.receive("state_grid", "demand_response", signed(body), body)


def rows(hub: Hub) -> list[tuple[str, dict[str, Any]]]:
    return [(r.kind, orjson.loads(r.body)) for r in hub.store.read_outbox(0, 1000)]


def current(hub: Hub) -> dict[str, dict[str, Any]]:
    ledger = Ledger()
    for kind, doc in rows(hub):
        ledger.apply(kind, doc)
    return {doc["scenario"]: doc for doc in ledger.records.values()}


def test_the_peak_saving_arriving_after_the_event_is_netted_and_names_the_events_record(make_hub: HubFactory) -> None:
    hub = make_hub()
    event(hub)
    readings(hub)
    (dr_kind, dr), (ps_kind, ps) = rows(hub)
    assert (dr_kind, ps_kind) == ("created", "created")
    q = ps["quantification"]
    assert q["deductions"] == [
        {
            "record_id": dr["record_id"],
            "quantity": pytest.approx(0.74),
            "unit": "kWh",
            "rule": "demand_response_in_peak_saving",
        }
    ]
    assert q["formula"] == "max(baseline - deducted - activity, 0) * ef_grid"
    assert q["reduction_kgco2e"] == pytest.approx(0.26 * EF)
    assert recompute(ps) == q["reduction_kgco2e"]
    assert dr["quantification"]["reduction_kgco2e"] == pytest.approx(0.74 * EF)


def test_the_event_arriving_after_the_peak_saving_corrects_it_and_nothing_is_overwritten(make_hub: HubFactory) -> None:
    hub = make_hub()
    readings(hub)
    event(hub)
    (k1, original), (k2, dr), (k3, corrected) = rows(hub)
    assert (k1, k2, k3) == ("created", "created", "corrected")
    assert original["quantification"]["reduction_kgco2e"] == pytest.approx(1.0 * EF)  # as first forwarded
    assert corrected["supersedes"] == original["record_id"]
    assert corrected["record_id"] != original["record_id"]
    assert corrected["quantification"]["deductions"][0]["record_id"] == dr["record_id"]
    assert corrected["quantification"]["reduction_kgco2e"] == pytest.approx(0.26 * EF)
    assert recompute(corrected) == corrected["quantification"]["reduction_kgco2e"]


def test_both_orders_end_in_the_same_credited_state(make_hub: HubFactory, tmp_path: Any) -> None:
    first = make_hub()
    event(first)
    readings(first)
    netted_first = current(first)
    second = make_hub(hub_options={"store": str(tmp_path / "other-order.db")})
    readings(second)
    event(second)
    netted_second = current(second)

    def credited(state: dict[str, dict[str, Any]]) -> dict[str, float]:
        return {s: round(d["quantification"]["reduction_kgco2e"], 6) for s, d in state.items()}

    assert (
        credited(netted_first)
        == credited(netted_second)
        == {
            "demand_response": round(0.74 * EF, 6),
            "peak_electricity_saving": round(0.26 * EF, 6),
        }
    )


def test_the_withhold_rule_holds_or_voids_the_other_record_naming_the_event(make_hub: HubFactory) -> None:
    rule = {"name": "dr_instead_of_peak_day", "keep": "demand_response", "other": "peak_electricity_saving"}
    hub = make_hub(hub_options={"overlap": [{**rule, "action": "withhold"}]})
    readings(hub)
    event(hub)
    (_, ps), (_, dr), (kind, void) = rows(hub)
    assert kind == "voided"
    assert (void["voids"], void["because_of"]) == (ps["record_id"], dr["record_id"])
    assert set(current(hub)) == {"demand_response"}


def test_the_withhold_rule_holds_the_other_record_arriving_second(make_hub: HubFactory) -> None:
    rule = {"name": "dr_instead_of_peak_day", "keep": "demand_response", "other": "peak_electricity_saving"}
    hub = make_hub(hub_options={"overlap": [{**rule, "action": "withhold"}]})
    event(hub)
    readings(hub)
    assert [kind for kind, _ in rows(hub)] == ["created"]
    assert hub.store.counts()["held_claims"] == 1


# -- across a pseudonym key rotation ------------------------------------------------------------------------------

ROTATED = Pseudonymiser.parse("v2:" + base64.b64encode(bytes(range(101, 133))).decode() + "," + KEY_SPEC)
"""v2 current, v1 kept after it (docs/privacy.md): the next run after a key rotation."""
WITHHOLD = {"name": "dr_instead_of_peak_day", "keep": "demand_response", "other": "peak_electricity_saving"}


def across_rotation(make_hub: HubFactory, event_first: bool, **hub_options: Any) -> Hub:
    """The event and the day's readings on either side of a key rotation: the hub after it (one store)."""
    first, second = (event, readings) if event_first else (readings, event)
    first(make_hub(hub_options=hub_options))
    after = make_hub(hub_options=hub_options, keys=ROTATED)
    second(after)
    return after


def credited(state: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {s: round(d["quantification"]["reduction_kgco2e"], 6) for s, d in state.items()}


@pytest.mark.parametrize("event_first", [True, False], ids=["event-then-day", "day-then-event"])
def test_the_net_rule_applies_across_a_key_rotation_in_either_order(make_hub: HubFactory, event_first: bool) -> None:
    hub = across_rotation(make_hub, event_first)
    state = current(hub)
    dr, ps = state["demand_response"], state["peak_electricity_saving"]
    versions = ("v1", "v2") if event_first else ("v2", "v1")
    assert (dr["subject"]["key_version"], ps["subject"]["key_version"]) == versions
    assert dr["subject"]["pseudonym"] != ps["subject"]["pseudonym"]  # paired by the v1 pseudonym kept after v2
    assert credited(state) == {"demand_response": round(0.74 * EF, 6), "peak_electricity_saving": round(0.26 * EF, 6)}
    assert [d["record_id"] for d in ps["quantification"]["deductions"]] == [dr["record_id"]]
    assert recompute(ps) == ps["quantification"]["reduction_kgco2e"]


@pytest.mark.parametrize("event_first", [True, False], ids=["event-then-day", "day-then-event"])
def test_the_withhold_rule_applies_across_a_key_rotation_in_either_order(
    make_hub: HubFactory, event_first: bool
) -> None:
    hub = across_rotation(make_hub, event_first, overlap=[{**WITHHOLD, "action": "withhold"}])
    assert set(current(hub)) == {"demand_response"}
    dr_id = current(hub)["demand_response"]["record_id"]
    if event_first:
        sql = hub.store.sql
        with sql.read() as tx:
            assert [str(r[0]) for r in sql.run(tx, "SELECT claimed_by FROM held_claims").fetchall()] == [dr_id]
    else:
        (void,) = [doc for kind, doc in rows(hub) if kind == "voided"]
        assert void["because_of"] == dr_id


@pytest.mark.parametrize("order", [(event, readings), (readings, event)], ids=["event-then-day", "day-then-event"])
def test_both_records_after_the_rotation_are_netted_once(
    make_hub: HubFactory, order: tuple[Callable[[Hub], None], ...]
) -> None:
    hub = make_hub(keys=ROTATED)  # both carry keys under v2 and v1: one pair, one deduction
    for arrive in order:
        arrive(hub)
    state = current(hub)
    assert credited(state) == {"demand_response": round(0.74 * EF, 6), "peak_electricity_saving": round(0.26 * EF, 6)}
    assert len(state["peak_electricity_saving"]["quantification"]["deductions"]) == 1
    corrected = [] if order[0] is event else ["corrected"]  # the day first: corrected, netted, once
    assert [kind for kind, _ in rows(hub)] == ["created", "created", *corrected]


def test_no_rule_means_both_are_credited_in_full(make_hub: HubFactory) -> None:
    hub = make_hub(hub_options={"overlap": []})
    readings(hub)
    event(hub)
    assert [kind for kind, _ in rows(hub)] == ["created", "created"]
    assert current(hub)["peak_electricity_saving"]["quantification"]["reduction_kgco2e"] == pytest.approx(EF)


def test_the_withheld_record_names_the_record_that_credits_the_saving(make_hub: HubFactory) -> None:
    rule = {"name": "dr_instead_of_peak_day", "keep": "demand_response", "other": "peak_electricity_saving"}
    hub = make_hub(hub_options={"overlap": [{**rule, "action": "withhold"}]})
    event(hub)
    readings(hub)
    ((_, dr),) = rows(hub)
    sql = hub.store.sql
    with sql.read() as tx:
        held = sql.run(tx, "SELECT claimed_by, body FROM held_claims").fetchall()
    assert [(claimed_by, orjson.loads(body)["scenario"]) for claimed_by, body in held] == [
        (dr["record_id"], "peak_electricity_saving")
    ]
    (withheld_id,) = (orjson.loads(body)["record_id"] for _, body in held)
    # A verifier follows the pair from either side: the kept record's pack lists what it withholds, the withheld
    # record's pack is refused naming the record credited instead.
    pack = evidence_pack(hub.store, dr["record_id"], lambda *_: None)
    assert pack["withholds"] == [{"record_id": withheld_id, "adapter": "state_grid", "stream": "readings"}]
    with pytest.raises(EvidenceError) as refused:
        evidence_pack(hub.store, withheld_id, lambda *_: None)
    assert f"was withheld and never forwarded: record {dr['record_id']!r} is credited" in str(refused.value)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "same", "keep": "bus", "other": "bus"}, "keep and other are both 'bus'"),
        ({"name": "tz", "keep": "bus", "other": "metro", "timezone": "Asia/Shanghai"}, "expected a UTC offset"),
        ({"name": "act", "keep": "bus", "other": "metro", "action": "halve"}, "hub.overlap.0.action"),
    ],
)
def test_a_bad_overlap_rule_is_refused_naming_the_key(rule: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        HubConfig.from_dict({"hub": {"overlap": [rule]}}, source="hub.toml")


def test_two_rules_of_one_name_are_refused() -> None:
    rule = {"name": "twice", "keep": "bus", "other": "metro"}
    with pytest.raises(ConfigError, match=r"hub\.overlap: .*rule names must be distinct"):
        HubConfig.from_dict({"hub": {"overlap": [rule, rule]}}, source="hub.toml")
