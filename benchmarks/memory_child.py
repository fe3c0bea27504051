"""The hub side of the memory benchmark, in a process of its own so its RSS is the hub's alone.

    python -m benchmarks.memory_child --url http://127.0.0.1:PORT --dir DIR --pages N --seconds S

Pulls the transit-card stream from the simulator with :meth:`Hub.pull` (the real adapter: OAuth2, paging, the
network fetched per run, the whole pipeline, SQLite WAL), sampling VmRSS/VmHWM every 0.25 s with the number of
records committed so far, until the pages run out or ``--seconds`` pass; prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

import orjson

from .common import make_hub, rss_kib


class _Budget(Exception):
    """The time budget is spent (raised from the progress callback, after a page was committed)."""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_child")
    parser.add_argument("--url", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    hub = make_hub(
        args.dir,
        adapters={
            "transit_card": {
                "base_url": args.url,
                "client_id": "bench",
                "client_secret": {"env": "S"},
                "page_size": 1000,
            }
        },
    )
    done = {"records": 0, "items": 0, "pages": 0}
    samples: list[tuple[float, int, int, int]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.25):
            rss, hwm = rss_kib()
            samples.append((time.perf_counter() - started, done["records"], rss, hwm))

    def progress(page: object) -> None:
        done["records"] += page.inserted  # type: ignore[attr-defined]
        done["items"] += page.items  # type: ignore[attr-defined]
        done["pages"] += 1
        if time.perf_counter() - started > args.seconds:
            raise _Budget

    sampler = threading.Thread(target=sample, daemon=True)
    rss0, _ = rss_kib()
    sampler.start()
    stopped_early = False

    async def pull() -> None:
        try:
            await hub.pull("transit_card", "transactions", progress=progress, max_pages=args.pages)
        finally:
            await hub.aclose()

    try:
        asyncio.run(pull())
    except _Budget:
        stopped_early = True
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    rss, hwm = rss_kib()
    samples.append((seconds, done["records"], rss, hwm))
    sys.stdout.write(
        orjson.dumps(
            {
                **done,
                "seconds": seconds,
                "stopped_early": stopped_early,
                "rss_start_kib": rss0,
                "samples": samples,
            }
        ).decode()
        + "\n"
    )


if __name__ == "__main__":
    main()
