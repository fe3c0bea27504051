"""(c) Forwarding: the outbox drained by :class:`Forwarder` + :class:`HttpSink` to a consumer in another process.

The outbox is filled with full-size records (made by the pull path from the benchmark feed, then copied under new
record ids), then ``Forwarder.drain()`` sends them as signed CloudEvents batches of 1,000 (Standard Webhooks headers)
over loopback HTTP/1.1 keep-alive and marks each batch delivered (one SQLite transaction per batch). The consumer is
``benchmarks.fast_consumer`` (raw asyncio: reads the body, verifies the signature, counts events, answers 200), so
the figure is the hub's side. The hub's own reference consumer (``tanpuhui.hub.consumer``: Starlette + uvicorn,
verifies, parses every event, deduplicates on (source, id)) is timed too, for information.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from tanpuhui.adapters.transit_card import TransactionsStream
from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.http import HttpSink
from tanpuhui.hub.store.base import NewRecord
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk.records import record_id_at

from .common import Row, ServerProcess, Sizes, free_port, make_hub, median
from .feed import TransitFeed

__all__ = ["run"]

TARGET = 100_000
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def sample_records(directory: Path, pages: int = 3) -> list[NewRecord]:
    """Real records: the pull path run over a few feed pages."""
    feed = TransitFeed()
    hub = make_hub(directory)
    try:
        rt = hub.stream("transit_card", "transactions")
        assert isinstance(rt.stream, TransactionsStream)
        rt.stream.use_network(feed.network_doc)
        ctx = rt.context({})
        out: list[NewRecord] = []
        for k in range(pages):
            out.extend(hub.pipeline.process(rt, ctx, orjson.loads(feed.page(k, pages))["data"]).records)
        return out
    finally:
        hub.store.close()


def fill_outbox(store: SQLiteStore, samples: list[NewRecord], count: int) -> None:
    """``count`` copies of the sample records under new ids and fingerprints of their own (a copy sharing its
    sample's fingerprint would make every claim lookup of the fill find all earlier copies)."""
    t0 = 1_730_764_800_000
    page: list[NewRecord] = []
    for i in range(count):
        r = samples[i % len(samples)]
        rid = record_id_at(t0 + i * 100, "bench", "forward", str(i))
        page.append(
            NewRecord(
                rid,
                f"{r.fingerprint[:-8]}{i:08x}",
                r.scenario,
                r.reduction_kgco2e,
                r.body.replace(r.record_id.encode(), rid.encode()),
                "",
            )
        )
        if len(page) == 1000:
            store.commit_page("transit_card", "transactions", page, [], None)
            page = []
    if page:
        store.commit_page("transit_card", "transactions", page, [], None)


def _stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:
        stats: dict[str, int] = orjson.loads(response.read())
    return stats


def drain(store: SQLiteStore, url: str, name: str) -> tuple[float, int]:
    sink = HttpSink(name, HttpSink.Settings.model_validate({"type": "http", "url": url, "secret": SECRET}))

    async def go() -> int:
        try:
            summary = await Forwarder(store, {name: sink}, batch_size=1000).drain()
        finally:
            await sink.aclose()
        if not summary.ok:
            raise RuntimeError(f"forwarding failed: {summary[name]}")
        return summary.delivered

    started = time.perf_counter()
    delivered = asyncio.run(go())
    return time.perf_counter() - started, delivered


def _reference_consumer() -> ServerProcess:
    port = free_port()
    return ServerProcess(
        ["-m", "tanpuhui.hub.consumer", "--port", str(port)],
        env={"TANPUHUI_CONSUMER_SECRET": SECRET},
        port=port,
        ready_path="/stats",
    )


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    count = sizes.forward_records
    rates = []
    ref_rate = None
    with tempfile.TemporaryDirectory(prefix="tph-bench-forward-", dir=tmp) as d:
        directory = Path(d)
        samples = sample_records(directory / "samples")
        store = SQLiteStore(directory / "outbox.db")
        try:
            fill_outbox(store, samples, count)
            with ServerProcess(["-m", "benchmarks.fast_consumer"], env={"BENCH_CONSUMER_SECRET": SECRET}) as consumer:
                for attempt in range(sizes.repeats):
                    seconds, delivered = drain(store, consumer.url + "/events", f"fast{attempt}")
                    rates.append(delivered / seconds)
                stats = _stats(consumer.url)
            expected = count * sizes.repeats
            if stats["events"] != expected or stats["bad_signatures"]:
                raise RuntimeError(f"consumer saw {stats}, expected {expected} events with good signatures")
            ref_count = min(count, 20_000)
            server = _reference_consumer()
            try:
                ref_store = SQLiteStore(directory / "outbox-ref.db")
                try:
                    fill_outbox(ref_store, samples, ref_count)
                    seconds, delivered = drain(ref_store, server.url + "/events", "reference")
                    ref_rate = delivered / seconds
                finally:
                    ref_store.close()
            finally:
                server.stop()
        finally:
            store.close()
    figure = median(rates)
    return [
        Row(
            "forwarding to a loopback HTTP consumer (signed CloudEvents batches of 1,000)",
            figure,
            "rec/s",
            f">= {TARGET:,} rec/s",
            figure >= TARGET,
            notes=[
                f"{count:,} records drained {sizes.repeats}x (median) to benchmarks.fast_consumer (raw asyncio, "
                f"another process: verifies every signature, counts events); to the hub's reference consumer "
                f"(tanpuhui.hub.consumer: Starlette/uvicorn, parses and dedups every event): "
                f"{ref_rate:,.0f} rec/s over {ref_count:,} records"
            ],
        )
    ]
