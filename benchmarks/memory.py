"""(e) Memory during a long pull: the hub's peak RSS and its growth after warm-up.

A streaming partner (``benchmarks.simulator``, another process) serves transit-card pages generated from the
cursor; the hub (``benchmarks.memory_child``, another process) pulls them with :meth:`Hub.pull` and samples its
VmRSS / VmHWM from /proc every 0.25 s, and every 5 s its RSS by kind of mapping (/proc/self/smaps). A 10M-record
pull takes far longer than a benchmark run at the speed reached here, so the run stops after a time budget
(170 s; 20 s in ``--quick``): the table reports the records actually pulled, the peak, the RSS at milestones
(0.25M, 0.5M, 1M, 1.5M, 2M records: the median over the last 10% of records before each), the slope after
warm-up (over the second half of the run: least squares, and the median of pairwise slopes, which the
page-by-page swing of the malloc heap does not move), the RSS the steeper of the two extrapolates to at 10M,
and which kind of mapping changed over the second half.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from .common import Row, ServerProcess, Sizes

__all__ = ["run"]

TARGET_MB = 200.0
RECORDS_PER_PAGE = 615  # the feed's average (625 journeys a window, ~1.6 transactions per journey)
MILESTONES = (250_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def _theil_sen(points: list[tuple[float, float]], most: int = 300) -> float:
    """Median of the pairwise slopes (robust to the page-by-page wiggle of RSS), on at most ``most`` points."""
    step = max(1, len(points) // most)
    pts = points[::step]
    slopes = sorted(
        (y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pts) for x2, y2 in pts[i + 1 :] if x2 - x1 > 1e-9
    )
    return statistics.median(slopes) if slopes else 0.0


def _rss_at(samples: list[list[float]], records: float) -> float | None:
    """Median RSS (MB) over the samples of the last 10% of records before ``records``; None if not reached."""
    near = [s[2] / 1024 for s in samples if 0.9 * records <= s[1] <= records]
    return statistics.median(near) if near and samples[-1][1] >= records else None


def _milestones(samples: list[list[float]], records: int) -> str:
    marks = [m for m in MILESTONES if m <= records]
    parts = [f"{rss:.0f} MB at {m / 1e6:g}M" for m in marks if (rss := _rss_at(samples, m)) is not None]
    return ", ".join(parts)


def _breakdown(detail: list[dict[str, float]], records: int) -> str:
    """How each kind of mapping changed over the second half: the median of its last third of smaps samples
    against the median of its first third (one sample swings by a few MB from page to page)."""
    half = [d for d in detail if d["records"] >= records / 2]
    if len(half) < 3:
        return ""
    third = len(half) // 3

    def change(key: str) -> float:
        if key not in half[0]:
            return math.nan
        first = statistics.median(d[key] for d in half[:third])
        last = statistics.median(d[key] for d in half[-third:])
        return (last - first) / 1024

    parts = [
        f"{name} {change(key):+.1f}"
        for name, key in (
            ("malloc heap", "heap"),
            ("anonymous (pymalloc arenas, big blocks, threads)", "anon"),
            ("SQLite files mapped", "sqlite_mapped"),
            ("other files", "files"),
        )
    ]
    text = f"RSS by mapping, change over the second half (MB, from /proc/self/smaps): {', '.join(parts)}"
    if "malloc_in_use" in half[0]:
        text += f"; bytes in use inside malloc {change('malloc_in_use'):+.1f} MB"
    return text + f"; WAL file {half[-1]['wal_file'] / 1024:.0f} MB at the end"


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    target_records = sizes.memory_records
    budget = 20.0 if sizes.quick else 170.0
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
    robust = _theil_sen(half)
    # Extrapolated from the end with the steeper of the two slopes (never below the end's RSS).
    at_10m = end_mb + max(slope, robust, 0.0) * max(0.0, 10.0 - records / 1e6)
    ok = peak_mb < TARGET_MB and at_10m < TARGET_MB
    ran = f"{records:,} records in {doc['seconds']:.0f} s ({records / doc['seconds']:,.0f} rec/s)"
    if doc["stopped_early"] or records < target_records:
        ran += f", stopped by the {budget:.0f} s budget before {target_records:,}; 10M extrapolated"
    milestones = _milestones(samples, records)
    milestones += ", " if milestones else ""
    notes = [
        f"{ran}; RSS {doc['rss_start_kib'] / 1024:.0f} MB at start, {milestones}"
        f"{end_mb:.0f} MB at the end; slope over the second half {slope:+.1f} MB per million records "
        f"(least squares; median of pairwise slopes {robust:+.1f}) -> {at_10m:.0f} MB at 10M records"
    ]
    if breakdown := _breakdown(doc.get("detail", []), records):
        notes.append(breakdown)
    return [
        Row(
            "memory during a long pull from a simulator: peak RSS",
            peak_mb,
            "MB",
            f"< {TARGET_MB:.0f} MB peak, flat after warm-up",
            ok,
            notes=notes,
        )
    ]
