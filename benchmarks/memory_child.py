"""The hub side of the memory benchmark, in a process of its own so its RSS is the hub's alone.

    python -m benchmarks.memory_child --url http://127.0.0.1:PORT --dir DIR --pages N --seconds S

Pulls the transit-card stream from the simulator with :meth:`Hub.pull` (the real adapter: OAuth2, paging, the
network fetched per run, the whole pipeline, SQLite WAL), sampling VmRSS/VmHWM every 0.25 s with the number of
records committed so far, until the pages run out or ``--seconds`` pass; prints one JSON document.

Every ``--detail-every`` seconds (5 by default, 0 = never) it also breaks the RSS down by mapping from
/proc/self/smaps — the malloc heap, anonymous mappings (pymalloc arenas, large allocations, other threads' malloc
arenas), the SQLite files mapped (the WAL index ``-shm``), other files (code) — with glibc's count of bytes in
use and free inside malloc (``mallinfo2``) and the size of the ``-wal`` file: so a rise can be put on the part that
grows (this is how the ~4 KiB a page of the pull loop's cursors-seen map was found).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from .common import make_hub, rss_kib


class _Budget(Exception):
    """The time budget is spent (raised from the progress callback, after a page was committed)."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mallinfo() -> Any:
    """glibc's ``mallinfo2`` (all arenas), or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO = _mallinfo()


def mapping_breakdown(db: Path) -> dict[str, int]:
    """RSS in KiB by kind of mapping, malloc's bytes in use / free (KiB), and the WAL file's size (KiB)."""
    out = {"heap": 0, "anon": 0, "sqlite_mapped": 0, "files": 0, "other": 0}
    kind = "other"
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
            for line in f:
                head = line.split(maxsplit=6)
                if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                    path = head[5].strip() if len(head) > 5 else ""
                    if path == "[heap]":
                        kind = "heap"
                    elif not path:
                        kind = "anon"
                    elif path.startswith(str(db)):
                        kind = "sqlite_mapped"
                    elif path.startswith("/"):
                        kind = "files"
                    else:
                        kind = "other"  # stacks, vdso
                elif line.startswith("Rss:"):
                    out[kind] += int(line.split()[1])
    except OSError:
        pass
    if _MALLINFO is not None:
        info = _MALLINFO()
        out["malloc_in_use"] = info.uordblks // 1024 + info.hblkhd // 1024
        out["malloc_free"] = info.fordblks // 1024
    try:
        out["wal_file"] = Path(f"{db}-wal").stat().st_size // 1024
    except OSError:
        out["wal_file"] = 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_child")
    parser.add_argument("--url", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--detail-every", type=float, default=5.0, help="seconds between smaps breakdowns (0: none)")
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
    db = args.dir / "hub.db"
    done = {"records": 0, "items": 0, "pages": 0}
    samples: list[tuple[float, int, int, int]] = []
    detail: list[dict[str, Any]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        next_detail = args.detail_every
        while not stop.wait(0.25):
            now = time.perf_counter() - started
            rss, hwm = rss_kib()
            samples.append((now, done["records"], rss, hwm))
            if args.detail_every > 0 and now >= next_detail:
                next_detail += args.detail_every
                detail.append({"t": now, "records": done["records"], "rss": rss, **mapping_breakdown(db)})

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
                "detail": detail,
            }
        ).decode()
        + "\n"
    )


if __name__ == "__main__":
    main()
