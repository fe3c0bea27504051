"""`tanpuhui new-adapter NAME` scaffolds a package that passes the conformance suite, ruff and mypy as generated."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.scaffold import scaffold


def _run_in(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``python -m <command>`` in the package folder, as its author would run it there (with ``src`` on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One package scaffolded (and its cassettes recorded) through the CLI, shared by the tests below."""
    folder = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(main, ["new-adapter", "solar_coop", "--directory", str(folder)])
    assert result.exit_code == 0, result.output
    return folder / "solar_coop"


def test_the_package_has_an_entry_point_a_schema_with_examples_and_cassettes(generated: Path) -> None:
    project = tomllib.loads((generated / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["tanpuhui"] == {"solar_coop": "solar_coop.plugin"}
    assert (generated / "src/solar_coop/schemas/solar-coop-reading.schema.json").is_file()
    cassettes = sorted(p.name for p in (generated / "tests/cassettes/readings").iterdir())
    assert cassettes == [
        "empty_page.json",
        "rate_limited.json",
        "reauth_401.json",
        "resume_after_failure.json",
        "server_error.json",
        "two_pages.json",
    ]


def test_the_generated_package_passes_its_conformance_suite_from_its_cassettes(generated: Path) -> None:
    result = _run_in(generated, "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed" in result.stdout


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")], ids=["check", "format"])
def test_the_generated_package_is_ruff_clean_under_its_own_settings(generated: Path, command: tuple[str, ...]) -> None:
    result = _run_in(generated, "ruff", *command, "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_package_type_checks_with_mypy_strict(generated: Path, tmp_path: Path) -> None:
    # Its pyproject.toml names what to check (src and tests) and where the package is (mypy_path = src).
    result = _run_in(generated, "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in 6 source files" in result.stdout


def test_the_hub_registers_the_generated_plugin(generated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(generated / "src"))
    plugin = importlib.import_module("solar_coop.plugin")
    try:
        plugins = load_plugins([plugin], entry_points=False)
        assert "solar_coop" in plugins.adapters
        assert "solar-coop.saving" in plugins.methodologies
    finally:
        for name in [m for m in sys.modules if m == "solar_coop" or m.startswith("solar_coop.")]:
            del sys.modules[name]


def test_recording_the_same_sandbox_twice_gives_the_same_cassettes(generated: Path, tmp_path: Path) -> None:
    again = scaffold("solar_coop", tmp_path)
    result = CliRunner().invoke(main, ["new-adapter", "solar_coop", "--directory", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    for cassette in sorted((generated / "tests/cassettes/readings").iterdir()):
        assert (again.root / "tests/cassettes/readings" / cassette.name).read_bytes() == cassette.read_bytes()


def test_a_name_that_is_not_a_python_identifier_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-adapter", "Hefei-Water", "--directory", str(tmp_path)])
    assert result.exit_code == 2
    assert "must be 2-64 lower-case letters, digits and underscores" in result.output
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "solar_coop").mkdir()
    (tmp_path / "solar_coop" / "keep.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(main, ["new-adapter", "solar_coop", "--directory", str(tmp_path), "--no-record"])
    assert result.exit_code == 2 and "already exists" in result.output


def test_the_name_of_an_installed_adapter_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-adapter", "transit_card", "--no-record", "--directory", str(tmp_path)])
    assert result.exit_code == 2
    assert "an installed adapter is already named 'transit_card'" in result.output
    assert not (tmp_path / "transit_card").exists()
