"""`tanpuhui sandbox serve NAME`: any installed adapter's sandbox on a port, with the settings to reach it."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from tanpuhui.hub.cli import main

from .serving import serve_banner


def test_an_adapter_without_a_sandbox_is_refused_with_the_ones_installed() -> None:
    result = CliRunner().invoke(main, ["sandbox", "serve", "hefei_bike"])
    assert result.exit_code == 2
    assert "no installed adapter named 'hefei_bike' offers a sandbox" in result.output
    assert "transit_card" in result.output and "state_grid" in result.output


def test_serve_prints_a_table_and_variables_that_reach_the_sandbox_until_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    command = [sys.executable, "-c", "from tanpuhui.hub.cli import main; main()", "sandbox", "serve", "transit_card"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = serve_banner(process)
        assert "[adapters.transit_card]" in text
        assert 'client_secret = { env = "TRANSIT_CARD_CLIENT_SECRET" }' in text
        (url,) = re.findall(r'^base_url = "(http://127\.0\.0\.1:\d+)"$', text, re.M)
        (client_id,) = re.findall(r'^client_id = "([^"]+)"$', text, re.M)
        (secret,) = re.findall(r"^export TRANSIT_CARD_CLIENT_SECRET=(\S+)$", text, re.M)
        token = httpx.post(
            f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10
        )
        assert token.status_code == 200 and token.json()["access_token"]
        assert env_file.read_text(encoding="utf-8") == f"TRANSIT_CARD_CLIENT_SECRET={secret}\n"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    assert code == 0
    assert process.stderr is not None and "transit_card sandbox stopped" in process.stderr.read()
