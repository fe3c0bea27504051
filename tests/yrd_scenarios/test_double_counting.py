"""The same metro trip from a transit card and from a YRD travel app is credited once (behaviour fingerprint).

The transit card operator reports the trip as tap-in/tap-out (credited by the ``account_mobile`` of the QR-code
account); a YRD platform reports it again, a couple of minutes off, for the same mobile. The hub keeps the first
claim and holds the second (``held_claims``), whichever comes first, also across a 10-minute window boundary.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from tanpuhui.adapters.transit_card import TransactionsStream
from tanpuhui.adapters.transit_card import plugin as transit_plugin
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox, hefei_network
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.pipeline import PageResult
from tanpuhui.sdk import Pseudonymiser, WebhookSigner

from .conftest import KEY, MOBILE, RESIDENT_ID, WEBHOOK_SECRET, HubFactory, metro_record, outbox, settings_dict

TRANSIT = {
    "transit_card": {
        "base_url": "https://transit.sandbox.example",
        "client_id": "tanpuhui-sandbox",
        "client_secret": {"env": "TRANSIT_CLIENT_SECRET"},
    }
}
ENV = {"TRANSIT_CLIENT_SECRET": "transit-secret-for-tests"}


def make_hub(hub_factory: HubFactory, **transit: Any) -> Hub:
    adapters = {"transit_card": {**TRANSIT["transit_card"], **transit}}
    return hub_factory(settings_dict(), extra_plugins=(transit_plugin,), adapters=adapters, environ=ENV)


def tap(deal_type: str, when: str, stop: str, txn: str, mobile: str = MOBILE) -> dict[str, Any]:
    return {
        "txn_id": txn,
        "card_no": "QR00001234567890",
        "account_mobile": mobile,
        "deal_time": when,
        "deal_type": deal_type,
        "line_id": stop.split("-")[0],
        "stop_id": stop,
        "gate_no": "G03",
        "deal_value_fen": 0 if deal_type == "metro_in" else 300,
        "deal_money_fen": 0 if deal_type == "metro_in" else 270,
        "transfer": False,
        "region": "340100",
    }


_deliveries = itertools.count(1)


def card_trip(hub: Hub, tap_in: str, tap_out: str, mobile: str = MOBILE, txn: str = "HF20241105") -> PageResult:
    """A Hefei metro trip M1-03 -> M1-11 through the transit card stream's own normalize."""
    rt = hub.stream("transit_card", "transactions")
    assert isinstance(rt.stream, TransactionsStream)
    if rt.stream.network is None:
        rt.stream.use_network(hefei_network())
    ctx = rt.context(dict(hub.store.load_checkpoint("transit_card", "transactions").state))
    items = [tap("metro_in", tap_in, "M1-03", f"{txn}A", mobile), tap("metro_out", tap_out, "M1-11", f"{txn}B", mobile)]
    return hub.pulls.commit_page(rt, ctx, items, None)


def app_trip(hub: Hub, start: str, end: str, record_id: str = "SH2024110500000101", **changes: Any) -> PageResult:
    """The same trip as a YRD travel app reports it, pushed by its platform (recognised as our metro)."""
    item = metro_record(record_id, start_time=start, end_time=end, region="340100", activity_quantity=13.2, **changes)
    body = orjson.dumps({"items": [item]})
    headers = WebhookSigner(WEBHOOK_SECRET).headers(f"msg_{record_id}_{next(_deliveries)}", body)  # a new message
    return hub.receive("yrd_scenarios", "records_push", headers, body).page


def adapters_in_outbox(hub: Hub) -> list[str]:
    return [r["source"]["adapter"] for r in outbox(hub)]


def test_the_yrd_claim_of_a_trip_the_transit_card_already_credited_is_held(hub_factory: HubFactory) -> None:
    hub = make_hub(hub_factory)
    card = card_trip(hub, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")
    assert card.inserted == 1
    app = app_trip(hub, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00")
    assert (app.records, app.inserted, app.held) == (1, 0, 1)
    assert adapters_in_outbox(hub) == ["transit_card"]
    assert hub.store.counts()["held_claims"] == 1


def test_a_claim_two_minutes_later_across_a_window_boundary_is_held(hub_factory: HubFactory) -> None:
    hub = make_hub(hub_factory)
    card_trip(hub, "2024-11-05T08:09:00+08:00", "2024-11-05T08:38:00+08:00")
    app = app_trip(hub, "2024-11-05T08:11:00+08:00", "2024-11-05T08:40:00+08:00")
    (credited,) = outbox(hub)
    assert credited["fingerprint"][:12] == "202411050000"  # 08:09+08:00 is in the 00:00 UTC window, 08:11 is not
    assert (app.inserted, app.held) == (0, 1)
    assert adapters_in_outbox(hub) == ["transit_card"]


def test_the_card_trip_arriving_after_the_yrd_claim_is_held_instead(hub_factory: HubFactory) -> None:
    hub = make_hub(hub_factory)
    app = app_trip(hub, "2024-11-05T08:11:00+08:00", "2024-11-05T08:40:00+08:00")
    card = card_trip(hub, "2024-11-05T08:09:00+08:00", "2024-11-05T08:38:00+08:00")
    assert app.inserted == 1
    assert (card.records, card.inserted, card.held) == (1, 0, 1)
    assert adapters_in_outbox(hub) == ["yrd_scenarios"]


def test_the_yrd_record_naming_the_resident_by_mobile_and_id_still_meets_the_card_trip(
    hub_factory: HubFactory,
) -> None:
    hub = make_hub(hub_factory)
    card_trip(hub, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")
    app = app_trip(hub, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00", resident_id=RESIDENT_ID)
    assert app.held == 1


def test_another_residents_trip_at_the_same_time_is_credited(hub_factory: HubFactory) -> None:
    hub = make_hub(hub_factory)
    card_trip(hub, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")
    app = app_trip(hub, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00", mobile="19955123457")
    assert (app.inserted, app.held) == (1, 0)


def test_the_same_residents_later_trip_is_credited(hub_factory: HubFactory) -> None:
    hub = make_hub(hub_factory)
    card_trip(hub, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")
    app = app_trip(hub, "2024-11-05T18:05:00+08:00", "2024-11-05T18:37:00+08:00")
    assert (app.inserted, app.held) == (1, 0)
    assert sorted(adapters_in_outbox(hub)) == ["transit_card", "yrd_scenarios"]


def test_a_held_claim_pushed_again_stays_held_and_out_of_the_outbox(hub_factory: HubFactory) -> None:
    hub = make_hub(hub_factory)
    card_trip(hub, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")
    app_trip(hub, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00")
    again = app_trip(hub, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00")
    assert again.inserted == 0
    assert adapters_in_outbox(hub) == ["transit_card"]
    assert hub.store.counts()["held_claims"] == 1


def test_a_trip_pulled_from_the_transit_sandbox_and_pushed_by_a_yrd_app_is_credited_once(
    hub_factory: HubFactory,
) -> None:
    with TransitSandbox(trips=300, seed=7, bad={}, mobile_share=0.5) as transit:
        hub = hub_factory(
            settings_dict(),
            extra_plugins=(transit_plugin,),
            adapters={
                "transit_card": {**TRANSIT["transit_card"], "base_url": transit.url, "client_id": transit.client_id}
            },
            environ={"TRANSIT_CLIENT_SECRET": transit.client_secret},
        )

        async def pull() -> Any:
            try:
                return await hub.pull("transit_card", "transactions")
            finally:
                await hub.aclose()

        (summary,) = asyncio.run(pull())
        assert summary.error is None and summary.inserted > 0
        items = transit.dataset.items
    tap_in = next(i for i in items if i["deal_type"] == "metro_in" and i.get("account_mobile"))
    tap_out = next(
        i
        for i in items
        if i["deal_type"] == "metro_out"
        and i.get("account_mobile") == tap_in["account_mobile"]
        and i["deal_time"] > tap_in["deal_time"]
    )
    hub = hub_factory(
        settings_dict(), extra_plugins=(transit_plugin,), adapters=TRANSIT, environ=ENV
    )  # the next process, on the same store
    before = len(outbox(hub))
    start = datetime.fromisoformat(tap_in["deal_time"]) + timedelta(minutes=2)
    end = datetime.fromisoformat(tap_out["deal_time"]) + timedelta(minutes=2)
    app = app_trip(hub, start.isoformat(), end.isoformat(), mobile=tap_in["account_mobile"])
    assert (app.records, app.held) == (1, 1)
    assert len(outbox(hub)) == before


@pytest.mark.parametrize("minutes", [0, 1, 4, 6, 9])
def test_claims_up_to_a_few_minutes_apart_in_either_direction_are_caught(hub_factory: HubFactory, minutes: int) -> None:
    hub = make_hub(hub_factory)
    base = datetime.fromisoformat("2024-11-05T08:05:30+08:00") + timedelta(minutes=minutes)
    card_trip(hub, base.isoformat(), (base + timedelta(minutes=29)).isoformat())
    app = app_trip(hub, (base + timedelta(minutes=2)).isoformat(), (base + timedelta(minutes=31)).isoformat())
    assert app.held == 1


# -- across a pseudonym key rotation ------------------------------------------------------------------------------

ROTATED = Pseudonymiser.parse(
    "v2:" + base64.b64encode(bytes(range(101, 133))).decode() + "," + KEY  # v2 current, v1 kept (docs/privacy.md)
)


def test_the_second_claim_after_a_key_rotation_is_still_held_in_either_order(hub_factory: HubFactory) -> None:
    before = make_hub(hub_factory)
    card_trip(before, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")  # credited under v1
    after = hub_factory(settings_dict(), extra_plugins=(transit_plugin,), adapters=TRANSIT, environ=ENV, keys=ROTATED)
    app = app_trip(after, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00")
    (card,) = outbox(after)
    assert app.held == 1 and card["subject"]["key_version"] == "v1"
    (held,) = [orjson.loads(body) for body in _held_bodies(after)]
    assert held["subject"]["key_version"] == "v2"
    assert held["fingerprint"][13:] != card["fingerprint"][13:]  # the fingerprints differ: the v1 alias matched


def test_a_card_trip_after_the_rotation_is_held_against_the_yrd_claim_before_it(hub_factory: HubFactory) -> None:
    before = make_hub(hub_factory)
    app_trip(before, "2024-11-05T08:11:00+08:00", "2024-11-05T08:40:00+08:00")  # credited under v1
    after = hub_factory(settings_dict(), extra_plugins=(transit_plugin,), adapters=TRANSIT, environ=ENV, keys=ROTATED)
    card = card_trip(after, "2024-11-05T08:09:00+08:00", "2024-11-05T08:38:00+08:00")
    assert (card.inserted, card.held) == (0, 1)
    assert adapters_in_outbox(after) == ["yrd_scenarios"]


def test_without_the_old_key_the_rotation_loses_the_match(hub_factory: HubFactory) -> None:
    before = make_hub(hub_factory)
    card_trip(before, "2024-11-05T08:02:00+08:00", "2024-11-05T08:31:00+08:00")
    only_new = Pseudonymiser.parse("v2:" + base64.b64encode(bytes(range(101, 133))).decode())
    after = hub_factory(settings_dict(), extra_plugins=(transit_plugin,), adapters=TRANSIT, environ=ENV, keys=only_new)
    app = app_trip(after, "2024-11-05T08:04:00+08:00", "2024-11-05T08:33:00+08:00")
    assert app.held == 0  # why docs/verification.md says to keep the retired key configured


def _held_bodies(hub: Hub) -> list[bytes]:
    sql = hub.store.sql
    with sql.read() as tx:
        return [bytes(r[0]) for r in sql.run(tx, "SELECT body FROM held_claims").fetchall()]
