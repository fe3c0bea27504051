"""`tanpuhui serve --workers N`: N processes on one port sharing one store, supervised by the parent.

Real processes: a worker killed is replaced, a webhook delivered to every worker at once is committed once, and
SIGTERM to the parent stops them all with status 0.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from tanpuhui.adapters.yrd_scenarios.sandbox import PLATFORM_PREFIX, SandboxExchange, sandbox_recognition
from tanpuhui.hub.config import load_config
from tanpuhui.hub.demo import to_toml
from tanpuhui.hub.store.factory import open_store
from tanpuhui.sdk import WebhookSigner
from tanpuhui.testing.loopback import free_port, wait_until

from .conftest import PSEUDONYM_KEYS
from .serving import start_serve

PUSH_SECRET = "whsec_" + base64.b64encode(b"yrd-exchange-push-secret-2024-11").decode()
PATH = "/v1/webhooks/yrd_scenarios/records_push"


def _toml(directory: Path, workers: int) -> Path:
    yrd = {
        "endpoints": {
            "exchange": {
                "base_url": "http://127.0.0.1:9",
                "client_id": "hub",
                "client_secret": {"env": "YRD_CLIENT_SECRET"},
                "platforms": list(PLATFORM_PREFIX),
            }
        },
        **sandbox_recognition(),
        "webhook_secrets": [{"env": "YRD_PUSH_SECRET"}],
    }
    path = directory / "hub.toml"
    document = {
        "hub": {"store": "hub.db", "pseudonym_keys": {"env": "TANPUHUI_PSEUDONYM_KEYS"}},
        "server": {"workers": workers, "shutdown_timeout": "3s", "forward": False},
        "adapters": {"yrd_scenarios": yrd},
    }
    path.write_text(to_toml(document), encoding="utf-8")
    return path


ENV = {
    **os.environ,
    "TANPUHUI_PSEUDONYM_KEYS": PSEUDONYM_KEYS,
    "YRD_PUSH_SECRET": PUSH_SECRET,
    "YRD_CLIENT_SECRET": "unused",
}


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _pid(port: int) -> int | None:
    try:  # a new connection each time, so the kernel picks a worker each time
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except httpx.TransportError:
        return None
    return int(response.json()["pid"])


def test_workers_share_the_port_and_the_store_are_replaced_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(_toml(tmp_path, 2), port, log, ENV)
    try:
        workers = wait_until(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 20, "two workers")
        answered = wait_until(
            lambda: {p for p in (_pid(port) for _ in range(40)) if p} == workers or None, 30, "both workers to answer"
        )
        assert answered

        # The same signed delivery reaches both workers at once: one commit, one answer given to every attempt.
        items = SandboxExchange(200, 11).dataset.items[:50]  # the sandbox's mix: most credited, some quarantined
        body = b'{"items":' + orjson.dumps(items) + b"}"
        headers = {**WebhookSigner(PUSH_SECRET).headers("msg_workers_0001", body), "content-type": "application/json"}

        def push(_: int) -> tuple[int, bytes]:
            r = httpx.post(f"http://127.0.0.1:{port}{PATH}", content=body, headers=headers, timeout=10)
            return r.status_code, r.content

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(push, range(16)))
        # 409: the same id is being processed right now (retry later), in this worker or in the other.
        assert {status for status, _ in answers} <= {200, 409}
        answers = [a if a[0] == 200 else push(0) for a in answers]  # the partner's retries
        assert {status for status, _ in answers} == {200}
        assert len({content for _, content in answers}) == 1
        first = orjson.loads(answers[0][1])
        store = open_store(load_config(tmp_path / "hub.toml", environ=ENV))
        try:
            assert len(store.read_outbox(0, 100)) == first["records"] > 0
        finally:
            store.close()

        # A worker that dies (after it started properly) is replaced; the other keeps serving.
        time.sleep(5.5)  # past MIN_LIFETIME: a worker that dies sooner is taken for a start-up failure
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: (c := _children(proc.pid)) and len(c) == 2 and victim not in c and c, 20, "a new worker"
        )
        assert replaced - workers
        wait_until(
            lambda: {p for p in (_pid(port) for _ in range(40)) if p} == replaced, 30, "the new worker to answer"
        )

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
        for pid in replaced:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited, not reaped yet


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(_toml(tmp_path, 2), port, tmp_path / "serve.log", ENV)
    try:
        workers = wait_until(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 20, "two workers")
        wait_until(lambda: _pid(port) is not None, 20, "a worker to answer")
        proc.kill()  # SIGKILL: the supervisor cannot pass anything on
        proc.wait()
        wait_until(lambda: all(_gone(pid) for pid in workers), 20, "the workers to stop with their supervisor")
        assert _pid(port) is None  # nobody left on the port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("store", "port", "expected"),
    [
        (":memory:", None, "needs a store file or PostgreSQL, not :memory:"),
        ("hub.db", 0, "workers need a fixed port"),
    ],
)
def test_workers_refuse_what_they_cannot_share_with_a_clear_error(
    tmp_path: Path, store: str, port: int | None, expected: str
) -> None:
    config = _toml(tmp_path, 2)
    config.write_text(config.read_text().replace('store = "hub.db"', f'store = "{store}"'))
    exe = Path(sys.executable).parent / "tanpuhui"
    result = subprocess.run(
        [str(exe), "serve", "--config", str(config), "--port", str(free_port() if port is None else port)],
        capture_output=True,
        env=ENV,
        timeout=30,
    )
    assert result.returncode != 0
    assert expected in result.stderr.decode() + result.stdout.decode()
    assert b"Traceback" not in result.stderr
