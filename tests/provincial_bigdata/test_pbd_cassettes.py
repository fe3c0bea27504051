"""Recorded gateway traffic replayed through the real Hub: paging, sealed pages, baselines, every fault case."""

from __future__ import annotations

from typing import Any

import respx

from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.testing import Cassette

from .conftest import CASSETTES, FakeSleep, HubFactory, outbox, run, table


def replay(
    router: respx.MockRouter, hub: Hub, name: str, stream: str, *, all_used: bool = True
) -> tuple[PullSummary, Cassette]:
    """One pull of ``stream`` by ``hub`` against the cassette ``name``; the run uses every exchange unless
    ``all_used`` is false (a run that stops early)."""
    cassette = Cassette.load(CASSETTES / f"{name}.json")
    cassette.mount(router)

    async def pull(h: Hub) -> PullSummary:
        (summary,) = await h.pull("provincial_bigdata", stream)
        return summary

    summary = run(hub, pull)
    if all_used:
        cassette.assert_all_used()
    return summary, cassette


def cursor(hub: Hub, stream: str) -> Any:
    return hub.store.load_checkpoint("provincial_bigdata", stream).cursor


def quarantined(hub: Hub) -> list[tuple[str, str, str]]:
    return [(e.partner_record_id, e.stage, e.problems[0]["pointer"]) for e in hub.store.quarantine_list(limit=1000)]


def test_green_appliance_pages_credit_grade_one_and_quarantine_the_bad_items(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    hub = hub_factory(table(page_size=5))
    summary, _ = replay(router, hub, "green_appliances_with_bad_items", "green_appliances")
    assert (summary.pages, summary.pulled, summary.valid, summary.inserted, summary.quarantined) == (3, 12, 9, 7, 3)
    assert summary.error is None
    assert sorted(quarantined(hub)) == [
        ("GA20241103000005", "raw", "/category"),
        ("GA20241103000006", "raw", "/purchaseTime"),
        ("GA20241104000010", "normalize", "/buyerIdNo"),
    ]
    records = outbox(hub)
    assert {r["activity"]["details"]["energy_grade"] for r in records} == {1}
    assert all(r["quantification"]["methodology_id"].startswith("tph.appliance.green.") for r in records)
    assert cursor(hub, "green_appliances") == "eyJ2IjoxLCJvIjoxMn0"


def test_sealed_water_pages_are_opened_and_build_each_households_baseline(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    hub = hub_factory(table(page_size=5))
    summary, _ = replay(router, hub, "water_usage_sealed", "water_usage")
    assert (summary.pages, summary.pulled, summary.inserted, summary.quarantined, summary.error) == (3, 13, 2, 2, None)
    assert sorted(quarantined(hub)) == [
        ("WU20241102000004-R", "normalize", "/usageDate"),
        ("WU20241104000011", "raw", "/peakUsageM3"),
    ]
    for record in outbox(hub):
        baseline = record["quantification"]["baseline"]
        assert baseline["method"].startswith("trailing mean of the household's peak usage on 3 of the previous 7 days")
        assert record["activity"]["quantity"] < baseline["quantity"]
        assert record["period"]["start"] == "2024-11-04T00:00:00+08:00"
    state = hub.store.load_checkpoint("provincial_bigdata", "water_usage").state
    assert len(state["households"]) == 3


def test_gas_readings_use_the_utilitys_baseline_when_sent(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    hub = hub_factory(table(page_size=6))
    summary, _ = replay(router, hub, "gas_usage_pages", "gas_usage")
    assert (summary.pulled, summary.inserted, summary.quarantined) == (12, 4, 1)
    assert quarantined(hub) == [("GU20241102000003", "raw", "/usageDate")]
    methods = {r["quantification"]["baseline"]["method"] for r in outbox(hub)}
    assert any(m.startswith("partner: utility: household peak-hour mean") for m in methods)


def test_numbered_pv_pages_keep_a_page_and_skip_cursor(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    hub = hub_factory(table(page_size=5))
    summary, _ = replay(router, hub, "rooftop_pv_numbered_pages", "rooftop_pv")
    assert (summary.pages, summary.pulled, summary.inserted, summary.quarantined) == (3, 12, 11, 1)
    assert quarantined(hub) == [("PVG20241104000011", "normalize", "/generationKwh")]
    assert cursor(hub, "rooftop_pv") == {"page": 3, "skip": 2}


def test_http_429_is_retried_after_the_gateways_retry_after(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    sleep = FakeSleep()
    hub = hub_factory(table(page_size=50), sleep=sleep)
    summary, _ = replay(router, hub, "rate_limited_429", "green_appliances")
    assert summary.error is None and summary.inserted > 0
    assert sleep.waits == [3.0]


def test_http_503_is_retried_with_backoff(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    sleep = FakeSleep()
    hub = hub_factory(table(page_size=50, retry_initial_backoff=0.5), sleep=sleep)
    summary, _ = replay(router, hub, "server_error_503", "gas_usage")
    assert summary.error is None and summary.pulled == 12
    assert len(sleep.waits) == 2
    assert 0.5 <= sleep.waits[0] <= 1.5 and 1.0 <= sleep.waits[1] <= 2.0


def test_system_busy_codes_at_http_200_are_retried(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    sleep = FakeSleep()
    hub = hub_factory(table(page_size=50), sleep=sleep)
    summary, _ = replay(router, hub, "system_busy_code", "rooftop_pv")
    assert summary.error is None and summary.inserted == 12
    assert len(sleep.waits) == 2
    assert hub.adapter("provincial_bigdata").gateway.stats.code_retries == 2  # type: ignore[attr-defined]


def test_an_expired_token_code_fetches_a_new_token_and_the_run_completes(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    hub = hub_factory(table(page_size=6))
    summary, cassette = replay(router, hub, "token_expired_code", "green_appliances")
    assert (summary.pages, summary.pulled, summary.error) == (2, 12, None)
    token_calls = [r for r in cassette.requests if r.url.path == "/auth/v1/token"]
    assert len(token_calls) == 2
    assert cassette.requests[-1].headers["Authorization"] == "Bearer sandbox-token-2"


def test_a_bad_signature_stops_the_run_with_the_gateways_code_and_message(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    hub = hub_factory(table())
    summary, _ = replay(router, hub, "bad_signature", "green_appliances")
    assert summary.error == (
        "provincial_bigdata: token endpoint: POST /auth/v1/token: gateway code 3001 (signature invalid): "
        "签名错误: signature does not match the canonical request"
    )
    assert (summary.pages, summary.inserted) == (0, 0)
    (status,) = hub.store.stream_status()
    assert status.cursor is None and status.last_error == summary.error


def test_an_empty_page_commits_nothing_but_its_cursor(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    hub = hub_factory(table(page_size=50))
    summary, _ = replay(router, hub, "empty_page", "green_appliances")
    assert (summary.pages, summary.pulled, summary.inserted, summary.error) == (1, 0, 0, None)
    assert cursor(hub, "green_appliances") == "eyJ2IjoxLCJvIjowfQ"


def test_a_bad_integrity_tag_stores_nothing_and_names_the_dataset(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    hub = hub_factory(table(page_size=50))
    summary, _ = replay(router, hub, "bad_integrity_tag", "water_usage")
    assert summary.error is not None
    assert summary.error.startswith(
        "provincial_bigdata: dataset 'water_usage': GET /share/v1/datasets/water_usage/records"
    )
    assert "integrity tag (signData, HMAC-SM3) does not verify" in summary.error
    assert (summary.pages, summary.pulled) == (0, 0)
    assert outbox(hub) == [] and hub.store.quarantine_list() == []
    assert cursor(hub, "water_usage") is None


def test_a_wrong_sm4_key_is_an_error_not_garbage_records(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    env = {
        "PBD_APP_SECRET": "x",
        "PBD_SM4_KEY": "00" * 16,
        "PBD_MAC_KEY": "c4e1a7b39d2f5e8a0b6c1d4f7e9a2b5c8d0e3f6a9b1c4d7e",
    }
    hub = hub_factory(table(page_size=5), env=env)
    summary, _ = replay(router, hub, "water_usage_sealed", "water_usage", all_used=False)
    assert summary.error is not None and "the tag verified but" in summary.error and "SM4 key" in summary.error
    assert outbox(hub) == []


def test_each_fault_case_has_a_cassette() -> None:
    names = {p.stem for p in CASSETTES.glob("*.json")}
    assert {
        "rate_limited_429",
        "server_error_503",
        "token_expired_code",
        "bad_signature",
        "green_appliances_with_bad_items",
        "empty_page",
        "bad_integrity_tag",
    } <= names
