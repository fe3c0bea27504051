"""The third-party example (examples/hefei_water) installs with its entry point and the hub loads it like a built-in.

The package is pip-installed (``--target``, so the environment is left as it was) from a copy of examples/ in a
temporary folder; pip builds it in an isolated environment, fetching setuptools from the package index.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest

from tanpuhui.hub.config import load_config
from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import HttpOptions, WebhookSigner

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def _pip_install(source: Path, target: Path) -> None:
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    attempts = [[*base, str(source)], [*base, "--no-build-isolation", str(source)]]
    errors = []
    for command in attempts:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode == 0:
            return
        errors.append(f"$ {' '.join(command)}\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    pytest.fail("could not pip-install examples/hefei_water:\n" + "\n".join(errors))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example installed into a folder of its own; yields that folder (put it on sys.path to use it)."""
    work = tmp_path_factory.mktemp("example")
    source = work / "hefei_water"
    shutil.copytree(EXAMPLES / "hefei_water", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    _pip_install(source, target)
    yield target


@pytest.fixture
def on_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(installed))
    yield installed
    for name in [m for m in sys.modules if m == "hefei_water" or m.startswith("hefei_water.")]:
        del sys.modules[name]


def _env(target: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(target) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_hub_loads_the_example_through_its_entry_point(on_path: Path) -> None:
    plugins = load_plugins()
    assert "hefei_water" in plugins.adapters, plugins.problems
    (info,) = [p for p in plugins.info if "hefei_water" in p.adapters]
    assert (info.name, info.distribution, info.version) == ("hefei_water", "tanpuhui-hefei-water", "0.1.0")
    assert sorted(info.hooks) == ["register_adapters", "register_methodologies", "register_sandboxes"]
    assert "hefei_water.household-saving" in plugins.methodologies
    assert "hefei-water-bill" in plugins.adapters["hefei_water"].schemas  # package data was installed


def test_tanpuhui_plugins_shows_the_example_with_its_distribution(installed: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from tanpuhui.hub.cli import main; main()", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=_env(installed),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["plugin"]: row for row in orjson.loads(result.stdout)["plugins"]}
    assert rows["hefei_water"]["distribution"] == "tanpuhui-hefei-water"
    assert rows["hefei_water"]["adapters"] == ["hefei_water"]


def test_the_installed_example_passes_its_conformance_suite(installed: Path) -> None:
    # Run its own tests against the installed package (not its src/): package data and entry point as shipped.
    work = installed.parent / "hefei_water"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=work,
        capture_output=True,
        text=True,
        env=_env(installed),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "13 passed" in result.stdout


def _consumer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_consumer", EXAMPLES / "consumer" / "consumer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    module = _consumer()
    inbox = module.Inbox(str(tmp_path / "received.db"))
    server = module.make_server(WHSEC, inbox, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox, f"http://127.0.0.1:{server.server_address[1]}/events"
    finally:
        server.shutdown()
        server.server_close()


def test_the_example_config_pulls_the_example_and_the_consumer_gets_each_record_once(
    on_path: Path, consumer: tuple[Any, str], tmp_path: Path
) -> None:
    from hefei_water.sandbox import WaterSandbox

    inbox, url = consumer
    partner = WaterSandbox(households=12, seed=7)
    environ = {
        "TANPUHUI_PSEUDONYM_KEYS": "v1:" + base64.b64encode(b"k" * 32).decode(),
        "HFWATER_CLIENT_SECRET": partner.client_secret,
        "PLATFORM_WEBHOOK_SECRET": WHSEC,
        "TANPUHUI__HUB__STORE": str(tmp_path / "hub.db"),
        "TANPUHUI__SINKS__PLATFORM__URL": url,
        "TANPUHUI__SINKS__ARCHIVE__PATH": str(tmp_path / "records.jsonl"),
        "TANPUHUI__ADAPTERS__HEFEI_WATER__PAGE_SIZE": "5",
    }
    config = load_config(EXAMPLES / "hefei_water.toml", environ=environ)

    async def run() -> tuple[int, int]:
        hub = Hub(config, plugins=load_plugins(), http=HttpOptions(transport=httpx.ASGITransport(app=partner.app)))
        sinks = hub.build_sinks()
        try:
            (summary,) = await hub.pull("hefei_water")
            assert summary.error is None and summary.pages == 3
            await Forwarder(hub.store, sinks).drain()
            await Forwarder(hub.store, sinks).drain()  # nothing left: nothing sent twice
            rows = hub.store.read_outbox(0, 1000)
            await sinks["platform"].send(rows)  # an at-least-once redelivery of the whole batch
            return summary.inserted, len(rows)
        finally:
            for sink in sinks.values():
                await sink.aclose()
            await hub.aclose()

    inserted, rows = asyncio.run(run())
    assert inserted == rows > 0
    stats = inbox.stats()
    assert stats["events"] == inserted and stats["duplicates"] == inserted and stats["kgco2e"] > 0
    assert len((tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()) == inserted


def test_the_consumer_refuses_what_the_hub_did_not_sign(consumer: tuple[Any, str]) -> None:
    inbox, url = consumer
    body = b'[{"specversion":"1.0","id":"01J","source":"urn:x","type":"t"}]'
    good = WebhookSigner(WHSEC).headers("msg_1", body)
    forged = {**good, "webhook-signature": "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="}
    with httpx.Client() as client:
        assert client.post(url, content=body, headers=forged).status_code == 401
        assert client.post(url, content=body, headers={"content-type": "application/json"}).status_code == 401
        assert client.post(url, content=body + b" ", headers=good).status_code == 401  # the raw bytes are signed
        assert client.post(url, content=body, headers=good).json() == {"accepted": 1, "duplicates": 0}
    assert inbox.stats()["events"] == 1


def test_the_consumer_verifies_the_standard_webhooks_test_vector() -> None:
    module = _consumer()
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert module.verify(secret, headers, b'{"test": 2432232314}', now=1614265330) == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    with pytest.raises(module.SignatureError):
        module.verify(secret, headers, b'{"test": 2432232314}', now=1614265330 + 301)
