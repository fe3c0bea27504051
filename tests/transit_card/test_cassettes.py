"""Recorded partner traffic replayed through the stream's pages(): paging, resume, retries, auth, bad items."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter
from tanpuhui.sdk import PartnerAuthError, PartnerResponseError, StreamContext
from tanpuhui.testing import Cassette

from .conftest import BASE_URL, CASSETTES, NETWORK, FakeSleep, Pulled, make_ctx, pull

Factory = Callable[..., TransitCardAdapter]


def _cassette(router: respx.MockRouter, name: str) -> Cassette:
    cassette = Cassette.load(CASSETTES / f"{name}.json")
    cassette.mount(router)
    return cassette


def _stream(adapter: TransitCardAdapter) -> TransactionsStream:
    stream = adapter.stream("transactions")
    assert isinstance(stream, TransactionsStream)
    return stream


def _run(adapter: TransitCardAdapter, ctx: StreamContext, cursor: Any = None) -> Pulled:
    async def go() -> Pulled:
        try:
            return await pull(_stream(adapter), ctx, cursor)
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def _txn_ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(i.get("txn_id")) for i in items]


def test_two_pages_then_a_resume_from_the_saved_cursor(router: respx.MockRouter, adapter_factory: Factory) -> None:
    cassette = _cassette(router, "two_pages_then_resume")
    ctx = make_ctx()
    first = _run(adapter_factory(page_size=5), ctx)
    assert first.requests == ["GET /v1/transactions?limit=5", "GET /v1/transactions?limit=5&cursor=eyJ2IjoxLCJvIjo1fQ"]
    assert first.cursors == ["eyJ2IjoxLCJvIjo1fQ", "eyJ2IjoxLCJvIjoxMH0"]
    assert first.items == 10
    # the second page ends with a tap-in whose tap-out the operator has not cleared yet: held, not given up
    assert [t["txn_id"] for t in ctx.state["open"].values()] == ["HF2024110518060409"]
    assert first.given_up == []

    second = _run(adapter_factory(page_size=5), make_ctx(ctx.state), cursor=first.cursors[-1])
    assert second.requests == ["GET /v1/transactions?limit=5&cursor=eyJ2IjoxLCJvIjoxMH0"]
    assert second.cursors == ["eyJ2IjoxLCJvIjoxMn0"]
    ids = [r["source"]["partner_record_id"] for r in second.records]
    assert ids == ["HF2024110518060409+HF202411051817490A", "HF202411051840350B"]
    cassette.assert_all_used()


def test_every_journey_of_the_resumed_pull_is_credited_once(router: respx.MockRouter, adapter_factory: Factory) -> None:
    cassette = _cassette(router, "two_pages_then_resume")
    ctx = make_ctx()
    first = _run(adapter_factory(page_size=5), ctx)
    second = _run(adapter_factory(page_size=5), make_ctx(ctx.state), cursor=first.cursors[-1])
    records = first.records + second.records
    assert len(records) == len({r["record_id"] for r in records}) == 8
    assert [r["scenario"] for r in records].count("metro") == 4
    assert first.rejected == second.rejected == [] and first.given_up == second.given_up == []
    cassette.assert_all_used()


def test_a_429_is_retried_after_the_partners_retry_after(
    router: respx.MockRouter, adapter_factory: Factory, fake_sleep: FakeSleep
) -> None:
    cassette = _cassette(router, "rate_limited_429")
    adapter = adapter_factory(page_size=50)
    pulled = _run(adapter, make_ctx())
    assert fake_sleep.waits == [3.0]
    assert adapter.client.stats.by_status == {429: 1, 200: 2}
    assert len(pulled.records) == 4
    cassette.assert_all_used()


def test_a_partners_retry_after_is_capped_by_max_retry_after(
    router: respx.MockRouter, adapter_factory: Factory, fake_sleep: FakeSleep
) -> None:
    cassette = _cassette(router, "rate_limited_429")
    _run(adapter_factory(page_size=50, max_retry_after=1.5), make_ctx())
    assert fake_sleep.waits == [1.5]
    cassette.assert_all_used()


def test_a_500_is_retried_after_a_short_backoff(
    router: respx.MockRouter, adapter_factory: Factory, fake_sleep: FakeSleep
) -> None:
    cassette = _cassette(router, "server_error_then_success")
    pulled = _run(adapter_factory(page_size=50, retry_initial_backoff=0.5), make_ctx())
    (wait,) = fake_sleep.waits
    assert 0 < wait <= 1.5  # initial backoff plus at most 1 s of jitter
    assert len(pulled.records) == 4
    cassette.assert_all_used()


def test_a_token_revoked_mid_run_is_fetched_again_once_and_the_request_repeated(
    router: respx.MockRouter, adapter_factory: Factory, fake_sleep: FakeSleep
) -> None:
    cassette = _cassette(router, "token_revoked_401")
    adapter = adapter_factory(page_size=5)
    pulled = _run(adapter, make_ctx())
    assert adapter.client.stats.token_fetches == 2
    assert pulled.items == 8 and fake_sleep.waits == []
    tokens = [r.headers["authorization"] for r in cassette.requests if r.url.path == "/v1/transactions"]
    assert tokens == ["Bearer sandbox-token-1", "Bearer sandbox-token-1", "Bearer sandbox-token-2"]
    cassette.assert_all_used()


def test_the_token_request_authenticates_with_http_basic(router: respx.MockRouter, adapter_factory: Factory) -> None:
    cassette = _cassette(router, "rate_limited_429")
    _run(adapter_factory(page_size=50), make_ctx())
    token_request = cassette.requests[0]
    assert token_request.url == httpx.URL(f"{BASE_URL}/oauth/token")
    assert token_request.headers["authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in token_request.content
    cassette.assert_all_used()


def test_malformed_items_are_set_aside_while_the_rest_of_their_page_goes_through(
    router: respx.MockRouter, adapter_factory: Factory
) -> None:
    cassette = _cassette(router, "malformed_items_quarantined")
    pulled = _run(adapter_factory(page_size=50), make_ctx())
    assert pulled.items == 8
    assert _txn_ids(pulled.schema_invalid) == ["HF2024110508084401", "HF2024110508391502", "HF2024110518372207"]
    no_card, recharge, no_offset = pulled.schema_invalid
    assert "card_no" not in no_card
    assert recharge["deal_type"] == "recharge"
    assert no_offset["deal_time"] == "2024-11-05T18:37:22"
    assert [r["source"]["partner_record_id"] for r in pulled.records] == [
        "HF2024110507473600",
        "HF2024110514261403+HF2024110515014004",
        "HF2024110517284505+HF2024110517581306",
    ]
    cassette.assert_all_used()


def test_a_tap_in_without_tap_out_is_given_up_once_later_taps_pass_the_journey_limit(
    router: respx.MockRouter, adapter_factory: Factory
) -> None:
    cassette = _cassette(router, "tap_in_without_tap_out")
    pulled = _run(adapter_factory(page_size=6), make_ctx())
    (given_up,) = pulled.given_up
    assert given_up.partner_record_id == "HF2024110507160901"
    assert given_up.problems[0].message == "metro tap-in without tap-out within 240 min"
    assert "card_no" not in given_up.raw
    # the journey straddling pages 1 and 2 is still paired
    ids = [r["source"]["partner_record_id"] for r in pulled.records]
    assert "HF2024110517385805+HF2024110518122206" in ids
    assert len(pulled.records) == 9 and pulled.rejected == []  # 4 metro journeys, 5 bus trips
    cassette.assert_all_used()


def test_the_network_is_fetched_once_per_run(router: respx.MockRouter, adapter_factory: Factory) -> None:
    cassette = _cassette(router, "tap_in_without_tap_out")
    _run(adapter_factory(page_size=6), make_ctx())
    assert [r.url.path for r in cassette.requests].count("/v1/network") == 1
    cassette.assert_all_used()


# Hand-made partner answers for the failure modes a recording cannot show.


def _token(router: respx.MockRouter) -> None:
    router.post(f"{BASE_URL}/oauth/token").respond(
        json={"access_token": "t-1", "token_type": "Bearer", "expires_in": 1800}
    )


def _collect(adapter: TransitCardAdapter, cursor: Any = None) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return [page async for page in _stream(adapter).pages(make_ctx(), cursor)]
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def test_a_page_repeating_the_requested_cursor_with_more_to_come_stops_the_run(
    router: respx.MockRouter, adapter_factory: Factory
) -> None:
    _token(router)
    router.get(f"{BASE_URL}/v1/transactions").respond(json={"data": [], "next_cursor": "c41", "has_more": True})
    with pytest.raises(PartnerResponseError, match=r"next_cursor is the cursor just requested \('c41'\)"):
        _collect(adapter_factory(), cursor="c41")


def test_an_envelope_without_data_is_a_partner_error(router: respx.MockRouter, adapter_factory: Factory) -> None:
    _token(router)
    router.get(f"{BASE_URL}/v1/transactions").respond(json={"code": "0000", "msg": "ok", "rows": []})
    with pytest.raises(PartnerResponseError, match=r"expected \{\"data\": \[\.\.\.\].*got an object with keys code"):
        _collect(adapter_factory())


def test_has_more_without_a_next_cursor_is_a_partner_error(router: respx.MockRouter, adapter_factory: Factory) -> None:
    _token(router)
    router.get(f"{BASE_URL}/v1/transactions").respond(json={"data": [], "has_more": True})
    with pytest.raises(PartnerResponseError, match="has_more is true but there is no next_cursor"):
        _collect(adapter_factory())


def test_a_bad_distance_table_stops_the_run_naming_the_json_pointer(
    router: respx.MockRouter, adapter_factory: Factory
) -> None:
    _token(router)
    router.get(f"{BASE_URL}/v1/transactions").respond(json={"data": [], "next_cursor": "c1", "has_more": False})
    broken = {**NETWORK, "lines": [{**NETWORK["lines"][2], "avg_trip_km": -1}]}
    router.get(f"{BASE_URL}/v1/network").respond(json=broken)
    with pytest.raises(PartnerResponseError, match=r"transit_card: GET /v1/network: .*/lines/0/avg_trip_km"):
        _collect(adapter_factory())


def test_an_empty_last_page_without_a_cursor_keeps_the_saved_cursor(
    router: respx.MockRouter, adapter_factory: Factory
) -> None:
    _token(router)
    router.get(f"{BASE_URL}/v1/transactions").respond(json={"data": [], "next_cursor": None, "has_more": False})
    router.get(f"{BASE_URL}/v1/network").respond(json=NETWORK)
    (page,) = _collect(adapter_factory(), cursor="c-saved")
    assert page.cursor == "c-saved" and page.items == []


def test_items_that_are_not_objects_reach_the_hub_for_quarantine(
    router: respx.MockRouter, adapter_factory: Factory
) -> None:
    _token(router)
    router.get(f"{BASE_URL}/v1/transactions").respond(json={"data": ["HF1", 7], "next_cursor": "c1", "has_more": False})
    router.get(f"{BASE_URL}/v1/network").respond(json=NETWORK)
    (page,) = _collect(adapter_factory())
    assert page.items == [{"_not_an_object": "HF1"}, {"_not_an_object": 7}]


def test_wrong_client_credentials_are_a_partner_auth_error(router: respx.MockRouter, adapter_factory: Factory) -> None:
    router.post(f"{BASE_URL}/oauth/token").respond(
        401, json={"error": "invalid_client", "error_description": "unknown client or wrong secret"}
    )
    with pytest.raises(PartnerAuthError, match="refused client 'tanpuhui-sandbox'"):
        _collect(adapter_factory())
