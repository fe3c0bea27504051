"""`tanpuhui plugins` shows where each plugin comes from and what it hooks; TANPUHUI_TRACE_HOOKS traces calls."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import Adapter, hookimpl


def test_plugins_lists_distribution_version_hooks_and_registrations() -> None:
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["plugin"]: row for row in orjson.loads(result.stdout)["plugins"]}
    transit = rows["transit_card"]
    assert transit["distribution"] == "tanpuhui" and transit["version"]
    assert transit["hooks"] == ["register_adapters", "register_sandboxes"] and transit["adapters"] == ["transit_card"]
    assert "register_methodologies" in rows["tanpuhui.hub.methodologies"]["hooks"]


def test_plugins_prints_a_table() -> None:
    result = CliRunner().invoke(main, ["plugins"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "distribution" in result.stdout and "register_adapters" in result.stdout and "transit_card" in result.stdout


class _Plugin:
    @hookimpl
    def register_adapters(self, register: Callable[[type[Adapter]], None]) -> None:
        return None


def test_trace_hooks_logs_each_hook_call(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TANPUHUI_TRACE_HOOKS", "1")
    with caplog.at_level(logging.INFO, logger="tanpuhui.plugins"):
        load_plugins([_Plugin()], entry_points=False, builtins=())
    traced = [r.getMessage() for r in caplog.records if r.name == "tanpuhui.plugins"]
    assert any("register_adapters" in m for m in traced), traced


def test_without_the_variable_nothing_is_traced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TANPUHUI_TRACE_HOOKS", raising=False)
    with caplog.at_level(logging.INFO, logger="tanpuhui.plugins"):
        load_plugins([_Plugin()], entry_points=False, builtins=())
    assert not [r for r in caplog.records if r.name == "tanpuhui.plugins" and "hook:" in r.getMessage()]


def _adapters_command(trace: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TANPUHUI_TRACE_HOOKS"}
    if trace is not None:
        env["TANPUHUI_TRACE_HOOKS"] = trace
    return subprocess.run(
        [sys.executable, "-c", "from tanpuhui.hub.cli import main; main()", "adapters"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_trace_hooks_prints_each_hook_call_with_plugin_and_duration_on_stderr() -> None:
    """What an operator sees in a terminal: `TANPUHUI_TRACE_HOOKS=1 tanpuhui adapters`, one line per call."""
    result = _adapters_command("1")
    assert result.returncode == 0, result.stderr
    calls = re.findall(r"^tanpuhui: hook (register_\w+) plugin (\S+): (\d+\.\d+) ms, ok$", result.stderr, re.M)
    assert ("register_adapters", "transit_card") in {(hook, plugin) for hook, plugin, _ in calls}, result.stderr
    assert ("register_sandboxes", "state_grid") in {(hook, plugin) for hook, plugin, _ in calls}, result.stderr
    assert ("register_methodologies", "tanpuhui.hub.methodologies") in {(h, p) for h, p, _ in calls}, result.stderr
    assert "hook" not in result.stdout  # the table stays clean for pipes


def test_without_the_variable_or_with_0_no_hook_call_is_printed() -> None:
    for value in (None, "0"):
        result = _adapters_command(value)
        assert result.returncode == 0, result.stderr
        assert "hook " not in result.stderr, result.stderr
