"""`tanpuhui serve` as a real process: SIGTERM drains and exits 0 within the bound, nothing committed is lost,
and its JSON logs carry request ids but no personal identifiers or secrets."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import orjson

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.config import load_config
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.hub import Hub
from tanpuhui.testing.loopback import wait_until

from .conftest import ADMIN_TOKEN, CONSUMER_SECRET, MOBILE, PSEUDONYM_KEYS, RESIDENT_ID
from .serving import serve_process, transit_env, transit_hub_toml

SHUTDOWN_TIMEOUT = 5


def test_sigterm_drains_exits_0_keeps_committed_data_and_logs_leak_nothing(tmp_path: Path) -> None:
    with TransitSandbox(trips=20000, seed=9) as sandbox, ConsumerServer(CONSUMER_SECRET) as consumer:
        config_path = transit_hub_toml(
            tmp_path, sandbox, consumer.url, shutdown_timeout=f"{SHUTDOWN_TIMEOUT}s", page_size=100
        )
        env = transit_env(sandbox)
        log_path = tmp_path / "serve.log"
        with serve_process(config_path, log_path, env) as (proc, port):
            base = f"http://127.0.0.1:{port}"
            client = httpx.Client(base_url=base, timeout=10)
            wait_until(lambda: _alive(client), timeout=20, what="the sidecar to answer /healthz")
            admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
            # Traffic carrying personal identifiers and secrets in every place a log could pick them up.
            doc = {"txn_id": MOBILE, "card_no": RESIDENT_ID, "deal_time": f"2024-11-05 {MOBILE}"}
            assert (
                client.post("/v1/validate/transit-card-trip", json=doc, headers={"x-request-id": MOBILE}).status_code
                == 200
            )
            assert client.post(f"/v1/validate/{RESIDENT_ID}", json=doc).status_code == 404
            assert (
                client.get("/v1/admin/streams", headers={"authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}).status_code
                == 401
            )
            assert (
                client.get("/v1/admin/streams", headers={"authorization": f"Bearer {CONSUMER_SECRET}"}).status_code
                == 401
            )
            assert client.get("/v1/admin/quarantine", headers=admin).status_code == 200
            stream = wait_until(lambda: _transit(client, admin), timeout=30, what="the first committed page")
            assert stream["cursor"]
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = proc.wait(timeout=SHUTDOWN_TIMEOUT * 2 + 10)
            took = time.monotonic() - started
        assert code == 0, log_path.read_text()[-3000:]
        assert took < SHUTDOWN_TIMEOUT + 5

        # Nothing committed was lost or doubled: resuming from the saved cursor completes the dataset exactly.
        expected = sandbox.dataset.expected()["records"]
        os.environ.setdefault("TANPUHUI_PSEUDONYM_KEYS", PSEUDONYM_KEYS)
        config = load_config(config_path, environ=env)
        hub = Hub(config)

        async def resume() -> int:
            try:
                (summary,) = await hub.pull("transit_card", "transactions")
                assert summary.error is None and summary.duplicates == 0
                rows = hub.store.read_outbox(0, 1_000_000)
                assert len({r.record_id for r in rows}) == len(rows)
                return len(rows)
            finally:
                await hub.aclose()

        assert asyncio.run(resume()) == expected

        lines = log_path.read_text(encoding="utf-8").splitlines()
        records = [orjson.loads(line) for line in lines]  # every line is one JSON object
        assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
        access = [r for r in records if r["logger"] == "tanpuhui.access"]
        assert access and all(r["request_id"] for r in access)
        assert any(r["msg"].startswith("shutting down") for r in records)
        text = log_path.read_text(encoding="utf-8")
        mobiles = {i["account_mobile"] for i in sandbox.dataset.items if i.get("account_mobile")}
        forbidden = {
            MOBILE,
            RESIDENT_ID,
            ADMIN_TOKEN,
            ADMIN_TOKEN[:-1],
            CONSUMER_SECRET,
            CONSUMER_SECRET.removeprefix("whsec_"),
            sandbox.client_secret,
            PSEUDONYM_KEYS.split(":", 1)[1],
            *mobiles,
        }
        leaked = sorted(s for s in forbidden if s in text)
        assert not leaked, f"leaked into logs: {leaked}"


def _alive(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _transit(client: httpx.Client, admin: dict[str, str]) -> dict[str, object] | None:
    for s in client.get("/v1/admin/streams", headers=admin).json()["streams"]:
        if s["stream"] == "transactions" and s["cursor"]:
            return s
    return None
