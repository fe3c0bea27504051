"""`tanpuhui demo --sink nats`: the demo forwards one message per record to JetStream and reads back what arrived."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3

import nats
import pytest
from click.testing import CliRunner
from sink_brokers import BrokerProcess

from tanpuhui.hub.cli import main
from tanpuhui.testing.loopback import free_port


async def stream_ids(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("TANPUHUI_DEMO")
        return [
            (await js.get_msg("TANPUHUI_DEMO", seq)).headers["ce-id"]  # type: ignore[index]
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    finally:
        await nc.close()


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server")
def test_demo_sink_nats_creates_its_stream_publishes_each_record_once_and_shows_what_arrived(tmp_path, monkeypatch):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    monkeypatch.setenv("NATS_URL", url)
    workdir = tmp_path / "demo"
    command = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")]
    with BrokerProcess(command, port, tmp_path / "nats.log"):
        first = CliRunner().invoke(main, ["demo", "--trips", "200", "--workdir", str(workdir), "--sink", "nats"])
        assert first.exit_code == 0, first.output
        again = CliRunner().invoke(main, ["demo", "--trips", "200", "--workdir", str(workdir), "--sink", "nats"])
        assert again.exit_code == 0, again.output
        ids = asyncio.run(stream_ids(url))

    with sqlite3.connect(workdir / "hub.db") as db:
        stored = {row[0] for row in db.execute("SELECT record_id FROM outbox")}
    assert sorted(ids) == sorted(stored)  # one message per record; the second run sent nothing again
    assert re.search(rf"NATS stream TANPUHUI_DEMO: arrived / unique │ +{len(stored)} / {len(stored)} │", first.output)
    assert re.search(r"NATS stream TANPUHUI_DEMO: arrived / unique │ +0 / 0 │", again.output)
    assert 'type = "nats"' in (workdir / "hub.toml").read_text()


def test_demo_sink_nats_says_how_to_fix_an_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path / "demo"), "--sink", "nats"])
    assert result.exit_code != 0
    assert "cannot reach NATS at nats://127.0.0.1:" in result.output and "NATS_URL" in result.output
    assert "Traceback" not in result.output
