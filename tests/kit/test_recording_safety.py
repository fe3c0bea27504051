"""Recording never destroys cassettes, sends no placeholder credentials, reports stale cassettes; `tanpuhui cassettes
check` finds the cassettes that drifted from the adapter's current sandbox.

A scaffolded adapter (tidal_coop: OAuth2, cursor paging) recorded once is copied for each test.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.scaffold import record_cassettes, scaffold

SECRET_VAR = "TIDAL_COOP_CLIENT_SECRET"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = scaffold("tidal_coop", tmp_path_factory.mktemp("recorded"))
    result = record_cassettes(made.root)
    assert result.returncode == 0, result.stdout + result.stderr
    return made.root


@pytest.fixture
def package(recorded: Path, tmp_path: Path) -> Path:
    root = tmp_path / "tidal_coop"
    shutil.copytree(recorded, root)
    return root


def _cassettes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "tests/cassettes/readings").glob("*.json"))}


def _record(root: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != SECRET_VAR}
    environ.update(PYTHONPATH=str(root / "src"), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tanpuhui-record", *options],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


class _Partner(BaseHTTPRequestHandler):
    """A partner that refuses every client (401) and notes what it was sent."""

    seen: list[tuple[str, str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.seen.append((self.command, self.path, self.headers.get("authorization", "")))
        self.rfile.read(length)
        body = b'{"error": "invalid_client"}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def refusing_partner() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    seen: list[tuple[str, str, str]] = []
    handler = type("Handler", (_Partner,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_recording_refused_by_the_partner_keeps_every_old_cassette(
    package: Path, refusing_partner: tuple[str, list[tuple[str, str, str]]]
) -> None:
    before = _cassettes(package)
    url, seen = refusing_partner
    result = _record(package, "--tanpuhui-record-url", url, **{SECRET_VAR: "a-revoked-secret"})
    assert result.returncode != 0
    assert seen, "the partner was never asked"
    assert _cassettes(package) == before, "a failed recording changed the cassettes"
    assert "NOT updated" in result.stdout and "the old ones are kept" in result.stdout
    assert not list((package / "tests/cassettes").glob(".readings.recording-*")), "the staging folder was left behind"


def test_recording_from_a_url_without_credentials_sends_nothing(
    package: Path, refusing_partner: tuple[str, list[tuple[str, str, str]]]
) -> None:
    before = _cassettes(package)
    url, seen = refusing_partner
    result = _record(package, "--tanpuhui-record-url", url)
    assert result.returncode != 0
    assert f"set {SECRET_VAR}" in result.stdout and "no placeholder credential is sent" in result.stdout
    assert seen == [], f"requests reached the partner without its credentials: {seen}"
    assert _cassettes(package) == before


def test_recording_from_a_url_takes_the_credentials_from_the_environment(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _cassettes(package)
    monkeypatch.syspath_prepend(str(package / "src"))
    sandbox = importlib.import_module("tidal_coop.sandbox")
    try:
        with sandbox.SandboxPartner(readings=12, seed=7) as partner:
            result = _record(package, "--tanpuhui-record-url", partner.url, **{SECRET_VAR: partner.client_secret})
    finally:
        for name in [m for m in sys.modules if m == "tidal_coop" or m.startswith("tidal_coop.")]:
            del sys.modules[name]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "recorded 6 cassette(s)" in result.stdout
    assert _cassettes(package) == before  # the same sandbox over HTTP records the same exchanges


def test_a_cassette_or_folder_no_scenario_records_is_reported_as_stale(package: Path) -> None:
    stale = package / "tests/cassettes/readings/three_pages.json"
    stale.write_bytes(b'{"interactions": []}\n')
    renamed = package / "tests/cassettes/readings_v1"  # the suite's folder before a rename
    renamed.mkdir()
    (renamed / "two_pages.json").write_bytes(b'{"interactions": []}\n')
    result = _record(package)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout.replace("\n", " ")
    assert f"stale cassette {stale}" in output
    assert f"stale cassette folder {renamed.resolve()}" in output
    assert stale.exists() and renamed.exists()  # reported, never deleted


def test_cassettes_check_passes_when_the_sandbox_records_what_the_cassettes_hold(package: Path) -> None:
    result = CliRunner().invoke(main, ["cassettes", "check", "tidal_coop", "--project", str(package)])
    assert result.exit_code == 0, result.output
    assert result.output.count(" ok ") == 6


def test_cassettes_check_reports_each_drifted_cassette_and_fails(package: Path) -> None:
    two_pages = package / "tests/cassettes/readings/two_pages.json"
    doc = orjson.loads(two_pages.read_bytes())
    page = next(i for i in doc["interactions"] if "/v1/readings" in i["request"]["url"])
    page["response"]["json"]["items"][0]["saved_kwh"] = 99.5  # the partner's data as it once was
    two_pages.write_bytes(orjson.dumps(doc))
    (package / "tests/cassettes/readings/three_pages.json").write_bytes(b'{"interactions": []}\n')
    (package / "tests/cassettes/readings_v1").mkdir()
    (package / "tests/cassettes/readings_v1/two_pages.json").write_bytes(b'{"interactions": []}\n')
    before = _cassettes(package)
    result = CliRunner().invoke(main, ["cassettes", "check", "--project", str(package)])
    assert result.exit_code == 1, result.output
    rows = {found[0]: line for line in result.output.splitlines() if (found := re.findall(r"readings/\w+\.json", line))}
    assert "drift" in rows["readings/two_pages.json"]
    assert "interaction #1" in rows["readings/two_pages.json"]
    assert "/json/items/0/saved_kwh" in result.output.replace("│", "").replace(" ", "").replace("\n", "")
    assert "stale" in rows["readings/three_pages.json"]
    assert re.search(r"readings_v1\s.*stale", result.output), result.output
    assert all(" ok " in rows[f"readings/{n}.json"] for n in ("rate_limited", "empty_page"))
    assert _cassettes(package) == before  # checking never writes the cassettes


def test_cassettes_check_of_an_adapter_without_a_suite_is_a_usage_error(package: Path) -> None:
    result = CliRunner().invoke(main, ["cassettes", "check", "tidewater", "--project", str(package)])
    assert result.exit_code == 2
    assert "no conformance suite" in result.output and "'tidewater'" in result.output
