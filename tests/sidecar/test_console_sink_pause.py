"""Pausing a sink that is riding out an outage: the replica draining it holds its lease for as long as the outage
lasts (days, by default), so the pause takes the lease over; the replica stops retrying after the try in hand, the
records wait in the outbox, and once resumed (and the consumer back) they are delivered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer, Scripted
from tanpuhui.hub.pausing import SINK_LEASES, paused
from tanpuhui.testing.loopback import wait_until

from .conftest import PSEUDONYM_KEYS, SidecarFactory, hub_config, sink_table
from .console_kit import CONSOLE, csrf_of, signed_in


def test_a_sink_retrying_through_an_outage_can_be_paused_and_resumed(
    start_sidecar: SidecarFactory, tmp_path: Path, consumer: ConsumerServer
) -> None:
    consumer.push(*[Scripted(503)] * 80)  # down for 80 tries (8 s at least at the pace below)
    with TransitSandbox(trips=80, seed=13) as sandbox:
        config = hub_config(
            tmp_path,
            hub={"store": str(tmp_path / "hub.db"), "pseudonym_keys": {"env": "P"}, "lease_ttl": 1.5},
            adapters={"transit_card": sandbox.settings(client_secret={"env": "T"}, page_size=100)},
            environ={"T": sandbox.client_secret, "P": PSEUDONYM_KEYS},
            sinks=sink_table(consumer),
            forwarder={"initial_backoff": "100ms", "max_backoff": "150ms"},
        )
        running = start_sidecar(config)
        store = running.sidecar.hub.store
        pulled = running.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=true")
        assert pulled.status_code == 200, pulled.text
        wait_until(lambda: _state(store) == "retrying", what="the sink retrying")
        client = signed_in(running)
        csrf = csrf_of(client.get(f"{CONSOLE}/sinks").text)
        answer = client.post(f"{CONSOLE}/sinks/platform/pause", data={"csrf": csrf})
        assert answer.status_code == 303 and "platform+paused" in answer.headers["location"], answer.headers
        assert (SINK_LEASES, "platform") in paused(store)

        # The replica notices at its next lease renewal (lease_ttl / 3) and stops trying.
        def settled() -> bool:
            before = consumer.stats()["requests"]
            time.sleep(1.0)
            return consumer.stats()["requests"] == before

        wait_until(settled, timeout=10, what="the retries to stop")
        assert store.counts()["outbox"] > 0 and store.sink_backlog("platform").depth > 0
        assert "paused" in client.get(f"{CONSOLE}/sinks").text

        answer = client.post(f"{CONSOLE}/sinks/platform/resume", data={"csrf": csrf})
        assert answer.status_code == 303
        # The rest of the outage is ridden out (the scripted 503s left), then the backlog is delivered.
        wait_until(lambda: store.sink_backlog("platform").depth == 0, timeout=60, what="the backlog delivered")
        wait_until(lambda: _state(store) == "ok", what="the sink ok")
        client.close()


def _state(store: Any) -> str:
    known = store.sink_states().get("platform")
    return "ok" if known is None else str(known.state)
