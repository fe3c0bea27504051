"""`tanpuhui new-adapter NAME` scaffolds a package that passes the conformance suite, ruff and mypy as generated."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.scaffold import AUTH, PAGING, scaffold
from tanpuhui.testing.conformance import AdapterConformance

SUITE_SIZE = sum(name.startswith("test_") for name in dir(AdapterConformance))


def _run_in(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``python -m <command>`` in the package folder, as its author would run it there (with ``src`` on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


VARIANTS = [(auth, paging) for auth in AUTH for paging in PAGING]
"""Every partner shape the scaffold speaks: each must pass its suite, ruff and mypy as generated."""
IDS = [f"{a}-{p}" for a, p in VARIANTS]


@dataclass(frozen=True)
class Variants:
    """One package per variant in ``folder``, all recorded in one pytest run, then each replayed (``replayed``:
    the outcomes of each package's tests, by package folder name)."""

    folder: Path
    roots: dict[tuple[str, str], Path]
    replayed: dict[str, Counter[str]]


def _pytest_all(folder: Path, roots: list[Path], *options: str) -> subprocess.CompletedProcess[str]:
    """One pytest process over the tests of all ``roots`` (each package's ``src`` on the path), in ``folder``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(r / "src") for r in roots)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", *options]
    return subprocess.run(
        [*command, *(str(r / "tests") for r in roots)], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Variants:
    """Every variant scaffolded (``solar_<auth>_<paging>``), its cassettes recorded from its sandbox, then replayed.

    The recordings run in one pytest process over all packages; that is also a live run of every suite."""
    folder = tmp_path_factory.mktemp("scaffold-variants")
    roots = {
        (auth, paging): scaffold(
            f"solar_{auth.replace('-', '')}_{paging.replace('-', '')}", folder, auth=auth, paging=paging
        ).root
        for auth, paging in VARIANTS
    }
    recorded = _pytest_all(folder, list(roots.values()), "--tanpuhui-record")
    assert recorded.returncode == 0, recorded.stdout[-6000:] + recorded.stderr[-2000:]
    replayed: dict[str, Counter[str]] = {}
    for root in roots.values():  # one run per package: a combined run's report cannot tell the packages apart
        report = root / "replay.xml"
        _run_in(root, "pytest", "-q", "-p", "no:cacheprovider", f"--junit-xml={report}")
        replayed[root.name] = Counter(
            next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
            for case in ElementTree.parse(report).iter("testcase")
        )
    return Variants(folder, roots, dict(replayed))


@pytest.fixture(params=VARIANTS, ids=IDS)
def variant(request: pytest.FixtureRequest, variants: Variants) -> Path:
    """The package of one auth and paging."""
    return variants.roots[request.param]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default package (OAuth2 client credentials, cursor paging) scaffolded and recorded through the CLI."""
    folder = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(main, ["new-adapter", "solar_coop", "--directory", str(folder)])
    assert result.exit_code == 0, result.output
    return folder / "solar_coop"


def _has_tokens(root: Path) -> bool:
    return "client_secret" in (root / "hub.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("auth, paging", VARIANTS, ids=IDS)
def test_the_package_has_an_entry_point_a_schema_with_examples_and_cassettes(
    variants: Variants, auth: str, paging: str
) -> None:
    root = variants.roots[(auth, paging)]
    name = root.name
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["tanpuhui"] == {name: f"{name}.plugin"}
    assert (root / f"src/{name}/schemas/{name.replace('_', '-')}-reading.schema.json").is_file()
    cassettes = sorted(p.name for p in (root / "tests/cassettes/readings").iterdir())
    expected = ["empty_page", "rate_limited", "reauth_401", "resume_after_failure", "server_error", "two_pages"]
    if auth != "oauth2":
        expected.remove("reauth_401")  # no tokens, no re-authentication scenario
    assert cassettes == [f"{scenario}.json" for scenario in expected]
    assert _has_tokens(root) == (auth == "oauth2")


@pytest.mark.parametrize("auth, paging", VARIANTS, ids=IDS)
def test_every_variant_passes_its_conformance_suite_from_its_cassettes(
    variants: Variants, auth: str, paging: str
) -> None:
    outcomes = variants.replayed.get(variants.roots[(auth, paging)].name)
    # Without tokens there is nothing to re-authenticate: that one scenario is skipped (reauth = False).
    suite = SUITE_SIZE  # the conformance suite's tests; api-key and none skip the re-authentication one
    assert outcomes == (Counter(passed=suite) if auth == "oauth2" else Counter(passed=suite - 1, skipped=1))


def test_the_cli_generated_package_passes_its_conformance_suite_from_its_cassettes(generated: Path) -> None:
    result = _run_in(generated, "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed" in result.stdout


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")], ids=["check", "format"])
def test_every_variant_is_ruff_clean_under_its_own_settings(variants: Variants, command: tuple[str, ...]) -> None:
    # One run over all packages: ruff reads each file's nearest pyproject.toml (each package's own settings).
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache"], cwd=variants.folder, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_package_type_checks_with_mypy_strict(
    variant: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Its pyproject.toml names what to check (src and tests) and where the package is (mypy_path = src). One cache
    # for all variants: tanpuhui itself is analysed once.
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
