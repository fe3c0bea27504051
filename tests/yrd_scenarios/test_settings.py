"""``[adapters.yrd_scenarios]``: what a hub.toml may say, and the errors it gets when it says it wrong."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tanpuhui.adapters.yrd_scenarios import EndpointSettings, YrdScenariosAdapter, YrdScenariosSettings, plugin
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import ConfigError, WebhookSigner

from .conftest import KEYS, WEBHOOK_SECRET, HubFactory, metro_record, settings_dict


def config(table: dict[str, Any], environ: dict[str, str] | None = None) -> HubConfig:
    return HubConfig.from_dict({"adapters": {"yrd_scenarios": table}}, source="hub.toml", environ=environ or {})


def adapter_from(table: dict[str, Any], environ: dict[str, str] | None = None) -> YrdScenariosAdapter:
    from tanpuhui.hub.hub import Hub

    hub = Hub(
        config(table, environ), plugins=load_plugins([plugin], entry_points=False), pseudonymiser=KEYS, store=_NoStore()
    )
    found = hub.adapter("yrd_scenarios")
    assert isinstance(found, YrdScenariosAdapter)
    return found


class _NoStore:
    """Settings tests never touch the store."""

    def close(self) -> None:
        return None


def env_table(**changes: Any) -> dict[str, Any]:
    table = settings_dict(**changes)
    table["endpoints"]["exchange"]["client_secret"] = {"env": "YRD_CLIENT_SECRET"}
    table["webhook_secrets"] = [{"env": "YRD_WEBHOOK_SECRET"}]
    return table


ENV = {"YRD_CLIENT_SECRET": "s3cr3t", "YRD_WEBHOOK_SECRET": WEBHOOK_SECRET}


def test_the_client_secret_must_be_an_environment_reference() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("adapters.yrd_scenarios.endpoints.exchange.client_secret holds a literal")
    ):
        config(settings_dict(webhook_secrets=[]))


def test_webhook_secrets_must_be_environment_references() -> None:
    table = env_table()
    table["webhook_secrets"] = [WEBHOOK_SECRET]
    with pytest.raises(ConfigError, match=r"adapters.yrd_scenarios.webhook_secrets.0 holds a literal secret"):
        config(table, ENV)


def test_secrets_resolve_from_the_environment() -> None:
    adapter = adapter_from(env_table(), ENV)
    assert adapter.config.endpoints["exchange"].client_secret.get_secret_value() == "s3cr3t"
    assert adapter.config.webhook_secrets == [WEBHOOK_SECRET]


def test_an_endpoint_serving_an_unknown_platform_is_a_config_error() -> None:
    table = env_table()
    table["endpoints"]["exchange"]["platforms"] = ["shanghai", "hainan"]
    with pytest.raises(ConfigError, match=re.escape("endpoints.exchange.platforms: hainan not among platforms")):
        adapter_from(table, ENV)


def test_a_recognition_entry_that_is_not_a_methodology_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("recognition.SHCER-RAIL-2024: 'Metro!' is not a methodology id")):
        adapter_from(env_table(recognition={"SHCER-RAIL-2024": "Metro!"}), ENV)


def test_a_misspelt_key_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("adapters.yrd_scenarios.recognise: Extra inputs are not permitted")
    ):
        adapter_from(env_table(recognise={}), ENV)


def test_an_environment_variable_overrides_a_setting() -> None:
    environ = {**ENV, "TANPUHUI__ADAPTERS__YRD_SCENARIOS__PAGE_SIZE": "50"}
    assert adapter_from(env_table(), environ).config.page_size == 50


def test_the_token_url_defaults_to_the_endpoints_oauth_token() -> None:
    settings = YrdScenariosSettings.model_validate(settings_dict())
    assert settings.endpoints["exchange"].token_url == "https://yrd-exchange.sandbox.example/oauth/token"


def test_the_recognition_table_is_empty_unless_configured() -> None:
    settings = YrdScenariosSettings.model_validate({})
    assert settings.recognition == {} and settings.scenario_methodologies == {}
    assert sorted(settings.platforms) == ["jiangsu", "shanghai", "zhejiang"]
    assert settings.subject_order == ["mobile", "resident_id"]


def test_a_push_only_deployment_needs_no_endpoint(hub_factory: HubFactory) -> None:

    hub = hub_factory(settings_dict(endpoints={}))
    (summary,) = asyncio.run(hub.pull("yrd_scenarios", "records"))
    assert summary.error is not None
    assert "no [adapters.yrd_scenarios.endpoints.NAME] table, so there is nothing to pull" in summary.error
    body = orjson.dumps([metro_record()])
    result = hub.receive("yrd_scenarios", "records_push", WebhookSigner(WEBHOOK_SECRET).headers("m1", body), body).page
    assert result.inserted == 1


def test_the_plugin_registers_the_adapter_with_its_schemas() -> None:
    plugins = load_plugins([plugin], entry_points=False)
    cls = plugins.adapter("yrd_scenarios")
    assert cls is YrdScenariosAdapter
    assert sorted(cls.schemas) == ["yrd-record", "yrd-scenario"]
    assert [s.name for s in cls.stream_types] == ["catalog", "records", "records_push"]


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "adapters" / "yrd_scenarios.md").read_text(encoding="utf-8")
    missing = [f for f in YrdScenariosSettings.model_fields if f"`{f}`" not in doc]
    missing += [f for f in EndpointSettings.model_fields if f"`endpoints.NAME.{f}`" not in doc and f" `{f}`" not in doc]
    assert missing == []
