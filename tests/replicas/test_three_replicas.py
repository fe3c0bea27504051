"""Three `tanpuhui serve` replicas on one PostgreSQL and one partner; the one pulling is SIGKILLed mid-pull.

What must hold afterwards: another replica took the stream's lease over (after its ttl) and carried on from the
committed cursor, so the outbox holds every expected record exactly once (no gap, no duplicate), every bad item was
quarantined exactly once (a page committed by the dead replica was not pulled again), and the consumer received
every record (at least once: a batch in flight when a replica dies is sent again).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from store.pg import temporary_database, temporary_schema

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.testing.loopback import free_port, wait_until

PSEUDONYM_KEYS = "v1:" + "cmVwbGljYS10ZXN0LXBzZXVkb255bS1rZXktMzJieXQ="
CONSUMER_SECRET = "whsec_cmVwbGljYXMtY29uc3VtZXItc2VjcmV0LTIwMjQhIQ=="
LEASE_TTL = 2.0

TOML = """
[hub]
store = {{ env = "TANPUHUI_STORE_URL" }}
pseudonym_keys = {{ env = "TANPUHUI_PSEUDONYM_KEYS" }}
lease_ttl = {ttl}

[adapters.transit_card]
base_url = "{sandbox}"
client_id = "{client_id}"
client_secret = {{ env = "TRANSIT_CLIENT_SECRET" }}
page_size = 40

[sinks.platform]
type = "http"
url = "{consumer}"
secret = {{ env = "PLATFORM_WEBHOOK_SECRET" }}

[server]
shutdown_timeout = "5s"
forward_idle = "200ms"

[server.schedules.transit_card]
interval = "300ms"
jitter = 0.0
"""


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with temporary_database() as database, temporary_schema(database) as url:
        yield url


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


def test_three_replicas_one_killed_mid_pull_no_gap_no_duplicate(tmp_path: Path, pg_url: str) -> None:
    with TransitSandbox(trips=2500, seed=11) as sandbox, ConsumerServer(CONSUMER_SECRET) as consumer:
        expected = sandbox.dataset.expected()
        config = tmp_path / "hub.toml"
        config.write_text(
            TOML.format(ttl=LEASE_TTL, sandbox=sandbox.url, client_id=sandbox.client_id, consumer=consumer.url)
        )
        env = {
            **os.environ,
            "TANPUHUI_STORE_URL": pg_url,
            "TANPUHUI_PSEUDONYM_KEYS": PSEUDONYM_KEYS,
            "TRANSIT_CLIENT_SECRET": sandbox.client_secret,
            "PLATFORM_WEBHOOK_SECRET": CONSUMER_SECRET,
        }
        exe = str(Path(sys.executable).parent / "tanpuhui")

        # Before migrating, a replica refuses to start and says what to do.
        refused = subprocess.run(
            [exe, "pull", "transit_card", "--config", str(config)], env=env, capture_output=True, text=True
        )
        assert refused.returncode == 2 and "run `tanpuhui migrate --config hub.toml`" in refused.stderr
        migrated = subprocess.run([exe, "migrate", "--config", str(config)], env=env, capture_output=True, text=True)
        assert migrated.returncode == 0, migrated.stderr

        procs: list[subprocess.Popen[bytes]] = []
        logs = []
        try:
            for i in range(3):
                log = (tmp_path / f"replica{i}.log").open("wb")
                logs.append(log)
                procs.append(
                    subprocess.Popen(
                        [exe, "serve", "--config", str(config), "--port", str(free_port())],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        env=env,
                    )
                )

            def holder() -> int | None:
                owner = scalar(
                    pg_url, "SELECT owner FROM leases WHERE adapter='transit_card' AND stream='transactions'"
                )
                return int(owner.split(":")[1]) if owner else None

            def outbox() -> int:
                return int(scalar(pg_url, "SELECT count(*) FROM outbox") or 0)

            # Mid-pull: some pages committed, most of the partner's data still to come.
            wait_until(lambda: outbox() >= expected["records"] // 5, 60, "the first pages")
            victim = holder()
            at_kill = outbox()
            assert victim in {p.pid for p in procs}, "the lease holder is one of the replicas"
            assert at_kill < expected["records"], "killed before the pull was done"
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()

            # Another replica takes the stream over once the lease expired and finishes it.
            new_holder = wait_until(lambda: (h := holder()) not in (None, victim) and h, 30, "a takeover")
            assert new_holder in {p.pid for p in procs} - {victim}
            assert time.monotonic() - killed_at >= LEASE_TTL * 0.5  # it did wait for the dead replica's lease
            wait_until(lambda: outbox() >= expected["records"], 120, "the whole dataset in the outbox")
            wait_until(lambda: consumer.stats()["unique"] >= expected["records"], 60, "every record delivered")
            time.sleep(1.0)  # a few more scheduled runs: they must add nothing
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=30) for p in procs]
            for log in logs:
                log.close()

        survivors = [code for p, code in zip(procs, codes, strict=True) if p.pid != victim]
        assert survivors == [0, 0], [(tmp_path / f"replica{i}.log").read_text()[-2000:] for i in range(3)]

        total = scalar(pg_url, "SELECT count(*) FROM outbox")
        distinct = scalar(pg_url, "SELECT count(DISTINCT record_id) FROM outbox")
        quarantined = scalar(pg_url, "SELECT count(*) FROM quarantine")
        position = scalar(pg_url, "SELECT seq FROM sink_positions WHERE sink='platform'")
        top = scalar(pg_url, "SELECT max(seq) FROM outbox")
        with psycopg.connect(pg_url) as conn:
            ids = {r[0] for r in conn.execute("SELECT record_id FROM outbox")}
        assert total == distinct == expected["records"]  # no gap, no duplicate
        assert quarantined == expected["quarantined"]  # no committed page was pulled twice
        assert set(consumer.ids()) == ids  # every record reached the consumer (at least once)
        assert position == top
        assert sandbox.stats.items_served >= expected["items"]
        assert consumer.stats()["unique"] == expected["records"]
