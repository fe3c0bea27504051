"""``python -m benchmarks [--quick] [--only NAME ...]``: run the benchmarks and print one table.

Names: pull, dedup, forward, webhook, memory, inputs, job. ``--quick`` runs small sizes (a CI smoke test: it asserts nothing
about time). See docs/performance.md for what each measures and the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from .common import Row, Sizes, machine_line, print_table

BENCHMARKS = {
    "pull": "benchmarks.pull",
    "dedup": "benchmarks.dedup",
    "forward": "benchmarks.forward",
    "webhook": "benchmarks.webhook",
    "memory": "benchmarks.memory",
    "inputs": "benchmarks.big_inputs",
    "job": "benchmarks.job",
}


def settle_disk(limit_mb: float = 32.0, timeout: float = 120.0) -> None:
    """Flush what a benchmark left for the disk to write before the next one starts.

    The dedup benchmark writes ~2 GB; while the kernel writes that back, every fsync of the next benchmark waits
    behind it (the webhook p99 went from ~10 ms to ~80 ms). Each benchmark gets a disk with nothing queued.
    """
    os.sync()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pending_writes_mb() > limit_mb:
        time.sleep(0.5)


def _pending_writes_mb() -> float:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return 0.0
    return sum(int(fields.get(k, "0 kB").split()[0]) for k in ("Dirty", "Writeback")) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    Sizes.add_arguments(
        parser, quick="small sizes, well under a minute (CI smoke test)", tmp="directory for the benchmark databases"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    sizes = Sizes.from_args(args)
    names = args.only or list(BENCHMARKS)
    rows: list[Row] = []
    started = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        rows.extend(module.run(sizes, args.tmp))
        print(f"  {name} took {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        settle_disk()
    print_table(
        rows, machine_line() + f"; {'quick' if args.quick else 'full'} run, {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
