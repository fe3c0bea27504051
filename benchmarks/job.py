"""(g) The pull-and-forward job through the CLI a user runs, one core, beside dlt and a hand-written loop.

The simulator (``benchmarks/simulator.py``, another process, on another core) serves ~200k transit-card
transactions in pages of ~1000, 1.1% of them schema-invalid (``--bad-every 24``). Each pipeline runs as its own
process pinned to one core, with a fresh store, and is timed from start to exit (start-up included); CPU seconds are
the process's own (``getrusage`` of the finished child):

- ``tanpuhui run``: pull and forward in one process (pages forwarded from memory as they commit);
- ``tanpuhui pull`` then ``tanpuhui forward``: the two commands in sequence (two start-ups, the outbox read back);
- the peers of ``benchmarks/job_peers.py``: dlt to JSONL files, dlt to duckdb via parquet, a hand-written loop.

The hub forwards to a JSONL sink (``fsync`` per batch); the peers store the valid partner items. The hub does more
per item (normalize, pseudonyms, quantification, a second validation, dedup, quarantine, the audit log, the
forwarding) and its records are what a consumer gets; the figure compared is partner items per second of wall time.
Target (issue 19): ``tanpuhui run`` >= dlt's fastest path in the same run.
"""

from __future__ import annotations

import compileall
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tanpuhui.hub.demo import to_toml

from .common import PSEUDONYM_KEYS, Row, ServerProcess, Sizes, median
from .job_peers import NO_DLT

__all__ = ["run"]

BAD_EVERY = 24
"""One journey in 24, when it is a bus tap, is invalid: ~1.1% of the transactions (the issue's 1.05%)."""
_ROOT = Path(__file__).resolve().parent.parent


def _compile_sources() -> None:
    """Bytecode for the hub's and the benchmarks' own modules, as ``pip install`` leaves it for an installed package.

    An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (as on the benchmark machine) has none, and every
    process would compile ~120 hub modules from source at start-up (~0.3 s of CPU); the peers' libraries in
    site-packages were compiled by pip. Both sides start from bytecode, as a user's installation does."""
    import tanpuhui.hub

    for folder in (Path(tanpuhui.hub.__file__).resolve().parent.parent, _ROOT / "benchmarks"):
        compileall.compile_dir(folder, quiet=1, workers=1)


def _cores() -> tuple[int, int]:
    """(the pipeline's core, the simulator's core): different ones when there are two."""
    cores = sorted(os.sched_getaffinity(0))
    return cores[-1], cores[0]


def _child(args: Sequence[str], core: int, env: dict[str, str] | None = None) -> tuple[float, float, str, int]:
    """(wall s, CPU s, stdout, exit status) of ``args`` run to its end, pinned to ``core``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        list(args),
        cwd=_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, NO_DLT):
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, cpu, done.stdout, done.returncode


def _hub_config(directory: Path, url: str) -> Path:
    document: dict[str, Any] = {
        "hub": {"store": "hub.db", "pseudonym_keys": {"env": "BENCH_PSEUDONYM_KEYS"}},
        "adapters": {
            "transit_card": {
                "base_url": url,
                "client_id": "bench",
                "client_secret": {"env": "BENCH_TRANSIT_SECRET"},
                "page_size": 1000,
            }
        },
        "sinks": {"archive": {"type": "jsonl", "path": "archive.jsonl"}},
    }
    path = directory / "hub.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


_HUB_ENV = {"BENCH_PSEUDONYM_KEYS": PSEUDONYM_KEYS, "BENCH_TRANSIT_SECRET": "bench-secret"}


def _hub(mode: str, url: str, core: int, tmp: Path | None) -> tuple[float, float, int]:
    """(wall s, CPU s, records delivered to the JSONL sink) of one hub run (``run``, or ``pull`` + ``forward``)."""
    exe = str(Path(sys.executable).parent / "tanpuhui")
    with tempfile.TemporaryDirectory(prefix="tph-bench-job-", dir=tmp) as d:
        config = str(_hub_config(Path(d), url))
        if mode == "run":
            steps = [[exe, "run", "--config", config, "--quiet"]]
        else:
            steps = [[exe, "pull", "transit_card", "--config", config], [exe, "forward", "--config", config]]
        wall = cpu = 0.0
        for step in steps:
            w, c, _, _ = _child(step, core, _HUB_ENV)
            wall, cpu = wall + w, cpu + c
        archive = Path(d) / "archive.jsonl"
        delivered = archive.read_bytes().count(b"\n") if archive.exists() else 0
    return wall, cpu, delivered


def _peer(name: str, url: str, core: int, tmp: Path | None) -> tuple[float, float, dict[str, int]] | None:
    with tempfile.TemporaryDirectory(prefix=f"tph-bench-{name}-", dir=tmp) as d:
        wall, cpu, out, code = _child(
            [sys.executable, "-m", "benchmarks.job_peers", name, "--url", url, "--dir", d], core
        )
    if code == NO_DLT:
        return None
    return wall, cpu, orjson.loads(out)


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    core, partner_core = _cores()
    _compile_sources()
    pages = sizes.job_pages
    results: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, Any] = {}
    skipped: list[str] = []
    with ServerProcess(["-m", "benchmarks.simulator", "--pages", str(pages), "--bad-every", str(BAD_EVERY)]) as partner:
        os.sched_setaffinity(partner.pid, {partner_core})
        for _ in range(sizes.repeats):  # interleaved, so a busy spell of the shared machine hits every row alike
            for mode in ("run", "pull+forward"):
                wall, cpu, delivered = _hub(mode, partner.url, core, tmp)
                results.setdefault(mode, []).append((wall, cpu))
                counts[mode] = delivered
            for name in ("dlt-jsonl", "dlt-parquet-duckdb", "hand"):
                if name in skipped:
                    continue
                got = _peer(name, partner.url, core, tmp)
                if got is None:
                    skipped.append(name)
                    continue
                results.setdefault(name, []).append(got[:2])
                counts[name] = got[2]
    items = counts["hand"]["items"] if "hand" in counts else None
    if items is None:
        raise RuntimeError("the hand-written peer did not run")

    def rate(name: str) -> float:
        return items / median([w for w, _ in results[name]])

    def cpu(name: str) -> float:
        return median([c for _, c in results[name]])

    dlt_names = [n for n in ("dlt-jsonl", "dlt-parquet-duckdb") if n in results]
    best_dlt = max(dlt_names, key=rate) if dlt_names else None
    baseline = rate(best_dlt) if best_dlt else None
    labels = {
        "run": "tanpuhui run (pull and forward in one process) -> JSONL sink",
        "pull+forward": "tanpuhui pull, then tanpuhui forward -> JSONL sink",
        "dlt-jsonl": "dlt -> JSONL files (filesystem destination)",
        "dlt-parquet-duckdb": "dlt -> duckdb via parquet",
        "hand": "hand-written: httpx + orjson + jsonschema-rs -> SQLite WAL, a commit per page",
    }
    dropped = counts["hand"]["dropped"]
    shape = "; ".join(
        f"{labels[n]} {rate(n):,.0f} items/s, {cpu(n):.2f} CPU s" for n in sorted(results, key=rate, reverse=True)
    )
    notes = [
        f"{items:,} transactions ({dropped:,} invalid, {dropped / items:.2%}) in {pages} pages from the simulator on "
        f"core {partner_core}; each pipeline a process pinned to core {core}, start-up included; median of "
        f"{sizes.repeats}; the hub delivered {counts['run']:,} records (run) and {counts['pull+forward']:,} "
        "(pull+forward) to its JSONL sink",
        f"the issue's table (items/s of wall time, CPU seconds of the process; fastest first): {shape}",
    ]
    if skipped:
        notes.append(f"skipped: {', '.join(skipped)} (dlt is not installed: pip install -e '.[bench]')")
    target = ">= 1.0x dlt's fastest (same run)" if best_dlt else ">= 1.0x dlt's fastest (dlt not installed)"
    rows = [
        Row(
            "pull-and-forward job through the CLI, one core: tanpuhui run (items/s)",
            rate("run"),
            "items/s",
            target,
            (rate("run") >= baseline) if baseline else None,
            baseline,
            notes=notes,
        ),
        Row(
            "the same, per CPU second: tanpuhui run (items per CPU s)",
            items / cpu("run"),
            "items/CPU s",
            "- (context: against dlt's best per CPU s; steadier on a busy machine)",
            None,
            max(items / cpu(n) for n in dlt_names) if dlt_names else None,
        ),
        Row(
            "pull-and-forward job, one core: tanpuhui pull then tanpuhui forward (items/s)",
            rate("pull+forward"),
            "items/s",
            "- (the two commands of before)",
            None,
            baseline,
        ),
    ]
    for name in (*dlt_names, "hand"):
        rows.append(Row(f"peer on the same job: {labels[name]} (items/s)", rate(name), "items/s", "- (peer)", None))
    return rows
