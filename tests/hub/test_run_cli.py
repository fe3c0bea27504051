"""``tanpuhui run``: pull and forward in one process, as cron runs it; exit statuses consistent with pull."""

from __future__ import annotations

from pathlib import Path

import orjson
from cli_kit import WHSEC, invoke, transit_config

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.config import load_config
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.store.factory import open_store
from tanpuhui.testing.loopback import free_port


def test_run_pulls_and_delivers_every_record_to_every_sink_and_a_second_run_has_nothing_to_do(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    port = free_port()
    config, env = transit_config(
        tmp_path, sandbox, f"http://127.0.0.1:{port}/events", hub={"lease_ttl": 1.5}, page_size=50
    )
    expected = sandbox.dataset.expected()["records"]
    with ConsumerServer(WHSEC, port=port) as consumer:
        code, out, err = invoke("run", "--config", str(config), env=env)
        assert code == 0, out + err
        assert "transit_card:transactions: page of 50 items" in err  # a line per committed page
        assert "Forwarding" in out and str(expected) in out
        assert consumer.stats()["unique"] == expected
        lines = (tmp_path / "out" / "records.jsonl").read_bytes().splitlines()
        assert len({orjson.loads(line)["record_id"] for line in lines}) == len(lines) == expected

        code, out, err = invoke("run", "--config", str(config), "--quiet", env=env)
        assert (code, out, err) == (0, "", "")  # cron: silence when all went well
        assert consumer.stats()["duplicates"] == 0  # nothing was sent twice
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == expected


def test_run_with_a_sink_down_exits_1_and_quiet_says_which_sink_on_stderr(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    config, env = transit_config(
        tmp_path, sandbox, f"http://127.0.0.1:{free_port()}/events", hub={"lease_ttl": 1.5}, page_size=50
    )  # nothing listens
    code, out, err = invoke("run", "--config", str(config), "--quiet", env=env)
    assert code == 1
    assert out == ""
    assert "sink platform:" in err and "dead-lettered" in err
    assert "sink archive" not in err  # the JSONL sink delivered everything
    expected = sandbox.dataset.expected()["records"]
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == expected


def test_run_skipped_for_a_lease_held_elsewhere_exits_75_as_pull_does_and_wait_takes_it_over(
    tmp_path: Path, sandbox: TransitSandbox
) -> None:
    config, env = transit_config(tmp_path, sandbox, "http://127.0.0.1:9/events", hub={"lease_ttl": 1.5}, page_size=50)
    store = open_store(load_config(config, environ=env))
    try:
        assert store.acquire_lease("transit_card", "transactions", "crashed-run", 1.5)
        code, out, _ = invoke("run", "--config", str(config), "--sink", "archive", env=env)
        assert code == 75, out
        assert "another process holds its lease" in out
        code, out, _ = invoke("run", "--config", str(config), "--sink", "archive", "--wait", "30", env=env)
        assert code == 0, out
    finally:
        store.close()
    expected = sandbox.dataset.expected()["records"]
    assert len((tmp_path / "out" / "records.jsonl").read_bytes().splitlines()) == expected
