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
from tanpuhui.hub.scaffold import AUTH, PAGING, scaffold


def _run_in(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``python -m <command>`` in the package folder, as its author would run it there (with ``src`` on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


VARIANTS = [(auth, paging) for auth in AUTH for paging in PAGING]
"""Every partner shape the scaffold speaks: each must pass its suite, ruff and mypy as generated."""


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """A folder per variant, filled on first use (one scaffold and recording per variant for the module)."""
    return {}


@pytest.fixture(params=VARIANTS, ids=[f"{a}-{p}" for a, p in VARIANTS])
def variant(
    request: pytest.FixtureRequest, packages: dict[tuple[str, str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The package ``solar_coop`` scaffolded (and its cassettes recorded) through the CLI for one auth and paging."""
    auth, paging = request.param
    if request.param not in packages:
        folder = tmp_path_factory.mktemp(f"scaffold-{auth}-{paging}")
        result = CliRunner().invoke(
            main, ["new-adapter", "solar_coop", "--directory", str(folder), "--auth", auth, "--paging", paging]
        )
        assert result.exit_code == 0, result.output
        packages[request.param] = folder / "solar_coop"
    return packages[request.param]


@pytest.fixture
def generated(packages: dict[tuple[str, str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default package (OAuth2 client credentials, cursor paging)."""
    if ("oauth2", "cursor") not in packages:
        folder = tmp_path_factory.mktemp("scaffold-default")
        result = CliRunner().invoke(main, ["new-adapter", "solar_coop", "--directory", str(folder)])
        assert result.exit_code == 0, result.output
        packages[("oauth2", "cursor")] = folder / "solar_coop"
    return packages[("oauth2", "cursor")]


def test_the_package_has_an_entry_point_a_schema_with_examples_and_cassettes(variant: Path) -> None:
    project = tomllib.loads((variant / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["tanpuhui"] == {"solar_coop": "solar_coop.plugin"}
    assert (variant / "src/solar_coop/schemas/solar-coop-reading.schema.json").is_file()
    cassettes = sorted(p.name for p in (variant / "tests/cassettes/readings").iterdir())
    assert cassettes == [
        "empty_page.json",
        "rate_limited.json",
        "reauth_401.json",
        "resume_after_failure.json",
        "server_error.json",
        "two_pages.json",
    ]


def test_the_generated_package_passes_its_conformance_suite_from_its_cassettes(variant: Path) -> None:
    result = _run_in(variant, "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout + result.stderr
    oauth2 = "client_secret" in (variant / "hub.toml").read_text(encoding="utf-8")
    # Without tokens there is nothing to re-authenticate: that one scenario is skipped (reauth = False).
    assert ("12 passed" if oauth2 else "11 passed, 1 skipped") in result.stdout


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")], ids=["check", "format"])
def test_the_generated_package_is_ruff_clean_under_its_own_settings(variant: Path, command: tuple[str, ...]) -> None:
    result = _run_in(variant, "ruff", *command, "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_package_type_checks_with_mypy_strict(
    variant: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Its pyproject.toml names what to check (src and tests) and where the package is (mypy_path = src). One cache
    # for all variants: tanpuhui itself is checked once.
    cache = tmp_path_factory.getbasetemp() / "scaffold-mypy-cache"
    result = _run_in(variant, "mypy", "--strict", "--cache-dir", str(cache))
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


def test_an_unknown_auth_or_paging_is_refused_with_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-adapter", "solar_coop", "--paging", "token", "--directory", str(tmp_path)])
    assert result.exit_code == 2
    assert "'token' is not one of 'cursor', 'page', 'offset', 'next-url'" in result.output
    assert not any(tmp_path.iterdir())


def test_the_name_of_an_installed_adapter_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-adapter", "transit_card", "--no-record", "--directory", str(tmp_path)])
    assert result.exit_code == 2
    assert "an installed adapter is already named 'transit_card'" in result.output
    assert not (tmp_path / "transit_card").exists()
