"""``tanpuhui run``: pull and forward in one process, as cron runs it; exit statuses consistent with pull."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.cli import main
from tanpuhui.hub.config import load_config
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.store.factory import open_store
from tanpuhui.testing.loopback import free_port

KEYS = "v1:" + base64.b64encode(bytes(range(32))).decode()
WHSEC = "whsec_" + base64.b64encode(b"consumer-secret-for-run-tests!!").decode()


def invoke(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=300, seed=11) as sandbox:
        yield sandbox


def _config(tmp_path: Path, sandbox: TransitSandbox, consumer_url: str) -> tuple[str, dict[str, str]]:
    config = tmp_path / "hub.toml"
    config.write_text(
        f"""
[hub]
store = "hub.db"
pseudonym_keys = {{ env = "T_KEYS" }}
lease_ttl = 1.5

[forwarder]
attempts = 1
give_up_after = 0

[adapters.transit_card]
base_url = "{sandbox.url}"
client_id = "{sandbox.client_id}"
client_secret = {{ env = "T_TRANSIT_SECRET" }}
page_size = 50

[sinks.archive]
type = "jsonl"
path = "out/records.jsonl"

[sinks.platform]
type = "http"
url = "{consumer_url}"
secret = {{ env = "T_CONSUMER_SECRET" }}
"""
    )
    return str(config), {"T_KEYS": KEYS, "T_TRANSIT_SECRET": sandbox.client_secret, "T_CONSUMER_SECRET": WHSEC}


def test_run_pulls_and_delivers_every_record_to_every_sink_and_a_second_run_has_nothing_to_do(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    port = free_port()
    config, env = _config(tmp_path, sandbox, f"http://127.0.0.1:{port}/events")
    expected = sandbox.dataset.expected()["records"]
    with ConsumerServer(WHSEC, port=port) as consumer:
        code, out, err = invoke("run", "--config", config, env=env)
        assert code == 0, out + err
        assert "transit_card:transactions: page of 50 items" in err  # a line per committed page
        assert "Forwarding" in out and str(expected) in out
        assert consumer.stats()["unique"] == expected
        lines = (tmp_path / "out" / "records.jsonl").read_bytes().splitlines()
        assert len({orjson.loads(line)["record_id"] for line in lines}) == len(lines) == expected

        code, out, err = invoke("run", "--config", config, "--quiet", env=env)
        assert (code, out, err) == (0, "", "")  # cron: silence when all went well
        assert consumer.stats()["duplicates"] == 0  # nothing was sent twice
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == expected


def test_run_with_a_sink_down_exits_1_and_quiet_says_which_sink_on_stderr(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    config, env = _config(tmp_path, sandbox, f"http://127.0.0.1:{free_port()}/events")  # nothing listens
    code, out, err = invoke("run", "--config", config, "--quiet", env=env)
    assert code == 1
    assert out == ""
    assert "sink platform:" in err and "dead-lettered" in err
    assert "sink archive" not in err  # the JSONL sink delivered everything
    expected = sandbox.dataset.expected()["records"]
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == expected


def test_run_skipped_for_a_lease_held_elsewhere_exits_75_as_pull_does_and_wait_takes_it_over(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    config, env = _config(tmp_path, sandbox, "http://127.0.0.1:9/events")
    store = open_store(load_config(Path(config), environ=env))
    try:
        assert store.acquire_lease("transit_card", "transactions", "crashed-run", 1.5)
        code, out, _ = invoke("run", "--config", config, "--sink", "archive", env=env)
        assert code == 75, out
        assert "another process holds its lease" in out
        code, out, _ = invoke("run", "--config", config, "--sink", "archive", "--wait", "30", env=env)
        assert code == 0, out
    finally:
        store.close()
    expected = sandbox.dataset.expected()["records"]
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == expected
