"""Shared by the console tests: a sidecar with the transit sandbox (pull), the bike-share push stream and a sink,
holding quarantined items; and a signed-in HTTP client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.testing.loopback import wait_until

from .conftest import ADMIN_TOKEN, RunningSidecar, SidecarFactory, hub_config, ride, sink_table

CONSOLE = "/console"


def console_sidecar(
    start: SidecarFactory,
    tmp_path: Path,
    sandbox: TransitSandbox,
    consumer: ConsumerServer,
    *,
    store: str | None = None,
    **server: Any,
) -> RunningSidecar:
    """Transit pulled once, three bike rides quarantined (two too long, one with a note that breaks normalize).

    ``store``: a PostgreSQL URL (migrated) instead of the SQLite file in ``tmp_path``."""
    settings = sandbox.settings(client_secret={"env": "TRANSIT_SECRET"}, page_size=100)
    tables: dict[str, Any] = {}
    if store is not None:
        tables["hub"] = {"store": store, "pseudonym_keys": {"env": "TEST_PSEUDONYM_KEYS"}}
    config = hub_config(
        tmp_path,
        adapters={"transit_card": settings},
        environ={"TRANSIT_SECRET": sandbox.client_secret},
        sinks=sink_table(consumer),
        server=server or None,
        **tables,
    )
    running = start(config)
    pulled = running.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=true")
    assert pulled.status_code == 200, pulled.text
    answer = running.post_ride([ride(1), ride(2, km=60.0), ride(3, km=75.0), ride(4, note="boom")], "msg_console_1")
    assert answer.status_code < 300, answer.text
    wait_until(lambda: running.sidecar.hub.store.counts()["quarantine_open"] >= 2, what="quarantined rides")
    return running


def signed_in(running: RunningSidecar) -> httpx.Client:
    """An HTTP client with a console session (no redirects followed)."""
    client = httpx.Client(base_url=running.url, timeout=30)
    answer = client.post(f"{CONSOLE}/signin", data={"token": ADMIN_TOKEN, "next": f"{CONSOLE}/"})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(page: Any) -> None:
    """Sign a browser tab in through the sign-in page (it lands on the overview)."""
    page.goto(f"{CONSOLE}/")
    assert "/console/signin" in page.url
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{CONSOLE}/")


def reload_until(page: Any, locator: Any, text: str, *, tries: int) -> None:
    """Reload ``page`` every 250 ms until ``locator`` reads ``text`` (at most ``tries`` times); fail if it never does."""
    for _ in range(tries):
        if locator.inner_text() == text:
            break
        page.wait_for_timeout(250)
        page.reload()
    assert locator.inner_text() == text


@contextmanager
def browser_tab(browser: Any, base_url: str) -> Iterator[Any]:
    """A new tab (in its own context: no cookies) on ``base_url``, closed after use."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=base_url)
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
