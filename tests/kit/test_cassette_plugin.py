"""The pytest plugin as a third party uses it: marker, fixtures, failures that cannot be swallowed, recording."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.sdk import is_valid_resident_id

BASE = "https://partner.sandbox.example"

CASSETTE = {
    "interactions": [
        {
            "request": {"method": "GET", "url": f"{BASE}/v1/items?limit=2"},
            "response": {"status": 200, "json": {"items": [{"id": "A1"}], "next_cursor": "c1"}},
        },
        {
            "request": {"method": "GET", "url": f"{BASE}/v1/items?limit=2&cursor=c1"},
            "response": {"status": 200, "json": {"items": [], "next_cursor": None}},
        },
    ]
}

TESTS = f'''
import asyncio

import httpx
import pytest

BASE = "{BASE}"


async def fetch(transport, *paths):
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        return [(await client.get(p)).json() for p in paths]


@pytest.mark.cassette("cassettes/items.json")
def test_replays_both_pages(cassette):
    pages = asyncio.run(fetch(cassette.transport, "/v1/items?limit=2", "/v1/items?cursor=c1&limit=2"))
    assert pages[0]["items"] == [{{"id": "A1"}}] and len(cassette.requests) == 2


@pytest.mark.cassette("cassettes/items.json")
def test_swallowed_mismatch(cassette):
    async def go():
        try:
            await fetch(cassette.transport, "/v1/items?limit=2", "/v1/items?limit=3")
        except Exception:
            pass  # adapter code that hides every error

    asyncio.run(go())


@pytest.mark.cassette("cassettes/items.json")
def test_unused_exchange(cassette):
    asyncio.run(fetch(cassette.transport, "/v1/items?limit=2"))


@pytest.mark.cassette("cassettes/items.json", allow_unused=True)
def test_unused_allowed(cassette):
    asyncio.run(fetch(cassette.transport, "/v1/items?limit=2"))


def test_factory_and_global_routing(tanpuhui_cassette):
    tanpuhui_cassette("cassettes/items.json")

    async def go():  # a client built without the cassette's transport is still answered from it (respx)
        async with httpx.AsyncClient(base_url=BASE) as client:
            return [(await client.get(p)).status_code for p in ("/v1/items?limit=2", "/v1/items?limit=2&cursor=c1")]

    assert asyncio.run(go()) == [200, 200]


def test_missing_marker(cassette):
    pass
'''


def _pytest(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    outcomes = dict(
        (m.group(2), m.group(1)) for m in re.finditer(r"^(PASSED|FAILED|ERROR) \S+::(\w+)", proc.stdout, re.M)
    )
    return outcomes, proc.stdout + proc.stderr


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / "items.json").write_text(json.dumps(CASSETTE), encoding="utf-8")
    (tmp_path / "test_items.py").write_text(TESTS, encoding="utf-8")
    return tmp_path


def test_the_marker_and_fixtures_replay_and_fail_on_what_a_test_could_hide(tmp_path: Path) -> None:
    outcomes, output = _pytest(_project(tmp_path))
    assert outcomes == {
        "test_replays_both_pages": "PASSED",
        "test_swallowed_mismatch": "FAILED",
        "test_unused_exchange": "FAILED",
        "test_unused_allowed": "PASSED",
        "test_factory_and_global_routing": "PASSED",
        "test_missing_marker": "ERROR",
    }, output
    # the swallowed mismatch names the request and the closest recording
    assert "GET https://partner.sandbox.example/v1/items?limit=3 not recorded (it was never recorded); " in output
    assert "closest recorded: GET https://partner.sandbox.example/v1/items?limit=2" in output
    assert "recorded but never requested: #1 GET https://partner.sandbox.example/v1/items?cursor=c1&limit=2" in output
    assert "needs @pytest.mark.cassette" in output


def test_the_ini_option_allows_unused_exchanges(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "pytest.ini").write_text("[pytest]\ntanpuhui_allow_unused = true\n", encoding="utf-8")
    outcomes, output = _pytest(project, "-k", "unused")
    assert outcomes == {"test_unused_exchange": "PASSED", "test_unused_allowed": "PASSED"}, output


RECORD_TEST = """
import asyncio
import os

import pytest
from tanpuhui.adapters.transit_card import TransitCardAdapter, TransitCardSettings

BASE = "https://transit.sandbox.example"


async def no_sleep(seconds):
    return None


@pytest.mark.cassette("cassettes/transit.json", base_url=BASE, personal_fields={"card_no": "card"})
def test_pull_two_pages(cassette):
    settings = TransitCardSettings(
        base_url=BASE,
        client_id=os.environ.get("SANDBOX_CLIENT_ID", "tanpuhui-sandbox"),
        client_secret=os.environ.get("SANDBOX_CLIENT_SECRET", "replayed"),
        page_size=5,
    )
    adapter = TransitCardAdapter(settings, cassette.http(sleep=no_sleep))

    async def run():
        stream = adapter.stream("transactions")
        try:
            return [page async for page in stream.pages(None, None)]
        finally:
            await adapter.aclose()

    pages = asyncio.run(run())
    assert len(pages) >= 2
"""


def test_recording_against_a_loopback_sandbox_writes_a_scrubbed_stable_cassette_that_replays(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_record.py").write_text(textwrap.dedent(RECORD_TEST), encoding="utf-8")
    written = tmp_path / "cassettes" / "transit.json"
    texts = []
    for _ in range(2):
        with TransitSandbox(trips=8, seed=21, bad={}, mobile_share=0.5) as sandbox:
            env = {
                "TANPUHUI_RECORD": "1",
                "TANPUHUI_RECORD_URL": sandbox.url,
                "SANDBOX_CLIENT_ID": sandbox.client_id,
                "SANDBOX_CLIENT_SECRET": sandbox.client_secret,
            }
            outcomes, output = _pytest(tmp_path, env=env)
            assert outcomes == {"test_pull_two_pages": "PASSED"}, output
            text = written.read_text(encoding="utf-8")
            texts.append(text)
            raw_mobiles = {i["account_mobile"] for i in sandbox.dataset.items if "account_mobile" in i}
            raw_cards = {i["card_no"] for i in sandbox.dataset.items if "card_no" in i}
            assert sandbox.client_secret not in text and "127.0.0.1" not in text
            assert not any(m in text for m in raw_mobiles) and not any(c in text for c in raw_cards)
    assert texts[0] == texts[1], "re-recording the same partner data changed the cassette"
    doc = json.loads(texts[0])
    first = doc["interactions"][0]
    assert first["request"] == {"method": "POST", "url": "https://transit.sandbox.example/oauth/token"}
    assert first["response"]["json"]["access_token"] == "scrubbed-access-token-1"
    assert all("Date" not in i["response"].get("headers", {}) for i in doc["interactions"])
    assert '"17000000001"' in texts[0]
    assert not is_valid_resident_id("17000000001")  # the fakes are mobiles, not resident IDs
    # and the same test replays from what was written, with no partner running
    outcomes, output = _pytest(tmp_path)
    assert outcomes == {"test_pull_two_pages": "PASSED"}, output
