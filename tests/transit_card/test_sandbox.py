"""The sandbox partner: deterministic realistic data, the partner API's auth and paging, faults on demand."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tanpuhui.adapters.transit_card import Network, TransactionsStream, TransitCardAdapter
from tanpuhui.adapters.transit_card.sandbox import BAD_KINDS, SandboxPartner, TransitSandbox, hefei_network
from tanpuhui.sdk import HttpOptions, is_valid_resident_id

from .conftest import TRIP, FakeSleep, make_ctx, make_settings, pull


def _call(partner: SandboxPartner, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=partner.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            return [await client.request(method, url, **kwargs) for method, url, kwargs in requests]

    return asyncio.run(go())


def _token(partner: SandboxPartner) -> str:
    (response,) = _call(
        partner,
        [
            (
                "POST",
                "/oauth/token",
                {"data": {"grant_type": "client_credentials"}, "auth": (partner.client_id, partner.client_secret)},
            )
        ],
    )
    return str(response.json()["access_token"])


def _bearer(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def _all_pages(partner: SandboxPartner, limit: int) -> list[dict[str, Any]]:
    token = _token(partner)
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        (response,) = _call(partner, [("GET", "/v1/transactions", {"params": params, **_bearer(token)})])
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if not pages[-1]["has_more"]:
            return pages


# -- data -------------------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_dataset_and_another_seed_another() -> None:
    assert SandboxPartner(300, 7).dataset.items == SandboxPartner(300, 7).dataset.items
    assert SandboxPartner(300, 7).dataset.items != SandboxPartner(300, 8).dataset.items


def test_transactions_are_ordered_by_deal_time_with_unique_ids() -> None:
    items = SandboxPartner(2000, 7).dataset.items
    times = [
        datetime.fromisoformat(i["deal_time"] if "+" in i["deal_time"] else i["deal_time"] + "+08:00") for i in items
    ]
    assert times == sorted(times)
    assert len({i["txn_id"] for i in items}) == len(items)


def test_metro_journeys_are_tap_in_tap_out_pairs_and_bus_journeys_single_taps() -> None:
    dataset = SandboxPartner(2000, 7, bad={}).dataset
    kinds = [i["deal_type"] for i in dataset.items]
    assert kinds.count("metro_in") == kinds.count("metro_out") > 0
    assert kinds.count("metro_in") + kinds.count("bus") == 2000
    assert 0.5 < kinds.count("metro_in") / 2000 < 0.7


def test_identifiers_are_synthetic() -> None:
    items = SandboxPartner(2000, 7).dataset.items
    cards = {i["card_no"] for i in items if "card_no" in i}
    assert all(c.startswith(("9900", "QR")) and not is_valid_resident_id(c) for c in cards)
    mobiles = {i["account_mobile"] for i in items if "account_mobile" in i}
    assert mobiles and all(m.startswith("199") and len(m) == 11 for m in mobiles)


def test_every_item_except_the_schema_breaking_bad_ones_satisfies_the_trip_schema() -> None:
    dataset = SandboxPartner(1500, 7).dataset
    invalid = {i["txn_id"] for i in dataset.items if not TRIP.is_valid(i)}
    assert invalid == set(dataset.bad["no_offset"] + dataset.bad["missing_card"] + dataset.bad["unknown_deal_type"])


def test_bad_items_default_to_one_per_thousand_trips_of_each_kind() -> None:
    dataset = SandboxPartner(3000, 7).dataset
    assert {kind: len(ids) for kind, ids in dataset.bad.items()} == dict.fromkeys(BAD_KINDS, 3)


def test_bad_items_can_be_chosen_or_switched_off() -> None:
    assert SandboxPartner(500, 7, bad={}).dataset.bad == {k: [] for k in BAD_KINDS}
    chosen = SandboxPartner(500, 7, bad={"orphan_tap_out": 2}).dataset.bad
    assert len(chosen["orphan_tap_out"]) == 2 and sum(map(len, chosen.values())) == 2
    with pytest.raises(ValueError, match="unknown bad item kinds"):
        SandboxPartner(10, 7, bad={"teleport": 1})


def test_the_network_is_hefei_like_and_valid() -> None:
    doc = hefei_network()
    network = Network.from_document(doc)
    metro = [line for line in doc["lines"] if line["mode"] == "metro"]
    assert len(metro) == 5 and all(15 <= len(line["stops"]) <= 25 for line in metro)
    assert len(network.bus_lines) == 20
    assert network.same_station("M1-03", "M2-13")  # 大东门
    assert network.metro_km("M1-01", "M5-15") is not None  # every line reachable


def test_five_thousand_trips_are_generated_in_well_under_a_second() -> None:
    started = time.perf_counter()
    partner = SandboxPartner(5000, 7)
    assert time.perf_counter() - started < 1.5
    assert len(partner.dataset.items) > 8000


# -- the API ----------------------------------------------------------------------------------------------------


def test_the_token_endpoint_refuses_a_wrong_secret() -> None:
    partner = SandboxPartner(10, 7)
    (response,) = _call(
        partner,
        [("POST", "/oauth/token", {"data": {"grant_type": "client_credentials"}, "auth": (partner.client_id, "nope")})],
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_the_token_endpoint_accepts_client_secret_post_too() -> None:
    partner = SandboxPartner(10, 7)
    form = {"grant_type": "client_credentials", "client_id": partner.client_id, "client_secret": partner.client_secret}
    (response,) = _call(partner, [("POST", "/oauth/token", {"data": form})])
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer" and response.json()["expires_in"] == 1800


def test_api_calls_need_a_live_token() -> None:
    partner = SandboxPartner(10, 7)
    token = _token(partner)
    none, ok = _call(partner, [("GET", "/v1/network", {}), ("GET", "/v1/network", _bearer(token))])
    assert none.status_code == 401 and 'error="invalid_token"' in none.headers["www-authenticate"]
    assert ok.status_code == 200 and ok.json()["version"] == "hf-2024.11"


def test_revoked_tokens_are_refused() -> None:
    partner = SandboxPartner(10, 7)
    token = _token(partner)
    partner.revoke_tokens()
    (response,) = _call(partner, [("GET", "/v1/transactions", _bearer(token))])
    assert response.status_code == 401 and partner.stats.unauthorized == 1


def test_pages_concatenate_to_the_dataset_and_the_last_says_no_more() -> None:
    partner = SandboxPartner(400, 7)
    pages = _all_pages(partner, limit=100)
    assert [item for page in pages for item in page["data"]] == partner.dataset.items
    assert [page["has_more"] for page in pages][-1] is False and all(p["has_more"] for p in pages[:-1])


def test_limit_is_capped_by_the_page_size_cap() -> None:
    partner = SandboxPartner(400, 7, page_size_cap=50)
    pages = _all_pages(partner, limit=5000)
    assert max(len(p["data"]) for p in pages) == 50


def test_a_cursor_the_api_did_not_issue_is_a_400() -> None:
    partner = SandboxPartner(10, 7)
    token = _token(partner)
    (response,) = _call(partner, [("GET", "/v1/transactions", {"params": {"cursor": "bogus!"}, **_bearer(token)})])
    assert response.status_code == 400 and response.json()["error"] == "invalid_cursor"


def test_hidden_transactions_appear_after_publish_from_the_last_cursor() -> None:
    partner = SandboxPartner(100, 7, visible=20)
    (first,) = _all_pages(partner, limit=50)
    assert len(first["data"]) == 20 and first["has_more"] is False
    partner.publish()
    token = _token(partner)
    (rest,) = _call(
        partner, [("GET", "/v1/transactions", {"params": {"cursor": first["next_cursor"]}, **_bearer(token)})]
    )
    assert rest.json()["data"][0] == partner.dataset.items[20]


def test_fail_every_answers_every_nth_transactions_request_with_a_500() -> None:
    partner = SandboxPartner(10, 7, fail_every=2)
    token = _token(partner)
    answers = _call(partner, [("GET", "/v1/transactions", _bearer(token))] * 4)
    assert [r.status_code for r in answers] == [200, 500, 200, 500]
    assert partner.stats.faults == {500: 2}


def test_throttle_every_answers_429_with_retry_after() -> None:
    partner = SandboxPartner(10, 7, throttle_every=3, retry_after=2)
    token = _token(partner)
    answers = _call(partner, [("GET", "/v1/transactions", _bearer(token))] * 3)
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "2"


def test_fail_next_queues_one_off_answers() -> None:
    partner = SandboxPartner(10, 7)
    partner.fail_next(503, count=2)
    token = _token(partner)
    answers = _call(partner, [("GET", "/v1/transactions", _bearer(token))] * 3)
    assert [r.status_code for r in answers] == [503, 503, 200]


def test_stats_count_requests_and_bad_items_served() -> None:
    partner = SandboxPartner(2000, 7)
    _all_pages(partner, limit=500)
    stats = partner.stats
    assert stats.requests == stats.token_requests + stats.transactions_requests == 1 + 7
    assert stats.items_served == len(partner.dataset.items)
    assert stats.bad_items == 2 * len(BAD_KINDS)


# -- on loopback, with the adapter -------------------------------------------------------------------------------


def test_the_sandbox_serves_on_an_ephemeral_loopback_port_until_stopped() -> None:
    with TransitSandbox(trips=20, seed=7) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        port = int(sandbox.url.rsplit(":", 1)[1])
        response = httpx.post(
            f"{sandbox.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(sandbox.client_id, sandbox.client_secret),
        )
        assert response.status_code == 200
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        pass


def test_a_pull_of_the_whole_dataset_ends_as_the_dataset_expects() -> None:
    with TransitSandbox(trips=2000, seed=7, throttle_every=4) as sandbox:
        sleep = FakeSleep()
        adapter = TransitCardAdapter(make_settings(**sandbox.settings(page_size=250)), HttpOptions(sleep=sleep))
        stream = adapter.stream("transactions")
        assert isinstance(stream, TransactionsStream)

        async def go() -> Any:
            try:
                return await pull(stream, make_ctx())
            finally:
                await adapter.aclose()

        pulled = asyncio.run(go())
        expected = sandbox.dataset.expected()
    assert pulled.items == expected["items"]
    assert len(pulled.records) == expected["records"]
    assert len(pulled.schema_invalid) == expected["schema_invalid"]
    assert len(pulled.rejected) == expected["rejected"]
    assert len(pulled.given_up) == expected["abandoned"]
    assert sleep.waits and set(sleep.waits) == {1.0}  # the sandbox's Retry-After
    assert sandbox.stats.bad_items == 2 * len(BAD_KINDS)
