"""Shared fixtures for the YRD scenario adapter tests: records as the platforms send them, contexts, hubs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from tanpuhui.adapters.yrd_scenarios import YrdScenariosAdapter, YrdScenariosSettings, plugin
from tanpuhui.adapters.yrd_scenarios.sandbox import sandbox_recognition
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import HttpOptions, Methodology, MethodologyError, Pseudonymiser, StreamContext
from tanpuhui.testing import SleepRecorder as FakeSleep

CASSETTES = Path(__file__).parent.parent / "cassettes" / "yrd_scenarios"
BASE_URL = "https://yrd-exchange.sandbox.example"
KEY = "v1:" + base64.b64encode(bytes(range(1, 33))).decode()
KEYS = Pseudonymiser.parse(KEY)
METHODOLOGIES = {m.id: m for m in BUILTIN_METHODOLOGIES}
RECORD = Draft202012Validator(load_builtin("yrd-record"), format_checker=Draft202012Validator.FORMAT_CHECKER)
REDUCTION = Draft202012Validator(load_builtin("reduction-record"), format_checker=Draft202012Validator.FORMAT_CHECKER)

MOBILE = "19955123456"
RESIDENT_ID = "34052419800101001X"  # valid: GB 11643 check character
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"yrd-webhook-secret-for-tests-0001").decode()

# The tables a deployment would configure (the sandbox's): Shanghai rail and household electricity and Zhejiang bus
# recognised; Shanghai bus, Zhejiang metro and Jiangsu metro re-quantified with our methodologies.
TABLES: dict[str, Any] = sandbox_recognition()


def settings_dict(**overrides: Any) -> dict[str, Any]:
    """``[adapters.yrd_scenarios]`` as plain values (secrets literal: not for HubConfig, see ``hub_config``)."""
    values: dict[str, Any] = {
        "endpoints": {
            "exchange": {
                "base_url": BASE_URL,
                "client_id": "anhui-tanpuhui-sandbox",
                "client_secret": "s3cr3t-for-tests",
                "platforms": ["shanghai", "zhejiang", "jiangsu"],
            }
        },
        "webhook_secrets": [WEBHOOK_SECRET],
        **TABLES,
    }
    values.update(overrides)
    return values


def make_settings(**overrides: Any) -> YrdScenariosSettings:
    return YrdScenariosSettings.model_validate(settings_dict(**overrides))


def methodology(methodology_id: str) -> Methodology:
    """The built-in methodologies, looked up like the hub does (an unknown id is a MethodologyError)."""
    try:
        return METHODOLOGIES[methodology_id]
    except KeyError:
        raise MethodologyError(f"unknown methodology {methodology_id!r}") from None


def make_ctx(stream: str = "records", state: dict[str, Any] | None = None) -> StreamContext:
    return StreamContext(
        adapter="yrd_scenarios",
        adapter_version=YrdScenariosAdapter.version,
        stream=stream,
        pseudonymiser=KEYS,
        methodologies=methodology,
        state=state,
    )


def metro_record(record_id: str = "SH2024110500000017", *, check: bool = True, **changes: Any) -> dict[str, Any]:
    """A Shanghai rail trip of an Anhui resident, as the exchange sends it (a ``yrd-record`` item).

    ``changes`` replace fields (None removes one); ``check=False`` allows a result the schema refuses.
    """
    item: dict[str, Any] = {
        "record_id": record_id,
        "platform": "shanghai",
        "scenario_id": "SH-RAIL",
        "mobile": MOBILE,
        "start_time": "2024-11-05T08:11:00+08:00",
        "end_time": "2024-11-05T08:43:00+08:00",
        "region": "310000",
        "activity_quantity": 12.6,
        "activity_unit": "km",
        "methodology_code": "SHCER-RAIL-2024",
        "methodology_version": "1.0",
        "reduction_kgco2e": 0.7006,
        "status": "active",
        "consent_id": "SH-CNS-000017",
        "updated_at": "2024-11-05T09:00:02+08:00",
    }
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    assert not check or RECORD.is_valid(item), list(RECORD.iter_errors(item))
    return item


def jiangsu_metro(record_id: str = "JS2024110500000042", **changes: Any) -> dict[str, Any]:
    """A Nanjing metro trip from the Jiangsu platform, whose methodology is not recognised (re-quantified)."""
    values: dict[str, Any] = {
        "platform": "jiangsu",
        "scenario_id": "JS-METRO",
        "region": "320100",
        "activity_quantity": 9.8,
        "methodology_code": "JS-TPH-METRO-2024",
        "reduction_kgco2e": 0.4802,
        "consent_id": "JS-CNS-000042",
    }
    return metro_record(record_id, **{**values, **changes})


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def adapter() -> YrdScenariosAdapter:
    return YrdScenariosAdapter(make_settings())


@pytest.fixture
def ctx() -> StreamContext:
    return make_ctx()


HubFactory = Callable[..., Hub]


@pytest.fixture
def hub_factory(tmp_path: Path, fake_sleep: FakeSleep) -> Iterator[HubFactory]:
    """Hubs on one SQLite store in ``tmp_path`` (a second hub is the next process run), with the YRD plugin.

    ``extra_plugins`` adds plugins (the transit card adapter), ``adapters`` adds ``[adapters.*]`` tables,
    ``environ`` the environment the config's ``{ env = ... }`` references resolve from, ``keys`` the pseudonym keys
    (another hub with rotated keys is the next process run after a key rotation).
    """
    hubs: list[Hub] = []

    def make(
        yrd: dict[str, Any] | None = None,
        *,
        extra_plugins: tuple[object, ...] = (),
        adapters: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
        http: HttpOptions | None = None,
        keys: Pseudonymiser = KEYS,
    ) -> Hub:
        env = {"YRD_CLIENT_SECRET": "s3cr3t-for-tests", "YRD_WEBHOOK_SECRET": WEBHOOK_SECRET, **(environ or {})}
        table = yrd if yrd is not None else settings_dict()
        table = orjson.loads(orjson.dumps(table))
        for endpoint in table.get("endpoints", {}).values():
            if isinstance(endpoint.get("client_secret"), str):
                endpoint["client_secret"] = {"env": "YRD_CLIENT_SECRET"}
        if table.get("webhook_secrets") == [WEBHOOK_SECRET]:
            table["webhook_secrets"] = [{"env": "YRD_WEBHOOK_SECRET"}]
        config = HubConfig.from_dict(
            {"hub": {"store": str(tmp_path / "hub.db")}, "adapters": {"yrd_scenarios": table, **(adapters or {})}},
            source="test hub.toml",
            environ=env,
        )
        hub = Hub(
            config,
            plugins=load_plugins([plugin, *extra_plugins], entry_points=False),
            pseudonymiser=keys,
            http=http or HttpOptions(sleep=fake_sleep),
        )
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        asyncio.run(hub.aclose())


def outbox(hub: Hub) -> list[dict[str, Any]]:
    """The records in the outbox (created and corrected; not the voids: see :func:`voids`)."""
    return [orjson.loads(r.body) for r in hub.store.read_outbox(0, 100_000) if r.kind != "voided"]


def voids(hub: Hub) -> list[dict[str, Any]]:
    """The voids in the outbox (``{"record_id", "voids", "reason", ...}``)."""
    return [orjson.loads(r.body) for r in hub.store.read_outbox(0, 100_000) if r.kind == "voided"]
