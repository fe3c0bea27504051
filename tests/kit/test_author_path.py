"""An adapter author's path from nothing, outside this repository: tanpuhui installed from a wheel into a fresh
virtual environment, `tanpuhui new-adapter`, the adapter installed against that tanpuhui, its suite, then
`tanpuhui sandbox serve` on a port and `tanpuhui pull` with the hub.toml the scaffold wrote.

The wheel is built once per session (`pip wheel --no-deps`, from a copy of the sources). The fresh environment gets
tanpuhui and the adapter with `--no-deps`; their dependencies come from this test's own environment through a
``.pth`` file, so the test needs no package index for them (docs/adapter-authors.md shows the ordinary install).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tanpuhui.testing.conformance import AdapterConformance

from .serving import serve_banner

ROOT = Path(__file__).parent.parent.parent
SOURCES = ("pyproject.toml", "README.md", "sdk", "hub", "testing", "adapters", "schemas")
# Folders of files the console, the catalogue and the web pages read at run time (package data, not modules).
UI_FOLDERS = ("hub/console/templates", "hub/catalogue/templates", "hub/web/templates", "hub/web/static")


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="session")
def tanpuhui_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tanpuhui as a wheel, built from a copy of the sources (the build writes nothing into the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "tanpuhui"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", source, cwd=work)
    (wheel,) = (work / "dist").glob("tanpuhui-*.whl")
    return wheel


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a shell with this venv activated (nothing of this test's PYTHONPATH)."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        return {**env, **extra}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, tanpuhui_wheel: Path) -> Venv:
    """A fresh venv with tanpuhui installed from the wheel."""
    root = tmp_path_factory.mktemp("venv") / "env"
    _run(sys.executable, "-m", "venv", root, cwd=root.parent)
    made = Venv(root)
    site = Path(
        _run(
            made.bin / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root
        ).stdout.strip()
    )
    # tanpuhui first: once this environment's site-packages is visible, pip would see the tanpuhui installed there
    # (a non-editable install, as in CI) as "already satisfied" and install nothing into the fresh venv.
    _run(made.bin / "python", "-m", "pip", "install", "-q", "--no-deps", tanpuhui_wheel, cwd=root, env=made.env())
    # Dependencies (httpx, pydantic, pytest, ...) from this environment, after the venv's own site-packages.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    return made


def test_tanpuhui_installs_from_its_wheel_with_its_package_data(venv: Venv) -> None:
    probe = (
        "import tanpuhui.hub.scaffold as s, tanpuhui.schemas as d; from importlib import resources as r; "
        "print(s.__file__); print(sum(1 for _ in (r.files(s) / 'adapter-template').iterdir())); "
        "print(len(list(r.files(d).iterdir())))"
    )
    where, templates, schemas = _run(venv.bin / "python", "-c", probe, cwd=venv.root, env=venv.env()).stdout.split()
    assert where.startswith(str(venv.root)), f"tanpuhui was imported from {where}, not the fresh venv"
    assert int(templates) >= 4 and int(schemas) > 1


def test_the_wheel_holds_every_console_catalogue_and_web_template_and_static_file(tanpuhui_wheel: Path) -> None:
    with zipfile.ZipFile(tanpuhui_wheel) as wheel:
        in_wheel = set(wheel.namelist())
    for folder in UI_FOLDERS:
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files, folder
        missing = {f"tanpuhui/{p.relative_to(ROOT).as_posix()}" for p in files} - in_wheel
        assert missing == set(), f"package-data in pyproject.toml leaves {folder} files out of the wheel"


@pytest.fixture(scope="module")
def adapter(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hefei_water scaffolded by the venv's tanpuhui and installed into the venv."""
    folder = tmp_path_factory.mktemp("author")
    _run(venv.bin / "tanpuhui", "new-adapter", "hefei_water", "--directory", folder, cwd=folder, env=venv.env())
    root = folder / "hefei_water"
    _run(venv.bin / "python", "-m", "pip", "install", "-q", "--no-deps", root, cwd=folder, env=venv.env())
    return root


def test_the_installed_adapter_passes_its_suite_against_the_installed_tanpuhui(venv: Venv, adapter: Path) -> None:
    result = _run(venv.bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=adapter, env=venv.env())
    suite = sum(name.startswith("test_") for name in dir(AdapterConformance))
    assert f"{suite} passed" in result.stdout
    listed = _run(venv.bin / "tanpuhui", "adapters", cwd=adapter, env=venv.env()).stdout
    assert "hefei_water" in listed


@pytest.fixture
def served(venv: Venv, adapter: Path) -> Iterator[tuple[subprocess.Popen[str], str, dict[str, str]]]:
    """`tanpuhui sandbox serve hefei_water --port 0` running; its URL and the variables it said to export."""
    process = subprocess.Popen(
        [str(venv.bin / "tanpuhui"), "sandbox", "serve", "hefei_water", "--port", "0"],
        cwd=adapter,
        env=venv.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = serve_banner(process)
        (url,) = re.findall(r'^base_url = "(http://127\.0\.0\.1:\d+)"$', text, re.M)
        exported = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
        yield process, url, exported
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_serve_the_sandbox_and_pull_it_with_the_scaffolded_hub_toml(
    venv: Venv, adapter: Path, served: tuple[subprocess.Popen[str], str, dict[str, str]]
) -> None:
    process, url, exported = served
    assert set(exported) == {"HEFEI_WATER_CLIENT_SECRET"}
    config = adapter / "hub.toml"
    # The scaffold's hub.toml names the default port (8765); this test serves on a free one.
    config.write_text(config.read_text(encoding="utf-8").replace("http://127.0.0.1:8765", url), encoding="utf-8")
    key = "v1:" + base64.b64encode(os.urandom(32)).decode()
    env = venv.env(TANPUHUI_PSEUDONYM_KEYS=key, **exported)
    result = _run(venv.bin / "tanpuhui", "pull", "hefei_water", "--config", "hub.toml", cwd=adapter, env=env)
    assert "hefei_water:readings" in result.stdout
    with sqlite3.connect(adapter / "var" / "hub.db") as db:
        (stored,) = db.execute("SELECT count(*) FROM outbox").fetchone()
    assert stored == 12  # the sandbox's twelve readings, one record each
    again = _run(venv.bin / "tanpuhui", "pull", "hefei_water", "--config", "hub.toml", cwd=adapter, env=env)
    assert "hefei_water:readings" in again.stdout
    with sqlite3.connect(adapter / "var" / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (12,)  # resumed from the cursor: nothing new
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert process.stderr is not None and "hefei_water sandbox stopped" in process.stderr.read()
