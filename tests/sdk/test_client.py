"""PartnerClient against a Hefei transit operator's API, replayed with respx: retries, Retry-After, OAuth2, errors."""

from __future__ import annotations

import asyncio
import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from tanpuhui.sdk import (
    OAuth2ClientCredentials,
    PartnerAuthError,
    PartnerClient,
    PartnerResponseError,
    PartnerUnavailable,
    RetryPolicy,
)
from tanpuhui.testing import SleepRecorder as FakeSleep

BASE = "https://api.transit.hf.example.cn"
TOKEN_PATH = "/oauth2/token"
TRIPS = "/v1/trips"
PAGE = {"items": [{"trip_id": "HF-M1-20240501-000123", "km": 8.4}], "next": "c-000124"}
OAUTH = OAuth2ClientCredentials(token_url=BASE + TOKEN_PATH, client_id="anhui-hub", client_secret="hf-transit-2024")


def token(value: str) -> httpx.Response:
    return httpx.Response(200, json={"access_token": value, "token_type": "Bearer", "expires_in": 1800})


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def plain(sleep: FakeSleep, attempts: int = 5) -> PartnerClient:
    return PartnerClient(BASE, name="transit_card", retry=RetryPolicy(attempts=attempts), sleep=sleep)


def with_oauth(sleep: FakeSleep) -> PartnerClient:
    return PartnerClient(BASE, name="transit_card", oauth=OAUTH, sleep=sleep)


def get_trips(client: PartnerClient) -> Any:
    return asyncio.run(_get_and_close(client, TRIPS))


async def _get_and_close(client: PartnerClient, url: str, times: int = 1) -> Any:
    try:
        results = [await client.get_json(url) for _ in range(times)]
        return results[0] if times == 1 else results
    finally:
        await client.aclose()


# -- retries ------------------------------------------------------------------------------------------------


def test_503_then_200_is_retried(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get(TRIPS).mock(side_effect=[httpx.Response(503), httpx.Response(200, json=PAGE)])
        client = plain(sleep)
        assert get_trips(client) == PAGE
    assert route.call_count == 2
    assert client.stats.retries == 1
    assert client.stats.by_status == {503: 1, 200: 1}


def test_backoff_without_retry_after_starts_near_the_initial_wait(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(side_effect=[httpx.Response(502), httpx.Response(200, json=PAGE)])
        get_trips(plain(sleep))
    assert len(sleep.waits) == 1
    assert 0.5 <= sleep.waits[0] <= 1.5


def test_retry_after_seconds_are_honoured(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(
            side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json=PAGE)]
        )
        assert get_trips(plain(sleep)) == PAGE
    assert sleep.waits == [7.0]


def test_retry_after_http_date_is_honoured(sleep: FakeSleep) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=45), usegmt=True)
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(
            side_effect=[httpx.Response(503, headers={"Retry-After": when}), httpx.Response(200, json=PAGE)]
        )
        get_trips(plain(sleep))
    assert len(sleep.waits) == 1
    assert 40 < sleep.waits[0] <= 45


def test_retry_after_is_capped(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(
            side_effect=[httpx.Response(503, headers={"Retry-After": "86400"}), httpx.Response(200, json=PAGE)]
        )
        get_trips(plain(sleep))
    assert sleep.waits == [RetryPolicy().max_retry_after]


def test_gives_up_after_the_attempts_with_partner_unavailable_naming_the_url(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get(TRIPS).mock(return_value=httpx.Response(503))
        with pytest.raises(PartnerUnavailable) as info:
            get_trips(plain(sleep, attempts=3))
    assert route.call_count == 3
    assert len(sleep.waits) == 2
    message = str(info.value)
    assert "transit_card" in message
    assert f"GET {TRIPS}" in message
    assert "3 attempts" in message
    assert "HTTP 503" in message


def test_timeouts_are_retried(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get(TRIPS).mock(
            side_effect=[
                httpx.ReadTimeout("read timed out"),
                httpx.ConnectTimeout("connect"),
                httpx.Response(200, json=PAGE),
            ]
        )
        assert get_trips(plain(sleep)) == PAGE
    assert route.call_count == 3


def test_connection_errors_are_retried(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(side_effect=[httpx.ConnectError("connection refused"), httpx.Response(200, json=PAGE)])
        assert get_trips(plain(sleep)) == PAGE


def test_timeouts_until_the_end_give_partner_unavailable(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(side_effect=httpx.ReadTimeout("read timed out"))
        with pytest.raises(PartnerUnavailable, match="timeout"):
            get_trips(plain(sleep, attempts=2))


def test_404_is_a_response_error_and_not_retried(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get(TRIPS).mock(return_value=httpx.Response(404, json={"code": "404", "msg": "no such page"}))
        with pytest.raises(PartnerResponseError, match="404"):
            get_trips(plain(sleep))
    assert route.call_count == 1
    assert sleep.waits == []


def test_non_json_200_is_a_response_error_naming_the_url(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(return_value=httpx.Response(200, text="<html>系统维护中</html>"))
        with pytest.raises(PartnerResponseError) as info:
            get_trips(plain(sleep))
    assert f"{BASE}{TRIPS}" in str(info.value)
    assert "not JSON" in str(info.value)


def test_403_is_an_auth_error(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.get(TRIPS).mock(return_value=httpx.Response(403, json={"code": "403", "msg": "appId not authorised"}))
        with pytest.raises(PartnerAuthError, match="403"):
            get_trips(plain(sleep))


# -- OAuth2 client credentials ------------------------------------------------------------------------------


def test_token_is_fetched_once_for_several_requests(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        token_route = mock.post(TOKEN_PATH).mock(return_value=token("tok-1"))
        trips = mock.get(TRIPS).mock(return_value=httpx.Response(200, json=PAGE))
        asyncio.run(_get_and_close(with_oauth(sleep), TRIPS, times=3))
    assert token_route.call_count == 1
    assert [c.request.headers["authorization"] for c in trips.calls] == ["Bearer tok-1"] * 3


def test_token_request_uses_client_credentials_with_basic_auth(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        token_route = mock.post(TOKEN_PATH).mock(return_value=token("tok-1"))
        mock.get(TRIPS).mock(return_value=httpx.Response(200, json=PAGE))
        get_trips(with_oauth(sleep))
    request = token_route.calls[0].request
    assert b"grant_type=client_credentials" in request.content
    assert request.headers["authorization"].startswith("Basic ")


def test_401_mid_run_refetches_the_token_once_and_retries(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        token_route = mock.post(TOKEN_PATH).mock(side_effect=[token("tok-1"), token("tok-2")])
        trips = mock.get(TRIPS).mock(
            side_effect=[httpx.Response(200, json=PAGE), httpx.Response(401), httpx.Response(200, json=PAGE)]
        )
        client = with_oauth(sleep)
        assert asyncio.run(_get_and_close(client, TRIPS, times=2)) == [PAGE, PAGE]
    assert token_route.call_count == 2
    assert [c.request.headers["authorization"] for c in trips.calls] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    assert client.stats.token_fetches == 2


def test_second_401_after_a_fresh_token_is_an_auth_error(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        token_route = mock.post(TOKEN_PATH).mock(side_effect=[token("tok-1"), token("tok-2")])
        mock.get(TRIPS).mock(return_value=httpx.Response(401, json={"error": "invalid_token"}))
        with pytest.raises(PartnerAuthError, match="401"):
            get_trips(with_oauth(sleep))
    assert token_route.call_count == 2


def test_token_endpoint_invalid_client_is_an_auth_error_naming_the_client(sleep: FakeSleep) -> None:
    refused = httpx.Response(401, json={"error": "invalid_client", "error_description": "Client authentication failed"})
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.post(TOKEN_PATH).mock(return_value=refused)
        trips = mock.get(TRIPS).mock(return_value=httpx.Response(200, json=PAGE))
        with pytest.raises(PartnerAuthError) as info:
            get_trips(with_oauth(sleep))
    message = str(info.value)
    assert "anhui-hub" in message
    assert "invalid_client" in message
    assert BASE + TOKEN_PATH in message
    assert "hf-transit-2024" not in message
    assert trips.call_count == 0


def test_token_endpoint_503_is_retried(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        token_route = mock.post(TOKEN_PATH).mock(side_effect=[httpx.Response(503, text="busy"), token("tok-1")])
        mock.get(TRIPS).mock(return_value=httpx.Response(200, json=PAGE))
        assert get_trips(with_oauth(sleep)) == PAGE
    assert token_route.call_count == 2


def test_token_endpoint_down_until_the_end_gives_partner_unavailable(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.post(TOKEN_PATH).mock(return_value=httpx.Response(502, text="<html>Bad Gateway</html>"))
        with pytest.raises(PartnerUnavailable, match="token endpoint"):
            get_trips(PartnerClient(BASE, name="transit_card", oauth=OAUTH, retry=RetryPolicy(attempts=2), sleep=sleep))


def test_token_endpoint_400_without_oauth_error_body_is_an_auth_error(sleep: FakeSleep) -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.post(TOKEN_PATH).mock(return_value=httpx.Response(400, text="<html>Bad Request</html>"))
        with pytest.raises(PartnerAuthError, match="400"):
            get_trips(with_oauth(sleep))
