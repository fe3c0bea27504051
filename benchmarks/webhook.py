"""(d) Webhook ingest: signed pushes to the sidecar, one record per request at a fixed offered rate, and batches.

The sidecar runs as the operator runs it (``tanpuhui serve`` in its own process: uvicorn, one worker, the ingest
thread with group commit, SQLite WAL ``synchronous=FULL``), with the YRD scenarios adapter's push stream
(``/v1/webhooks/yrd_scenarios/records_push``, Standard Webhooks secrets) and the YRD sandbox's records. The load
generator here is raw asyncio HTTP/1.1 over keep-alive connections (opened as needed, so a slow answer never holds
back the next request):

- single: one record per request, offered open-loop at 1,000 requests/s; latency is measured from the moment a
  request was due, so time spent queued behind a slow server counts (no coordinated omission);
- batched: 500 records per request back to back, records/s over the whole run: the figure is ``serve --workers 2``
  (one sidecar process per core, sharing the port and the store) with 16 connections; with 8, and one worker
  with 4, are in the notes.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tanpuhui.hub.demo import to_toml
from tanpuhui.sdk import WebhookSigner

from .common import PSEUDONYM_KEYS, Row, ServerProcess, Sizes, free_port

__all__ = ["run"]


RATE = 1000
TARGET_P99_MS = 25.0
TARGET_BATCHED = 30_000
BATCH = 500
WORKERS = 2
"""Sidecar processes for the batched run: one per core of the benchmark machine."""
PUSH_SECRET = "whsec_" + base64.b64encode(b"benchmark-yrd-push-secret-32byte").decode()
PATH = "/v1/webhooks/yrd_scenarios/records_push"


def _adapter_settings(secret: Any) -> dict[str, Any]:
    from tanpuhui.adapters.yrd_scenarios.sandbox import PLATFORM_PREFIX, sandbox_recognition

    return {
        "endpoints": {
            "exchange": {
                "base_url": "http://127.0.0.1:9",
                "client_id": "bench",
                "client_secret": {"env": "BENCH_YRD_CLIENT_SECRET"},
                "platforms": list(PLATFORM_PREFIX),
            }
        },
        **sandbox_recognition(),
        "webhook_secrets": [secret],
    }


def _config(directory: Path) -> Path:
    document = {
        "hub": {"store": str(directory / "hub.db"), "pseudonym_keys": {"env": "BENCH_PSEUDONYM_KEYS"}},
        "server": {"forward": False, "log_level": "warning"},
        "adapters": {"yrd_scenarios": _adapter_settings({"env": "BENCH_PUSH_SECRET"})},
    }
    path = directory / "hub.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


def _requests(items: list[bytes], per_request: int, prefix: str) -> list[tuple[dict[str, str], bytes]]:
    signer = WebhookSigner(PUSH_SECRET)
    out = []
    for n, offset in enumerate(range(0, len(items) - per_request + 1, per_request)):
        body = b'{"items":[' + b",".join(items[offset : offset + per_request]) + b"]}"
        out.append((signer.headers(f"{prefix}-{n:07d}", body), body))
    return out


def _raw(headers: dict[str, str], body: bytes) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    )
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


# -- the load generator (raw asyncio HTTP/1.1) -----------------------------------------------------------------


class _Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.statuses: dict[int, int] = {}

    async def send(self, raw: bytes) -> int:
        # Like any HTTP client: an idle keep-alive connection the server has closed meanwhile (uvicorn closes one
        # after 5 s idle, and an idle list under bursty load keeps some that long) is dropped, and a request that
        # meets such a close on a reused connection is sent again on a new one (the time spent counts).
        while self.idle:
            reader, writer = conn = self.idle.pop()
            if not reader.at_eof():
                writer.write(raw)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    continue
                return await self._finish(conn, head)
            writer.close()
        conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = conn
        writer.write(raw)
        return await self._finish(conn, await reader.readuntil(b"\r\n\r\n"))

    async def _finish(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], head: bytes) -> int:
        reader, _ = conn
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        self.idle.append(conn)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _open_loop(port: int, raws: list[bytes], rate: float) -> tuple[list[float], float, dict[int, int]]:
    """Send at ``rate`` per second (open loop); latencies from each request's due time.

    The load generator's own garbage collector is off while it runs: with 10,000 tasks alive, one full collection
    paused it for ~50 ms, and every request due meanwhile was counted late, a stall of the client's, not the hub's.
    """
    gc.collect()
    gc.disable()
    try:
        return await _open_loop_timed(port, raws, rate)
    finally:
        gc.enable()


async def _open_loop_timed(port: int, raws: list[bytes], rate: float) -> tuple[list[float], float, dict[int, int]]:
    client = _Client(port)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def one(raw: bytes, due: float) -> None:
        await client.send(raw)
        latencies.append(loop.time() - due)

    start = loop.time() + 0.05
    tasks = []
    for i, raw in enumerate(raws):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(raw, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    await client.close()
    return latencies, elapsed, client.statuses


async def _closed_loop(port: int, raws: list[bytes], connections: int) -> tuple[float, dict[int, int]]:
    client = _Client(port)
    queue = list(reversed(raws))

    async def worker() -> None:
        while queue:
            await client.send(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, client.statuses


# -- the sidecar ---------------------------------------------------------------------------------------------


def _sidecar(directory: Path, workers: int = 1) -> ServerProcess:
    """``tanpuhui serve --workers N`` (the console script's entry point) on a free loopback port."""
    port = free_port()
    return ServerProcess(
        [
            "-c",
            "from tanpuhui.hub.cli import main; main()",
            "serve",
            "--config",
            str(_config(directory)),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env={
            "BENCH_PSEUDONYM_KEYS": PSEUDONYM_KEYS,
            "BENCH_PUSH_SECRET": PUSH_SECRET,
            "BENCH_YRD_CLIENT_SECRET": "unused",
        },
        port=port,
        ready_path="/healthz",
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    from tanpuhui.adapters.yrd_scenarios.sandbox import SandboxExchange

    warm = 200
    single_n = int(RATE * sizes.webhook_seconds)
    capacity_n = single_n // 2
    exchange = SandboxExchange(warm + single_n + capacity_n + sizes.webhook_batches * BATCH, 11)
    items = [orjson.dumps(item) for item in exchange.dataset.items]
    warmup = _requests(items[:warm], 1, "bench-warm")
    singles = _requests(items[warm : warm + single_n], 1, "bench-single")
    capacity = _requests(items[warm + single_n : warm + single_n + capacity_n], 1, "bench-capacity")
    batches = _requests(items[warm + single_n + capacity_n :], BATCH, "bench-batch")
    with tempfile.TemporaryDirectory(prefix="tph-bench-webhook-", dir=tmp) as d, _sidecar(Path(d)) as sidecar:
        port = sidecar.port
        asyncio.run(_open_loop(port, [_raw(*r) for r in warmup], RATE / 4))
        latencies, elapsed, statuses = asyncio.run(_open_loop(port, [_raw(*r) for r in singles], RATE))
        capacity_s, capacity_statuses = asyncio.run(_closed_loop(port, [_raw(*r) for r in capacity], 16))
        one_s, one_statuses = asyncio.run(_closed_loop(port, [_raw(*r) for r in batches], 4))
    # The same batches again, each time to a fresh store: one worker per core. The kernel hands each new connection
    # to a worker by a hash of its addresses (SO_REUSEPORT), so with few connections one worker often gets most of
    # them: 8 per worker is the figure, 4 per worker is in the notes.
    runs: dict[int, float] = {}
    for connections in (8 * WORKERS, 4 * WORKERS):
        with tempfile.TemporaryDirectory(prefix="tph-bench-webhook-", dir=tmp) as d, _sidecar(Path(d), WORKERS) as w:
            runs[connections], batch_statuses = asyncio.run(
                _closed_loop(w.port, [_raw(*r) for r in batches], connections)
            )
            one_statuses = {
                k: one_statuses.get(k, 0) + batch_statuses.get(k, 0) for k in {*one_statuses, *batch_statuses}
            }
    batch_s = runs[8 * WORKERS]
    statuses = {k: statuses.get(k, 0) + capacity_statuses.get(k, 0) for k in {*statuses, *capacity_statuses}}
    bad = {k: v for k, v in {**statuses, **one_statuses}.items() if k != 200}
    if bad:
        raise RuntimeError(f"webhook requests failed: {bad}")
    p50, p99 = _percentile(latencies, 0.50) * 1e3, _percentile(latencies, 0.99) * 1e3
    achieved = len(singles) / elapsed
    records = len(batches) * BATCH
    batched, batched_one = records / batch_s, records / one_s
    return [
        Row(
            f"webhook ingest, 1 record per signed request at {RATE:,} req/s offered: p99",
            p99,
            "ms",
            f"< {TARGET_P99_MS:.0f} ms",
            p99 < TARGET_P99_MS,
            notes=[
                f"the sidecar (tanpuhui serve, one worker, another process); {len(singles):,} requests in "
                f"{elapsed:.1f} s ({achieved:,.0f} req/s achieved), p50 {p50:.1f} ms, p99 {p99:.1f} ms, max "
                f"{max(latencies) * 1e3:.1f} ms (from the due time); capacity, closed loop with 16 connections: "
                f"{len(capacity) / capacity_s:,.0f} single-record requests/s"
            ],
        ),
        Row(
            f"webhook ingest, batched ({BATCH} records per request, serve --workers {WORKERS})",
            batched,
            "rec/s",
            f">= {TARGET_BATCHED:,} rec/s",
            batched >= TARGET_BATCHED,
            notes=[
                f"{len(batches)} requests of {BATCH} records, {8 * WORKERS} connections, {batch_s:.1f} s, to "
                f"{WORKERS} workers (one per core) sharing the port and the SQLite store; with {4 * WORKERS} "
                f"connections: {records / runs[4 * WORKERS]:,.0f} rec/s; one worker, 4 connections: "
                f"{batched_one:,.0f} rec/s"
            ],
        ),
    ]
