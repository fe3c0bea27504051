"""PartnerSettings, OAuth2Settings, RetrySettings and Adapter.oauth2_client: a partner's client built from hub.toml."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import Field, SecretStr, ValidationError

from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    HttpOptions,
    OAuth2Settings,
    PartnerClient,
    PartnerSettings,
    PartnerUnavailable,
    RetryPolicy,
    RetrySettings,
)

BASE = "https://api.hfwater.example.cn"


class WaterSettings(PartnerSettings):
    """A utility's table: the partner fields and one of its own."""

    page_size: int = Field(default=200, ge=1, le=1000)


class WaterAdapter(Adapter):
    """An adapter that only builds its client."""

    name = "hefei_water"
    version = "0.1.0"
    Settings = WaterSettings


class Partner:
    """The partner's token endpoint and one resource, answering with a 503 as often as asked."""

    def __init__(self, unavailable: int = 0) -> None:
        self.unavailable = unavailable
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t-1", "token_type": "Bearer", "expires_in": 1800})
        if self.unavailable:
            self.unavailable -= 1
            return httpx.Response(503)
        return httpx.Response(200, json={"bills": []})


async def _no_sleep(_: float) -> None:
    return None


def _get(adapter: Adapter, client: PartnerClient) -> object:
    async def run() -> object:
        try:
            return await client.get_json("/api/v2/bills")
        finally:
            await adapter.aclose()

    return asyncio.run(run())


def test_the_token_url_defaults_under_the_base_url_without_its_trailing_slash() -> None:
    settings = WaterSettings(base_url=BASE + "/", client_id="hub", client_secret=SecretStr("s"))
    assert (settings.base_url, settings.token_url) == (BASE, BASE + "/oauth/token")


def test_a_base_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must be an http\(s\) URL, got 'api\.hfwater\.example\.cn'"):
        WaterSettings(base_url="api.hfwater.example.cn", client_id="hub", client_secret=SecretStr("s"))


def test_unknown_keys_are_refused_like_in_every_adapter_table() -> None:
    with pytest.raises(ValidationError, match="retry_atempts"):
        WaterSettings.model_validate({"base_url": BASE, "client_id": "hub", "client_secret": "s", "retry_atempts": 3})


def test_a_subclass_may_make_the_partner_optional() -> None:
    class PushOrPull(PartnerSettings):
        base_url: str = ""
        client_id: str = ""
        client_secret: SecretStr = SecretStr("")

    settings = PushOrPull()
    assert (settings.base_url, settings.token_url) == ("", "")
    with pytest.raises(ValidationError, match=r"must be an http\(s\) URL"):
        PushOrPull(base_url="ftp://x.example")


def test_the_retry_settings_make_the_retry_policy() -> None:
    settings = RetrySettings(retry_attempts=3, retry_initial_backoff=1, retry_max_backoff=8, max_retry_after=60)
    assert settings.retry_policy() == RetryPolicy(attempts=3, initial=1, maximum=8, max_retry_after=60)


def test_the_client_authenticates_as_configured_through_the_hubs_transport() -> None:
    partner = Partner()
    settings = WaterSettings(
        base_url=BASE, client_id="hub", client_secret=SecretStr("s3cret"), auth_method="client_secret_post", scope="r"
    )
    adapter = WaterAdapter(settings, HttpOptions(transport=httpx.MockTransport(partner), sleep=_no_sleep))
    assert _get(adapter, adapter.oauth2_client(settings)) == {"bills": []}
    token, bills = partner.requests
    assert str(token.url) == BASE + "/oauth/token" and "authorization" not in token.headers
    form = parse_qs(token.content.decode())
    assert (form["client_id"], form["client_secret"], form["scope"]) == (["hub"], ["s3cret"], ["r"])
    assert bills.headers["authorization"] == "Bearer t-1"
    assert bills.headers["accept"] == "application/json"


def test_client_secret_basic_is_the_default() -> None:
    partner = Partner()
    settings = WaterSettings(base_url=BASE, client_id="hub", client_secret=SecretStr("s3cret"))
    adapter = WaterAdapter(settings, HttpOptions(transport=httpx.MockTransport(partner), sleep=_no_sleep))
    _get(adapter, adapter.oauth2_client(settings))
    assert partner.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"hub:s3cret").decode()


def test_the_client_retries_as_the_settings_say() -> None:
    partner = Partner(unavailable=10)
    settings = WaterSettings(base_url=BASE, client_id="hub", client_secret=SecretStr("s"), retry_attempts=3)
    adapter = WaterAdapter(settings, HttpOptions(transport=httpx.MockTransport(partner), sleep=_no_sleep))
    client = adapter.oauth2_client(settings)
    with pytest.raises(PartnerUnavailable, match="gave up after 3 attempts"):
        _get(adapter, client)
    assert client.stats.by_status == {503: 3}


def test_endpoint_credentials_take_the_retry_settings_of_the_adapter() -> None:
    class Endpoint(OAuth2Settings):
        records_path: str = "/v1/records"

    class ExchangeSettings(AdapterSettings, RetrySettings):
        endpoints: dict[str, Endpoint] = Field(default_factory=dict)

    class ExchangeAdapter(Adapter):
        name = "yrd_exchange"
        version = "0.1.0"
        Settings = ExchangeSettings

    partner = Partner(unavailable=10)
    settings = ExchangeSettings.model_validate(
        {
            "retry_attempts": 2,
            "timeout": 5,
            "endpoints": {"sh": {"base_url": BASE, "client_id": "c", "client_secret": "s"}},
        }
    )
    adapter = ExchangeAdapter(settings, HttpOptions(transport=httpx.MockTransport(partner), sleep=_no_sleep))
    client = adapter.oauth2_client(settings.endpoints["sh"], settings)
    with pytest.raises(PartnerUnavailable, match="gave up after 2 attempts"):
        _get(adapter, client)
    assert partner.requests[-1].extensions["timeout"]["read"] == 5
