"""A consumer outage as the sidecar shows it: /readyz and the metrics while a sink retries or stopped, the recovery,
and SIGTERM in the middle of a long retry wait."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.testing.loopback import wait_until

from .conftest import CONSUMER_SECRET, SidecarFactory, ride, sink_table
from .serving import serve_process, transit_env, transit_hub_toml
from .test_health_metrics import metric

FAST_RETRIES = {"initial_backoff": "50ms", "max_backoff": "200ms"}


def platform_readiness(server: Any) -> tuple[int, dict[str, Any]]:
    response = server.http.get("/readyz")
    return response.status_code, response.json()["checks"]["sinks"]["platform"]


def test_readyz_is_503_while_a_sink_retries_and_200_once_it_recovered_which_the_metrics_count(
    start_sidecar: SidecarFactory, consumer: ConsumerServer
) -> None:
    consumer.set_mode("down")  # answers 503 to every delivery (and 405 to the reachability check)
    server = start_sidecar(sinks=sink_table(consumer), forwarder=FAST_RETRIES)
    assert server.post_ride([ride(1), ride(2)], "msg_outage").status_code == 200

    status, platform = wait_until(
        lambda: (r := platform_readiness(server))[1]["state"] == "retrying" and r[1]["attempts"] >= 3 and r,
        what="the sink to be retrying",
    )
    assert status == 503 and platform["ok"] is False
    assert "HTTP 503" in platform["error"] and "HTTP 503" in platform["last_error"]
    assert platform["since"] and platform["given_up"] is False
    text = server.http.get("/metrics").text
    assert metric(text, "tanpuhui_sink_state", sink="platform", state="retrying") == 1
    assert metric(text, "tanpuhui_sink_state", sink="platform", state="ok") == 0
    assert metric(text, "tanpuhui_sink_outage_seconds", sink="platform") > 0
    assert metric(text, "tanpuhui_sink_failed_attempts", sink="platform") >= 3
    assert metric(text, "tanpuhui_sink_recoveries_total", sink="platform") == 0

    consumer.set_mode("normal")

    wait_until(lambda: server.http.get("/readyz").status_code == 200, what="readiness after the recovery")
    assert platform_readiness(server)[1] == {"ok": True, "state": "ok"}
    assert consumer.stats()["unique"] == 2
    text = server.http.get("/metrics").text
    assert metric(text, "tanpuhui_sink_state", sink="platform", state="ok") == 1
    assert metric(text, "tanpuhui_sink_outage_seconds", sink="platform") == 0
    assert metric(text, "tanpuhui_sink_recoveries_total", sink="platform") == 1
    assert metric(text, "tanpuhui_dead_letters") == 0


def test_readyz_is_503_after_a_410_and_says_why(start_sidecar: SidecarFactory, consumer: ConsumerServer) -> None:
    consumer.set_mode("gone")
    server = start_sidecar(sinks=sink_table(consumer), forwarder=FAST_RETRIES)
    assert server.post_ride(ride(1), "msg_gone").status_code == 200

    status, platform = wait_until(
        lambda: (r := platform_readiness(server))[1]["state"] == "stopped" and r, what="the sink to stop"
    )

    assert status == 503 and platform["ok"] is False
    assert "410" in platform["error"] and "stopped since" in platform["error"]
    text = server.http.get("/metrics").text
    assert metric(text, "tanpuhui_sink_state", sink="platform", state="stopped") == 1


def test_sigterm_during_a_long_retry_wait_stops_the_process_at_once(tmp_path: Path) -> None:
    with TransitSandbox(trips=200, seed=5) as sandbox:
        down = ConsumerServer(CONSUMER_SECRET)  # bound, not started: every delivery is refused
        try:
            config_path = transit_hub_toml(
                tmp_path, sandbox, down.url, shutdown_timeout="30s", forwarder={"initial_backoff": "10m"}
            )
            env = transit_env(sandbox)
            log_path = tmp_path / "serve.log"
            with serve_process(config_path, log_path, env) as (proc, port):
                client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
                wait_until(lambda: _waiting_to_retry(client), timeout=30, what="the sink to wait for its retry")
                client.close()
                proc.send_signal(signal.SIGTERM)
                asked = time.monotonic()
                code = proc.wait(timeout=60)
                took = time.monotonic() - asked
        finally:
            down.close()
    log = log_path.read_text(encoding="utf-8")
    assert code == 0, log[-3000:]
    assert took < 10, f"took {took:.1f} s: the 10 min retry wait was not interrupted (shutdown_timeout is 30 s)"
    assert "delivery failing" in log and "did not finish by the shutdown deadline" not in log


def _waiting_to_retry(client: httpx.Client) -> bool:
    try:
        platform = client.get("/readyz").json()["checks"]["sinks"]["platform"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return platform.get("state") == "retrying" and platform.get("next_attempt_at") is not None
