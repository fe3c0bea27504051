"""The operator console in headless Chromium over what `tanpuhui demo` left behind: every built-in partner's
sandbox pulled and pushed into the demo's store. The real sidecar is started on the demo's store and configuration
(the demo's hub.toml with an admin token added, its secrets from the demo's sandbox.env); the partners' sandboxes
are gone by then, and the demo's hub.toml schedules nothing, so the sidecar pulls nothing.

Signed in, the overview shows each stream the demo pulled or received, with the counts the store holds (read here
with sqlite3, not through the hub): a pull stream's newest run, a push stream's newest webhook request. Each
stream's page shows its history: a pull stream's runs, a push stream's webhook requests with the answer each got.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.config import load_config

from .conftest import ADMIN_TOKEN, RunningSidecar, SidecarFactory
from .console_kit import CONSOLE, browser_tab, sign_in

ADAPTERS = {"provincial_bigdata", "state_grid", "transit_card", "yrd_scenarios"}


@dataclass(frozen=True)
class Held:
    """What the demo's store holds of one stream, read with sqlite3."""

    kind: str
    last: tuple[int, ...]
    """Pull: the newest run's items, new, duplicates, quarantined; push: the newest request's items, records,
    quarantined."""
    history: list[tuple[int, ...]]
    """Pull: each run's items, new, duplicates, quarantined; push: each request's items, accepted, quarantined,
    records; newest first."""


def held_by_stream(db: Path) -> dict[str, Held]:
    with sqlite3.connect(db) as con:
        runs = con.execute(
            "SELECT adapter, stream, items, inserted, duplicates, quarantined FROM runs ORDER BY id DESC"
        ).fetchall()
        receipts = con.execute(
            "SELECT adapter, stream, body FROM webhook_receipts ORDER BY created_at DESC, webhook_id DESC"
        ).fetchall()
    out: dict[str, Held] = {}
    for adapter, stream, *counts in runs:
        name = f"{adapter}:{stream}"
        held = out.setdefault(name, Held("pull", tuple(counts), []))
        held.history.append(tuple(counts))
    for adapter, stream, body in receipts:
        a = json.loads(body)
        name = f"{adapter}:{stream}"
        held = out.setdefault(name, Held("push", (a["items"], a["records"], a["quarantined"]), []))
        held.history.append((a["items"], a["accepted"], a["quarantined"], a["records"]))
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("demo-console") / "demo"
    run = CliRunner().invoke(main, ["demo", "--trips", "300", "--workdir", str(workdir)])
    assert run.exit_code == 0, run.output
    return workdir


@pytest.fixture
def serving(demo: Path, start_sidecar: SidecarFactory) -> Iterator[RunningSidecar]:
    """The sidecar on the demo's store: its hub.toml with an admin token, its environment from sandbox.env only
    (no TANPUHUI__ override from the test's own environment can add a schedule)."""
    assert "[server" not in (demo / "hub.toml").read_text()  # no schedules: nothing pulls the dead sandboxes
    config = demo / "console.toml"
    config.write_text(
        (demo / "hub.toml").read_text() + '\n[server]\nadmin_token = { env = "DEMO_CONSOLE_ADMIN_TOKEN" }\n',
        encoding="utf-8",
    )
    env = dict(line.split("=", 1) for line in (demo / "sandbox.env").read_text().splitlines() if "=" in line)
    yield start_sidecar(load_config(config, environ={**env, "DEMO_CONSOLE_ADMIN_TOKEN": ADMIN_TOKEN}))


def _cells(row: Any) -> list[str]:
    cells = row.locator("td")
    return [cells.nth(i).inner_text().strip() for i in range(cells.count())]


def test_the_overview_shows_every_stream_of_the_demo_with_the_counts_its_store_holds(
    demo: Path, serving: RunningSidecar, browser: Any
) -> None:
    held = held_by_stream(demo / "hub.db")
    assert {name.split(":")[0] for name in held} == ADAPTERS
    assert {name for name, h in held.items() if h.kind == "push"} == {
        "state_grid:demand_response",
        "yrd_scenarios:records_push",
    }
    with browser_tab(browser, serving.url) as page:
        sign_in(page)
        rows = page.locator("#streams tbody tr")
        shown = {rows.nth(i).get_attribute("data-stream"): _cells(rows.nth(i)) for i in range(rows.count())}
        assert sorted(shown) == sorted(held)
        for name, h in held.items():
            cells = shown[name]
            assert cells[0] == name and cells[1] == h.kind and cells[2] == "—", cells  # no schedule
            if h.kind == "pull":
                assert tuple(int(c) for c in cells[5:9]) == h.last, name
                assert cells[9] == "ok", name
            else:  # the newest request: items, quarantined, and in its outcome the records its items made
                assert (int(cells[5]), int(cells[8])) == (h.last[0], h.last[2]), name
                assert cells[6] == cells[7] == "—", name  # an answer does not tell new from duplicate records
                assert cells[9].startswith("received") and f"· {h.last[1]} record(s)" in cells[9], name
            assert cells[11] != "never", name  # fresh: each was pulled or received

        for name, h in held.items():
            adapter, stream = name.split(":")
            page.goto(f"{CONSOLE}/streams/{adapter}/{stream}")
            assert page.inner_text("h1").endswith(name)
            table = "#runs" if h.kind == "pull" else "#requests"
            assert page.locator("#runs" if h.kind == "push" else "#requests").count() == 0
            history = page.locator(f"{table} tbody tr")
            # pull: #, started, took, outcome, pages, items, new, dup, held, quar.; push: received, webhook id,
            # status, items, accepted, quar., records
            columns = (5, 6, 7, 9) if h.kind == "pull" else (3, 4, 5, 6)
            shown_history = [tuple(int(_cells(history.nth(i))[c]) for c in columns) for i in range(history.count())]
            assert shown_history == h.history, name
            totals = page.locator(f"{table} tfoot tr th")
            assert totals.first.inner_text().startswith(f"Total over {len(h.history)} ")
    with sqlite3.connect(demo / "hub.db") as con:  # the sidecar ran no pull of its own against the dead sandboxes
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == sum(
            len(h.history) for h in held.values() if h.kind == "pull"
        )
