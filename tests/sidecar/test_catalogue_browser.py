"""The catalogue's pages in headless Chromium: they render, every link resolves, no console error, nothing off-site.

Both ways a partner reads them: served by the sidecar under /catalogue/, and as the static site of
`tanpuhui catalogue build DIR` opened from disk. Uses the Debian chromium (/usr/bin/chromium), not a downloaded one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main

from .conftest import SidecarFactory

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_sync.Browser]:
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def crawl(browser: playwright_sync.Browser, start: str) -> dict[str, str]:
    """Visit every page reachable from ``start`` under its folder; returns url -> h1 text. Fails on any problem."""
    root = start.rsplit("/", 1)[0] + "/"
    page = browser.new_page()
    errors: list[str] = []
    off_site: list[str] = []
    page.on("console", lambda msg: errors.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"failed: {req.url}"))
    page.on("response", lambda r: errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
    page.on("request", lambda req: off_site.append(req.url) if not req.url.startswith(root) else None)
    seen: dict[str, str] = {}
    queue = [start]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        if url.endswith(".json"):  # the schema documents: present is enough (opening one asks for a favicon)
            if urlparse(url).scheme == "file":
                assert Path(urlparse(url).path).is_file(), url
            else:
                assert page.request.get(url).status == 200, url
            seen[url] = ""
            continue
        response = page.goto(url)
        if urlparse(url).scheme == "file":
            assert Path(urlparse(url).path).is_file(), f"broken link: {url}"
        else:
            assert response is not None and response.status == 200, f"{url}: {response and response.status}"
        seen[url] = page.locator("h1").first.inner_text()
        assert page.locator("link[rel=stylesheet]").count() == 1
        for href in page.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))"):
            target = urldefrag(urljoin(url, href)).url
            assert target.startswith(root), f"{url} links off the catalogue: {href}"
            queue.append(target)
    page.close()
    assert errors == []
    assert off_site == []
    return seen


@contextmanager
def opened(browser: playwright_sync.Browser, url: str) -> Iterator[playwright_sync.Page]:
    """A new page of ``browser`` at ``url``, closed afterwards."""
    page = browser.new_page()
    try:
        page.goto(url)
        yield page
    finally:
        page.close()


def test_the_served_catalogue_renders_and_every_link_resolves(
    start_sidecar: SidecarFactory, browser: playwright_sync.Browser
) -> None:
    server = start_sidecar()
    pages = crawl(browser, f"{server.url}/catalogue/index.html")
    assert (
        pages[f"{server.url}/catalogue/schemas/transit-card-trip.html"] == "Transit card transaction (partner payload)"
    )
    assert f"{server.url}/catalogue/schemas/bike-ride.html" in pages  # a third-party adapter's schema
    assert any("/catalogue/methodologies/" in url for url in pages)


def test_the_static_site_works_from_disk(tmp_path: Path, browser: playwright_sync.Browser) -> None:
    site = tmp_path / "site"
    result = CliRunner().invoke(main, ["catalogue", "build", str(site)])
    assert result.exit_code == 0, result.output
    pages = crawl(browser, (site / "index.html").as_uri())
    assert (site / "schemas" / "reduction-record.html").as_uri() in pages
    assert (site / "methodologies" / "tph.transit.metro-1.0.0.html").as_uri() in pages


def test_a_schema_page_shows_the_field_table_examples_and_snippets(
    start_sidecar: SidecarFactory, browser: playwright_sync.Browser
) -> None:
    server = start_sidecar()
    with opened(browser, f"{server.url}/catalogue/schemas/transit-card-trip.html") as page:
        rows = page.locator("table.fields tbody tr")
        card = rows.filter(has_text="card_no")
        assert "yes (card)" in card.inner_text()
        assert rows.count() == 13
        assert page.locator("pre.valid").count() == 3
        assert page.locator("pre.invalid").count() >= 1
        assert "is not one of" in page.locator("ul.problems").last.inner_text()
        text = page.locator("main").inner_text()
        assert f"curl -sS --fail-with-body -X POST {server.url}/v1/validate/transit-card-trip" in text
        assert "tanpuhui validate payload.jsonl --schema transit-card-trip" in text


def test_a_methodology_page_shows_formula_factors_and_versions(
    start_sidecar: SidecarFactory, browser: playwright_sync.Browser
) -> None:
    with opened(browser, f"{start_sidecar().url}/catalogue/methodologies/tph.transit.metro-1.0.0.html") as page:
        assert "reduction_kgco2e = max(0," in page.locator("pre.formula").inner_text()
        factors = page.locator("table.factors tbody tr")
        assert factors.count() >= 1
        assert "kgCO2e" in factors.first.inner_text()
        assert "1.0.0" in page.locator("ul.versions").inner_text()
