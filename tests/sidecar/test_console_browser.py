"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

Sign in, see the streams, filter the quarantine, replay one item and watch its state change, pause and resume a
sink; and a screenshot of every page. With ``TANPUHUI_SCREENSHOTS=docs/console`` the screenshots are written there
(the pictures in ``docs/console.md``): ``TANPUHUI_SCREENSHOTS=docs/console pytest tests/sidecar/test_console_browser.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer, Scripted

from .conftest import RunningSidecar, SidecarFactory
from .console_kit import CONSOLE, browser_tab, console_sidecar, reload_until, sign_in


@pytest.fixture
def running(start_sidecar: SidecarFactory, tmp_path: Path, consumer: ConsumerServer) -> Iterator[RunningSidecar]:
    with TransitSandbox(trips=300, seed=7) as sandbox:
        yield console_sidecar(start_sidecar, tmp_path, sandbox, consumer, stale_after="1h")


@pytest.fixture
def page(browser: Any, running: RunningSidecar) -> Iterator[Any]:
    with browser_tab(browser, running.url) as tab:
        yield tab


def test_sign_in_and_see_the_streams(page: Any) -> None:
    page.goto(f"{CONSOLE}/quarantine")
    assert "/console/signin" in page.url
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert "wrong admin token" in page.inner_text(".flash")
    sign_in(page)
    rows = page.locator("#streams tbody tr")
    names = [rows.nth(i).get_attribute("data-stream") for i in range(rows.count())]
    assert names == ["bike_share:rides", "transit_card:transactions"]
    transit = page.locator('tr[data-stream="transit_card:transactions"]')
    assert "ok" in transit.inner_text() and "pull" in transit.inner_text()
    assert page.locator('tr[data-sink="platform"] [data-state]').inner_text() == "ok"
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["tanpuhui_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["expires"] > 0


def test_filter_the_quarantine_and_replay_one_item(
    page: Any, running: RunningSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import RidesPush

    sign_in(page)
    page.click("nav >> text=Quarantine")
    page.select_option("select[name=adapter]", "bike_share")
    page.fill("input[name=problem]", "/km")
    page.click("#filters button[type=submit]")
    assert "problem=%2Fkm" in page.url
    rows = page.locator("#quarantine tbody tr")
    assert rows.count() == 2 and "2 entries match" in page.inner_text("#match-count")
    first = rows.nth(0).get_attribute("data-entry")
    rows.nth(0).locator("a").click()
    assert page.inner_text("#entry-status") == "open"
    assert "139****3456" in page.inner_text("#payload")
    # The partner fixed its data rule: 50 km is the most a ride may count for.
    original = RidesPush.normalize
    monkeypatch.setattr(RidesPush, "normalize", lambda self, item, ctx: original(self, {**item, "km": 50}, ctx))
    page.click("button[value=replay-one]")
    assert "1 resolved" in page.inner_text(".flash")
    assert page.inner_text("#entry-status") == "resolved"
    page.goto(f"{CONSOLE}/quarantine?adapter=bike_share&problem=%2Fkm")
    assert page.locator(f'tr[data-entry="{first}"]').count() == 0
    assert "1 entry match" in page.inner_text("#match-count")


def test_pause_and_resume_a_sink(page: Any, running: RunningSidecar) -> None:
    sign_in(page)
    page.click("nav >> text=Sinks")
    state = page.locator('tr[data-sink="platform"] [data-state]')
    assert state.inner_text() == "ok"
    page.locator('tr[data-sink="platform"] button').click()
    assert "platform paused" in page.inner_text(".flash")
    assert state.inner_text() == "paused"
    page.locator('tr[data-sink="platform"] button').click()
    assert "platform resumed" in page.inner_text(".flash")
    assert state.inner_text() == "ok"


def test_a_screenshot_of_every_page(page: Any, running: RunningSidecar, tmp_path: Path) -> None:
    out = Path(os.environ.get("TANPUHUI_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    entry = next(e.id for e in running.sidecar.hub.store.quarantine_list() if e.adapter == "bike_share")
    page.goto(f"{CONSOLE}/")
    page.screenshot(path=str(out / "signin.png"))
    sign_in(page)
    shots = {
        "overview": "/",
        "stream": "/streams/transit_card/transactions",
        "quarantine": "/quarantine",
        "quarantine-entry": f"/quarantine/{entry}",
        "dead-letters": "/dead-letters",
        "sinks": "/sinks",
        "audit": "/audit",
    }
    for name, path in shots.items():
        page.goto(CONSOLE + path)
        assert page.locator("h1").count() == 1
        page.screenshot(path=str(out / f"{name}.png"), full_page=False)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted([*shots, "signin"])
    assert all((out / f"{name}.png").stat().st_size > 5000 for name in shots)
    if not os.environ.get("TANPUHUI_SCREENSHOTS"):
        shutil.rmtree(out)


def test_watch_a_failing_sink_retry_and_recover_on_the_sinks_page(
    browser: Any, start_sidecar: SidecarFactory, tmp_path: Path, consumer: ConsumerServer
) -> None:
    for _ in range(4):  # the consumer is overloaded for four tries, then takes the batch
        consumer.push(Scripted(503, retry_after=1))
    with TransitSandbox(trips=120, seed=11) as sandbox:
        running = console_sidecar(start_sidecar, tmp_path, sandbox, consumer)
        with browser_tab(browser, running.url) as page:
            sign_in(page)
            page.goto(f"{CONSOLE}/sinks")
            state = page.locator('tr[data-sink="platform"] [data-state]')
            reload_until(page, state, "retrying", tries=40)
            errors = page.locator('[data-sink-errors="platform"] tbody tr')
            assert errors.count() >= 1 and "503" in errors.first.inner_text()
            assert "failed attempt(s)" in page.inner_text("main")
            reload_until(page, state, "ok", tries=60)
            assert page.locator('tr[data-sink="platform"] td').nth(4).inner_text() != "—"  # its last delivery
            assert errors.count() >= 1  # the failures stay on record after the recovery
