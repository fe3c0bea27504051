"""(g) The pull-and-forward job through the CLI a user runs, one core, beside dlt and a hand-written loop.

The simulator (``benchmarks/simulator.py``, another process, on another core) serves ~200k transit-card
transactions in pages of ~1000, 1.1% of them schema-invalid (``--bad-every 24``); it makes every page, and its two
parts for the partitioned rows, before the timing starts (``--hold 2``, :data:`HOLD_PAGES`), so serving a page costs
it ~0.2 ms of CPU instead of ~5 ms (what matters when it shares the cores with two workers). Each pipeline runs as its own
process pinned to one core, with a fresh store, and is timed from start to exit (start-up included); CPU seconds are
the process's own (``getrusage`` of the finished child):

- ``tanpuhui run``: pull and forward in one process (pages forwarded from memory as they commit);
- ``tanpuhui pull`` then ``tanpuhui forward``: the two commands in sequence (two start-ups, the outbox read back);
- the peers of ``benchmarks/job_peers.py``: dlt to JSONL files, dlt to duckdb via parquet, a hand-written loop;
- ``tanpuhui run`` with the transactions read in 2 partitions (``partitions = {transactions = 2}``, the simulator
  serving each part with ``segment``/``segments``), still one worker on one core: what partitioning itself costs;
- when the installed ``tanpuhui run --help`` offers ``--workers``: ``tanpuhui run --workers 2`` and ``tanpuhui pull
  --workers 2`` then ``tanpuhui forward``, with 2 partitions and NOT pinned: the workers may use both cores, which
  they share with the simulator (pinned to its core as in every row).

The hub forwards to a JSONL sink (``fsync`` per batch); the peers store the valid partner items. The hub does more
per item (normalize, pseudonyms, quantification, a second validation, dedup, quarantine, the audit log, the
forwarding) and its records are what a consumer gets; the figure compared is partner items per second of wall time.
Targets (issue 19): ``tanpuhui run`` >= dlt's fastest path in the same run; ``tanpuhui run --workers 2`` >= 1.7x
``tanpuhui run`` (one worker, one core) in the same run.
"""

from __future__ import annotations

import compileall
import functools
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tanpuhui.hub.demo import to_toml

from .common import PSEUDONYM_KEYS, Row, ServerProcess, Sizes, cpu_seconds, median
from .job_peers import NO_DLT

__all__ = ["hub_config", "run", "store_outcome"]

BAD_EVERY = 24
"""One journey in 24, when it is a bus tap, is invalid: ~1.1% of the transactions (the issue's 1.05%)."""
_ROOT = Path(__file__).resolve().parent.parent
TARGET_WORKERS = 1.7
"""``tanpuhui run --workers 2`` against ``tanpuhui run`` on one core, items/s of the same run (issue 19)."""
PARTS = 2
"""The partitions the transactions are read in for the partitioned rows (one per worker)."""
HOLD_PAGES = True
"""The simulator makes every page and its ``PARTS`` parts before the timing starts (``--hold``) and answers from
memory, ~0.2 ms of CPU a page instead of ~5 ms: the two-worker rows share the cores with it, the one-worker rows
leave it a core of its own. False: pages made on demand, as before the two-worker rows."""


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


def _child(args: Sequence[str], core: int | None, env: dict[str, str] | None = None) -> tuple[float, float, str, int]:
    """(wall s, CPU s, stdout, exit status) of ``args`` run to its end, pinned to ``core`` (None: not pinned).
    The CPU seconds include the processes it forked and waited for (a ``--workers`` run's workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        list(args),
        cwd=_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        preexec_fn=None if core is None else lambda: os.sched_setaffinity(0, {core}),
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, NO_DLT):
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, cpu, done.stdout, done.returncode


def hub_config(directory: Path, url: str, partitions: int = 1) -> Path:
    """``directory/hub.toml`` for the job against the simulator at ``url`` (store ``hub.db``, sink
    ``archive.jsonl``); ``partitions`` > 1 reads the transactions in that many parts. The environment it names
    is :data:`HUB_ENV`."""
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
    if partitions > 1:
        document["adapters"]["transit_card"]["partitions"] = {"transactions": partitions}
    path = directory / "hub.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


HUB_ENV = {"BENCH_PSEUDONYM_KEYS": PSEUDONYM_KEYS, "BENCH_TRANSIT_SECRET": "bench-secret"}


def store_outcome(db: Path) -> tuple[dict[str, bytes], Counter[tuple[str, str]]]:
    """What a pull left in the SQLite store ``db``: the outbox bodies by record id, and the quarantine entries as
    (partner id, stage). Two pulls that credit and quarantine the same give equal outcomes, in whatever order."""
    conn = sqlite3.connect(db)
    try:
        records = {rid: bytes(body) for rid, body in conn.execute("SELECT record_id, body FROM outbox")}
        quarantine = Counter(conn.execute("SELECT partner_record_id, stage FROM quarantine").fetchall())
    finally:
        conn.close()
    return records, quarantine


@functools.cache
def _offers_workers(command: str) -> bool:
    """Whether the installed ``tanpuhui COMMAND`` takes ``--workers`` (its ``--help`` names it)."""
    exe = str(Path(sys.executable).parent / "tanpuhui")
    done = subprocess.run([exe, command, "--help"], capture_output=True, text=True, check=False)
    return "--workers" in done.stdout


_MODES: dict[str, tuple[str, int, int]] = {
    # mode: (command, partitions, workers); workers > 1 is run unpinned
    "run": ("run", 1, 1),
    "pull+forward": ("pull", 1, 1),
    "run-2parts": ("run", PARTS, 1),
    "run-w2": ("run", PARTS, 2),
    "pull-w2+forward": ("pull", PARTS, 2),
}


def _hub(mode: str, url: str, core: int, tmp: Path | None) -> tuple[float, float, int, float]:
    """(wall s, CPU s, records delivered to the JSONL sink, wall s of the pull alone) of one hub run of ``mode``
    (see :data:`_MODES`: ``run``, or ``pull`` + ``forward``, with its partitions and workers)."""
    command, partitions, workers = _MODES[mode]
    exe = str(Path(sys.executable).parent / "tanpuhui")
    extra = ["--workers", str(workers)] if workers > 1 else []
    with tempfile.TemporaryDirectory(prefix="tph-bench-job-", dir=tmp) as d:
        config = str(hub_config(Path(d), url, partitions))
        if command == "run":
            steps = [[exe, "run", "--config", config, "--quiet", *extra]]
        else:
            steps = [[exe, "pull", "transit_card", "--config", config, *extra], [exe, "forward", "--config", config]]
        wall = cpu = first = 0.0
        for step in steps:
            w, c, _, _ = _child(step, core if workers == 1 else None, HUB_ENV)
            wall, cpu = wall + w, cpu + c
            first = first or w
        archive = Path(d) / "archive.jsonl"
        delivered = archive.read_bytes().count(b"\n") if archive.exists() else 0
    return wall, cpu, delivered, first


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
    pull_walls: dict[str, list[float]] = {}
    partner_cpu: dict[str, list[float]] = {}
    counts: dict[str, Any] = {}
    skipped: list[str] = []
    modes = ["run", "pull+forward", "run-2parts"]
    if _offers_workers("run"):
        modes.append("run-w2")
    if _offers_workers("pull"):
        modes.append("pull-w2+forward")
    simulator = ["-m", "benchmarks.simulator", "--pages", str(pages), "--bad-every", str(BAD_EVERY)]
    with ServerProcess(simulator + (["--hold", str(PARTS)] if HOLD_PAGES else [])) as partner:
        os.sched_setaffinity(partner.pid, {partner_core})
        for _ in range(sizes.repeats):  # interleaved, so a busy spell of the shared machine hits every row alike
            for mode in modes:
                before = cpu_seconds(partner.pid)
                wall, cpu_s, delivered, pull_wall = _hub(mode, partner.url, core, tmp)
                partner_cpu.setdefault(mode, []).append(cpu_seconds(partner.pid) - before)
                results.setdefault(mode, []).append((wall, cpu_s))
                pull_walls.setdefault(mode, []).append(pull_wall)
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
        "run-2parts": f"tanpuhui run, {PARTS} partitions, one worker -> JSONL sink",
        "run-w2": f"tanpuhui run --workers 2, {PARTS} partitions, both cores -> JSONL sink",
        "pull-w2+forward": f"tanpuhui pull --workers 2, {PARTS} partitions, both cores, then forward -> JSONL sink",
        "dlt-jsonl": "dlt -> JSONL files (filesystem destination)",
        "dlt-parquet-duckdb": "dlt -> duckdb via parquet",
        "hand": "hand-written: httpx + orjson + jsonschema-rs -> SQLite WAL, a commit per page",
    }
    dropped = counts["hand"]["dropped"]
    shape = "; ".join(
        f"{labels[n]} {rate(n):,.0f} items/s, {cpu(n):.2f} CPU s" for n in sorted(results, key=rate, reverse=True)
    )
    delivered_text = ", ".join(f"{counts[m]:,} ({m})" for m in modes)
    notes = [
        f"{items:,} transactions ({dropped:,} invalid, {dropped / items:.2%}) in {pages} pages from the simulator on "
        f"core {partner_core}; each one-worker pipeline a process pinned to core {core}, start-up included; median "
        f"of {sizes.repeats}; the hub delivered {delivered_text} records to its JSONL sink",
        f"the issue's table (items/s of wall time, CPU seconds of the process and its workers; fastest first): {shape}",
    ]
    if skipped:
        notes.append(f"skipped: {', '.join(skipped)} (dlt is not installed: pip install -e '.[bench]')")
    if "run-w2" not in modes:
        notes.append("tanpuhui run --workers 2: not measured (this tanpuhui's `run --help` offers no --workers)")
    same = {m: counts[m] == counts["run"] for m in modes}
    notes.append(
        (
            "the simulator held every page and its parts, made before the timing (--hold); its CPU a page while it "
            "served each hub row: "
            if HOLD_PAGES
            else "the simulator's CPU a page while it served each hub row (a page's first request generates its "
            "window; parts of a page asked for close together share that; the last ~22 windows are kept, so at "
            "--quick sizes a row finds the row before's): "
        )
        + ", ".join(f"{1000 * median(partner_cpu[m]) / pages:.1f} ms ({m})" for m in modes)
    )
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
        Row(
            f"pull-and-forward job, one core: tanpuhui run, {PARTS} partitions read one after the other (items/s)",
            rate("run-2parts"),
            "items/s",
            "- (what partitioning costs one worker: ratio to tanpuhui run), the same records",
            None if same["run-2parts"] else False,
            rate("run"),
            "tanpuhui run",
            notes=[
                f"partitions = {{transactions = {PARTS}}}: the simulator serves each part of a page (segment/"
                f"segments); one process pinned to core {core}, {cpu('run-2parts'):.2f} CPU s against "
                f"{cpu('run'):.2f} whole"
            ],
        ),
    ]
    if "run-w2" in modes:
        ratio = rate("run-w2") / rate("run")
        rows.append(
            Row(
                f"pull-and-forward job, two workers: tanpuhui run --workers 2, {PARTS} partitions (items/s)",
                rate("run-w2"),
                "items/s",
                f">= {TARGET_WORKERS}x tanpuhui run on one core (same run), the same records",
                ratio >= TARGET_WORKERS and same["run-w2"],
                rate("run"),
                "tanpuhui run, one core",
                notes=[
                    f"ratio {ratio:.2f} (target >= {TARGET_WORKERS}); not pinned: the parent and its workers may use "
                    f"both cores, which they share with the simulator (pinned to core {partner_core}; the one-worker "
                    f"rows leave it a core of its own); {cpu('run-w2'):.2f} CPU s (parent and workers) against "
                    f"{cpu('run'):.2f} for one worker; delivered {counts['run-w2']:,} records, tanpuhui run "
                    f"{counts['run']:,}"
                ],
            )
        )
    if "pull-w2+forward" in modes:

        def pull_rate(mode: str) -> float:
            return items / median(pull_walls[mode])

        rows.append(
            Row(
                f"pull-and-forward job, two workers: tanpuhui pull --workers 2 ({PARTS} partitions), then tanpuhui "
                "forward (items/s)",
                rate("pull-w2+forward"),
                "items/s",
                "- (ratio to tanpuhui pull then forward on one core), the same records",
                None if same["pull-w2+forward"] else False,
                rate("pull+forward"),
                "pull then forward, one core",
                notes=[
                    f"not pinned (both cores, shared with the simulator); the pull alone: {pull_rate('pull-w2+forward'):,.0f} "
                    f"items/s against {pull_rate('pull+forward'):,.0f} for tanpuhui pull on one core "
                    f"({pull_rate('pull-w2+forward') / pull_rate('pull+forward'):.2f}x); {cpu('pull-w2+forward'):.2f} "
                    f"CPU s against {cpu('pull+forward'):.2f}"
                ],
            )
        )
    for name in (*dlt_names, "hand"):
        rows.append(Row(f"peer on the same job: {labels[name]} (items/s)", rate(name), "items/s", "- (peer)", None))
    return rows
