"""``tanpuhui pause`` / ``tanpuhui resume``: the console's pause buttons from a terminal, kept in the store and
audited; a target that is not configured is named with what is."""

from __future__ import annotations

from pathlib import Path

from cli_kit import transit_config
from click.testing import CliRunner

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.cli import main
from tanpuhui.hub.pausing import SINK_LEASES, paused, pauses
from tanpuhui.hub.store.queries import AuditQuery
from tanpuhui.hub.store.sqlite import SQLiteStore


def test_pause_and_resume_a_stream_and_a_sink_from_the_terminal(tmp_path: Path, sandbox: TransitSandbox) -> None:
    config, env = transit_config(tmp_path, sandbox, "http://127.0.0.1:9")  # no sink delivers in this test
    run = CliRunner().invoke
    paused_stream = run(main, ["pause", "--config", str(config), "transit_card:transactions"], env=env)
    assert paused_stream.exit_code == 0, paused_stream.output
    assert "transit_card:transactions paused" in paused_stream.output
    paused_sink = run(main, ["pause", "--config", str(config), "--sink", "archive"], env=env)
    assert paused_sink.exit_code == 0 and "archive paused" in paused_sink.output

    store = SQLiteStore(tmp_path / "hub.db")
    try:
        assert paused(store) == {("transit_card", "transactions"), (SINK_LEASES, "archive")}
        [pause] = pauses(store, [("transit_card", "transactions")]).values()
        assert pause.by is not None and pause.by.startswith("cli@") and pause.asked_at
        assert store.audit_count(AuditQuery(action="cli.stream.pause", subject="transit_card:transactions")) == 1
    finally:
        store.close()

    pulled = run(main, ["pull", "--config", str(config), "transit_card:transactions"], env=env)
    assert pulled.exit_code == 4, pulled.output
    assert "transit_card:transactions is paused since" in pulled.output and "paused by cli@" in pulled.output

    resumed = run(main, ["resume", "--config", str(config), "transit_card:transactions"], env=env)
    assert resumed.exit_code == 0 and "transit_card:transactions resumed" in resumed.output
    again = run(main, ["resume", "--config", str(config), "transit_card:transactions"], env=env)
    assert "was not paused" in again.output

    unknown = run(main, ["pause", "--config", str(config), "transit_card:trips"], env=env)
    assert (
        unknown.exit_code == 2 and "'transit_card' has no stream 'trips'; its streams: transactions" in unknown.output
    )
    no_sink = run(main, ["pause", "--config", str(config), "--sink", "outbox"], env=env)
    assert no_sink.exit_code == 2 and "no sink 'outbox'; configured sinks: archive, platform" in no_sink.output
    malformed = run(main, ["pause", "--config", str(config), "transit_card"], env=env)
    assert malformed.exit_code == 2 and "ADAPTER:STREAM" in malformed.output
