"""(e) Memory during a long pull: the hub's peak RSS and its growth after warm-up.

A streaming partner (``benchmarks.simulator``, another process) serves transit-card pages generated from the
cursor; the hub (``benchmarks.memory_child``, another process) pulls them with :meth:`Hub.pull` and samples its
VmRSS / VmHWM from /proc every 0.25 s. A 10M-record pull takes far longer than a benchmark run at the speed
reached here, so the run stops after a time budget: the table reports the records actually pulled, the peak, the
slope after warm-up (least squares over the second half of the run) and the RSS that slope extrapolates to at 10M.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from .common import Row, ServerProcess, Sizes

__all__ = ["run"]

TARGET_MB = 200.0
RECORDS_PER_PAGE = 615  # the feed's average (625 journeys a window, ~1.6 transactions per journey)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    target_records = sizes.memory_records
    budget = 20.0 if sizes.quick else 150.0
    pages = math.ceil(target_records / RECORDS_PER_PAGE)
    root = Path(__file__).resolve().parent.parent
    with (
        tempfile.TemporaryDirectory(prefix="tph-bench-memory-", dir=tmp) as d,
        ServerProcess(["-m", "benchmarks.simulator", "--pages", str(pages)]) as partner,
    ):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.memory_child",
                "--url",
                partner.url,
                "--dir",
                d,
                "--pages",
                str(pages),
                "--seconds",
                str(budget),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{out.stderr[-2000:]}")
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    samples = doc["samples"]
    records = doc["records"]
    peak_mb = max(s[3] for s in samples) / 1024
    end_mb = samples[-1][2] / 1024
    half = [(s[1] / 1e6, s[2] / 1024) for s in samples if s[1] >= records / 2]
    slope = _slope(half)  # MB per million records
    at_10m = end_mb + slope * max(0.0, 10.0 - records / 1e6)
    ok = peak_mb < TARGET_MB and at_10m < TARGET_MB
    ran = f"{records:,} records in {doc['seconds']:.0f} s ({records / doc['seconds']:,.0f} rec/s)"
    if doc["stopped_early"] or records < target_records:
        ran += f", stopped by the {budget:.0f} s budget before {target_records:,}; 10M extrapolated"
    return [
        Row(
            "memory during a long pull from a simulator: peak RSS",
            peak_mb,
            "MB",
            f"< {TARGET_MB:.0f} MB peak, flat after warm-up",
            ok,
            notes=[
                f"{ran}; RSS {doc['rss_start_kib'] / 1024:.0f} MB at start, {end_mb:.0f} MB at the end; slope over "
                f"the second half {slope:+.1f} MB per million records -> {at_10m:.0f} MB at 10M records"
            ],
        )
    ]
