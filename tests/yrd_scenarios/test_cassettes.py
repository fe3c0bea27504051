"""Recorded exchanges with the YRD data exchange (tests/cassettes/yrd_scenarios), replayed through the hub."""

from __future__ import annotations

import asyncio
from typing import Any

import respx

from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import recompute
from tanpuhui.testing import Cassette

from .conftest import CASSETTES, REDUCTION, FakeSleep, HubFactory, outbox, settings_dict


def cassette(router: respx.MockRouter, name: str) -> Cassette:
    loaded = Cassette.load(CASSETTES / f"{name}.json")
    loaded.mount(router)
    return loaded


def pull(hub: Hub, stream: str = "records", **kwargs: Any) -> PullSummary:
    (summary,) = asyncio.run(hub.pull("yrd_scenarios", stream, **kwargs))
    return summary


def test_two_pages_then_a_resume_from_the_saved_cursor(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    recorded = cassette(router, "two_pages_then_resume")
    first = pull(hub_factory(settings_dict(page_size=3)))
    assert (first.pages, first.pulled, first.inserted, first.error) == (2, 6, 6, None)
    second = pull(hub_factory(settings_dict(page_size=3)))  # the next run: a new process, a new token
    assert (second.pages, second.pulled, second.inserted, second.duplicates) == (1, 2, 2, 0)
    recorded.assert_all_used()
    resumed = recorded.requests[-1]
    assert resumed.url.params["cursor"] == recorded.interactions[2]["response"]["json"]["data"]["next_cursor"]


def test_a_resumed_pull_forwards_each_record_once_in_feed_order(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    recorded = cassette(router, "two_pages_then_resume")
    hub = hub_factory(settings_dict(page_size=3))
    pull(hub)
    pull(hub_factory(settings_dict(page_size=3)))
    served = [
        f"{i['platform']}:{i['record_id']}"
        for x in recorded.interactions
        if "data" in x["response"].get("json", {})
        for i in x["response"]["json"]["data"]["items"]
    ]
    assert [r["source"]["partner_record_id"] for r in outbox(hub)] == served
    assert len(set(served)) == 8


def test_the_cursor_is_kept_per_endpoint(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    recorded = cassette(router, "two_pages_then_resume")
    hub = hub_factory(settings_dict(page_size=3))
    pull(hub)
    last = recorded.interactions[2]["response"]["json"]["data"]["next_cursor"]
    assert hub.store.load_checkpoint("yrd_scenarios", "records").cursor == {"exchange": last}


def test_a_429_is_retried_after_its_retry_after(
    router: respx.MockRouter, hub_factory: HubFactory, fake_sleep: FakeSleep
) -> None:
    recorded = cassette(router, "rate_limited_429")
    summary = pull(hub_factory())
    assert (summary.error, summary.inserted) == (None, 3)
    assert fake_sleep.waits == [7.0]
    recorded.assert_all_used()


def test_5xx_answers_are_retried_with_backoff(
    router: respx.MockRouter, hub_factory: HubFactory, fake_sleep: FakeSleep
) -> None:
    recorded = cassette(router, "server_error_then_success")
    summary = pull(hub_factory())
    assert (summary.error, summary.inserted) == (None, 3)
    assert len(fake_sleep.waits) == 2 and all(0 < w <= 30 for w in fake_sleep.waits)
    recorded.assert_all_used()


def test_a_partner_that_keeps_failing_stops_the_run_with_its_cursor_unmoved(
    router: respx.MockRouter, hub_factory: HubFactory, fake_sleep: FakeSleep
) -> None:
    recorded = cassette(router, "server_error_gives_up")
    hub = hub_factory()
    summary = pull(hub)
    assert summary.error == "yrd_scenarios: GET /v1/records: gave up after 5 attempts (HTTP 500)"
    assert summary.inserted == 0 and len(fake_sleep.waits) == 4
    (status,) = [s for s in hub.store.stream_status() if s.stream == "records"]
    assert status.cursor is None and status.last_error == summary.error
    recorded.assert_all_used()


def test_an_expired_token_is_fetched_again_once_and_the_page_repeated(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    recorded = cassette(router, "token_expired_401")
    hub = hub_factory(settings_dict(page_size=4))
    summary = pull(hub)
    assert (summary.error, summary.pages, summary.inserted) == (None, 2, 6)
    assert [r.url.path for r in recorded.requests] == [
        "/oauth/token",
        "/v1/records",
        "/v1/records",
        "/oauth/token",
        "/v1/records",
    ]
    assert recorded.requests[4].headers["authorization"] == "Bearer sandbox-token-2"
    recorded.assert_all_used()


def test_the_token_request_authenticates_with_http_basic(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    recorded = cassette(router, "rate_limited_429")
    pull(hub_factory())
    token_request = recorded.requests[0]
    assert token_request.headers["authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in token_request.content


def test_malformed_items_are_quarantined_with_pointers_and_the_page_goes_on(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    cassette(router, "malformed_items_quarantined")
    hub = hub_factory()
    summary = pull(hub)
    assert (summary.pulled, summary.valid, summary.inserted, summary.quarantined) == (9, 6, 4, 3)
    entries = {e.partner_record_id: e for e in hub.store.quarantine_list()}
    assert set(entries) == {"ZJ2024110500000003", "JS2024110500000001", "JS2024110500000005"}
    no_offset = entries["ZJ2024110500000003"]
    assert no_offset.stage == "raw"
    assert {p["pointer"] for p in no_offset.problems} == {"/start_time"}
    bad_id = entries["JS2024110500000001"]
    assert (bad_id.stage, bad_id.problems[0]["pointer"]) == ("normalize", "/resident_id")
    assert "340302********2499 fails the GB 11643 check" in bad_id.problems[0]["message"]
    unknown = entries["JS2024110500000005"]
    assert unknown.problems[0]["pointer"] == "/methodology_code"
    assert "add 'JS-TPH-METRO-2024' to [adapters.yrd_scenarios.recognition]" in unknown.problems[0]["message"]


def test_credited_and_cancelled_items_are_counted_not_quarantined_nor_forwarded(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    cassette(router, "malformed_items_quarantined")
    hub = hub_factory()
    pull(hub)
    state = hub.store.load_checkpoint("yrd_scenarios", "records").state
    assert state["withdrawn"] == {"jiangsu:cancelled": 1, "zhejiang:credited": 1}
    forwarded = {r["origin"]["record_id"] for r in outbox(hub)}
    assert forwarded == {"ZJ2024110500000001", "JS2024110500000003", "JS2024110500000002", "JS2024110500000006"}


def test_recorded_records_are_valid_and_recompute(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    cassette(router, "malformed_items_quarantined")
    hub = hub_factory()
    pull(hub)
    for record in outbox(hub):
        assert list(REDUCTION.iter_errors(record)) == []
        assert recompute(record) == record["quantification"]["reduction_kgco2e"]


def test_an_empty_page_ends_the_run_and_keeps_a_cursor(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    recorded = cassette(router, "empty_page")
    hub = hub_factory()
    summary = pull(hub)
    assert (summary.error, summary.pages, summary.pulled, summary.inserted) == (None, 1, 0, 0)
    cursor = hub.store.load_checkpoint("yrd_scenarios", "records").cursor
    assert cursor == {"exchange": recorded.interactions[1]["response"]["json"]["data"]["next_cursor"]}
    recorded.assert_all_used()


def test_an_envelope_error_code_stops_the_run_naming_code_and_message(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    cassette(router, "envelope_error_code")
    summary = pull(hub_factory())
    assert summary.error == (
        "yrd_scenarios: endpoint exchange: GET /v1/records?limit=500: the exchange answered code '5001': "
        "sandbox fault injection (code 5001)"
    )


def test_configured_success_codes_accept_another_envelope_convention(
    router: respx.MockRouter, hub_factory: HubFactory
) -> None:
    cassette(router, "envelope_error_code")
    summary = pull(hub_factory(settings_dict(success_codes=["0000", "5001"])))
    assert summary.error is not None and "expected data" in summary.error  # accepted code, but no data


def test_the_catalog_reports_scenarios_no_table_covers(router: respx.MockRouter, hub_factory: HubFactory) -> None:
    recorded = cassette(router, "catalog")
    hub = hub_factory()
    summary = pull(hub, "catalog")
    assert (summary.pulled, summary.valid, summary.records, summary.quarantined) == (8, 6, 0, 2)
    gaps = {e.partner_record_id: e.problems for e in hub.store.quarantine_list()}
    assert set(gaps) == {"ZJ-GXDC", "JS-NEV"}
    assert gaps["JS-NEV"][0]["pointer"] == "/methodology_code"
    recorded.assert_all_used()
