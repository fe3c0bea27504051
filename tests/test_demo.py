"""`tanpuhui demo`: the main job on embedded defaults, end to end and idempotent."""

from __future__ import annotations

import importlib
import io
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from rich.console import Console

from tanpuhui.hub.cli import main
from tanpuhui.hub.demo import run_demo
from tanpuhui.hub.plugins import PluginWarning, load_plugins
from tanpuhui.sdk import ConfigError, Sandbox, SandboxFactory, hookimpl

EXAMPLE_SRC = Path(__file__).parent.parent / "examples" / "hefei_water" / "src"


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8")) if path.exists() else 0


def test_demo_pulls_all_four_partners_and_forwards_each_record_once(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    first = CliRunner().invoke(main, ["demo", "--trips", "400", "--workdir", str(workdir)])
    assert first.exit_code == 0, first.output
    for stream in (
        "transit_card:transactions",
        "state_grid:readings",
        "yrd_scenarios:records",
        "provincial_bigdata:water_usage",
        "state_grid:demand_response (push)",
    ):
        assert stream in first.output
    with sqlite3.connect(workdir / "hub.db") as db:
        stored = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        adapters = {row[0] for row in db.execute("SELECT DISTINCT adapter FROM outbox")}
    assert adapters == {"transit_card", "state_grid", "yrd_scenarios", "provincial_bigdata"}
    assert stored > 1000
    assert _lines(workdir / "records.jsonl") == stored
    assert _lines(workdir / "consumer.jsonl") == stored

    again = CliRunner().invoke(main, ["demo", "--trips", "400", "--workdir", str(workdir), "--from-start"])
    assert again.exit_code == 0, again.output
    assert _lines(workdir / "records.jsonl") == stored
    assert _lines(workdir / "consumer.jsonl") == stored
    with sqlite3.connect(workdir / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == stored


def test_demo_writes_a_config_whose_secrets_are_environment_references(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--trips", "200", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    text = (workdir / "hub.toml").read_text()
    key = (workdir / "sandbox-pseudonym.key").read_text().strip()
    assert key.split(":", 1)[1] not in text
    assert 'client_secret = { env = "DEMO_TRANSIT_CARD_CLIENT_SECRET" }' in text


@pytest.fixture
def hefei_water(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example third-party plugin (examples/hefei_water), importable from its source, not installed."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    yield importlib.import_module("hefei_water.plugin")
    for name in [m for m in sys.modules if m == "hefei_water" or m.startswith("hefei_water.")]:
        del sys.modules[name]


def test_a_third_party_adapter_offering_a_sandbox_takes_part_in_the_demo(
    tmp_path: Path, hefei_water: ModuleType
) -> None:
    workdir = tmp_path / "demo"
    plugins = load_plugins([hefei_water])  # the installed adapters, and the example registered in process
    console = Console(file=io.StringIO(), record=True, width=160)
    run_demo(workdir=workdir, trips=200, fresh=False, from_start=False, console=console, plugins=plugins)
    output = console.export_text()
    assert "5 sandbox partners" in output and "hefei_water:bills" in output
    with sqlite3.connect(workdir / "hub.db") as db:
        stored = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        water = db.execute("SELECT count(*) FROM outbox WHERE adapter = 'hefei_water'").fetchone()[0]
    assert water > 0
    assert _lines(workdir / "records.jsonl") == _lines(workdir / "consumer.jsonl") == stored
    assert 'client_secret = { env = "DEMO_HEFEI_WATER_CLIENT_SECRET" }' in (workdir / "hub.toml").read_text()


def test_without_any_sandbox_the_demo_says_so(tmp_path: Path) -> None:
    plugins = load_plugins(entry_points=False)  # the hub's own methodologies and sinks: no adapter, no sandbox
    with pytest.raises(ConfigError, match="no installed adapter offers a sandbox"):
        run_demo(workdir=tmp_path, fresh=False, from_start=False, console=Console(file=io.StringIO()), plugins=plugins)


def test_a_sandbox_whose_factory_fails_is_skipped_with_a_warning(tmp_path: Path, hefei_water: ModuleType) -> None:
    def broken(**options: object) -> Sandbox:
        raise RuntimeError("hefei water sandbox: seed file missing")

    def registers_broken(register: Callable[[str, SandboxFactory], None]) -> None:
        register("hefei_water", broken)

    broken_plugin = type("BrokenSandboxPlugin", (), {"register_sandboxes": staticmethod(hookimpl(registers_broken))})()
    with pytest.warns(PluginWarning, match="a sandbox for 'hefei_water' is already registered"):
        plugins = load_plugins([broken_plugin, hefei_water], entry_points=False)  # the broken one comes first
    console = Console(file=io.StringIO(), record=True, width=160)
    with pytest.raises(ConfigError, match="no installed adapter offers a sandbox"):
        run_demo(workdir=tmp_path, fresh=False, from_start=False, console=console, plugins=plugins)
    assert (
        "sandbox 'hefei_water' skipped: RuntimeError: hefei water sandbox: seed file missing" in console.export_text()
    )
