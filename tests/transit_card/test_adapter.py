"""The adapter as a plugin: registration, settings, schemas, the one partner client."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from pydantic import ValidationError

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter, TransitCardSettings
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import AdapterSettings, ConfigError, HttpOptions

from .conftest import BASE_URL, make_settings


def test_the_adapter_is_registered_through_the_tanpuhui_entry_point() -> None:
    assert load_plugins().adapter("transit_card") is TransitCardAdapter


def test_it_provides_one_pull_stream_of_transit_card_trips() -> None:
    (stream,) = TransitCardAdapter(make_settings()).streams()
    assert isinstance(stream, TransactionsStream)
    assert (stream.name, stream.schema, stream.id_field) == ("transactions", "transit-card-trip", "txn_id")


def test_it_ships_the_trip_and_network_schemas() -> None:
    assert set(TransitCardAdapter.schemas) == {"transit-card-trip", "transit-card-network"}
    assert (
        TransitCardAdapter.schemas["transit-card-trip"]["properties"]["account_mobile"]["x-personal-data"] == "mobile"
    )


def test_settings_defaults() -> None:
    settings = make_settings(base_url=f"{BASE_URL}/")
    assert settings.base_url == BASE_URL
    assert settings.token_url == f"{BASE_URL}/oauth/token"
    assert (settings.page_size, settings.max_journey_minutes, settings.region) == (500, 240, "340100")
    assert (settings.retry_attempts, settings.retry_initial_backoff, settings.max_retry_after) == (5, 0.5, 120.0)


def test_the_client_secret_never_shows_in_settings_output() -> None:
    settings = make_settings()
    assert "s3cr3t-for-tests" not in repr(settings) and "s3cr3t-for-tests" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("page_size", 0, "greater than or equal to 1"),
        ("page_size", 5001, "less than or equal to 5000"),
        ("region", "3401", "should match pattern"),
        ("base_url", "transit.example.cn", "must be an http(s) URL"),
        ("page_sise", 100, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)) as err:
        make_settings(**{key: value})
    assert key in str(err.value)


def test_other_settings_types_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="settings must be TransitCardSettings"):
        TransitCardAdapter(AdapterSettings())


def test_one_partner_client_goes_through_the_hubs_transport() -> None:
    seen: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t-1", "token_type": "Bearer", "expires_in": 1800})
        return httpx.Response(200, json={"version": "v", "lines": []})

    adapter = TransitCardAdapter(make_settings(), HttpOptions(transport=httpx.MockTransport(partner)))

    async def go() -> None:
        try:
            assert adapter.client is adapter.client
            await adapter.client.get_json("/v1/network")
        finally:
            await adapter.aclose()

    asyncio.run(go())
    assert seen == ["POST /oauth/token", "GET /v1/network"]


def test_settings_validate_from_a_hub_toml_table() -> None:
    table = {"base_url": BASE_URL, "client_id": "anhui-hub", "client_secret": "from-env", "page_size": 200}
    settings = TransitCardSettings.model_validate(table)
    assert settings.page_size == 200 and settings.client_secret.get_secret_value() == "from-env"
