"""Shared pieces: the result row and table, a hub factory, timing and RSS helpers."""

from __future__ import annotations

import argparse
import base64
import gc
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.testing.loopback import free_port

__all__ = [
    "PSEUDONYM_KEYS",
    "Row",
    "ServerProcess",
    "Sizes",
    "cpu_seconds",
    "free_port",
    "make_hub",
    "median",
    "print_table",
    "rss_kib",
]

PSEUDONYM_KEYS = "v1:" + base64.b64encode(bytes(range(100, 132))).decode()
"""A fixed benchmark key (never a deployment's)."""


@dataclass
class Row:
    """One line of the table: a figure, its target, and the naive figure measured in the same run (if any)."""

    path: str
    figure: float
    unit: str
    target: str
    passed: bool | None
    baseline: float | None = None
    baseline_label: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.figure / self.baseline


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs (``--quick`` shrinks all of them)."""

    quick: bool
    pull_pages: int  # pages of ~1000 transactions for the fast pull path
    naive_pages: int  # the naive baseline's share of the same pages
    repeats: int
    dedup_small: int
    dedup_large: int
    forward_records: int
    webhook_seconds: float
    webhook_batches: int
    memory_records: int
    job_pages: int = 212  # pages of ~944 transactions for the pull-and-forward job (~200k)

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        if quick:
            return cls(True, 12, 3, 1, 10_000, 1_000_000, 10_000, 2.0, 10, 200_000, 8)
        return cls(False, 100, 4, 3, 100_000, 10_000_000, 100_000, 10.0, 120, 10_000_000, 212)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, *, quick: str, tmp: str) -> None:
        """``--quick``, ``--repeats`` and ``--tmp`` (``quick`` and ``tmp``: their help texts), for :meth:`from_args`."""
        parser.add_argument("--quick", action="store_true", help=quick)
        parser.add_argument("--repeats", type=int, default=None, help="repeats of the timed runs (median reported)")
        parser.add_argument("--tmp", type=Path, default=None, help=tmp)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Sizes:
        """The sizes of ``--quick``, with ``--repeats`` when given."""
        sizes = cls.make(args.quick)
        return replace(sizes, repeats=args.repeats) if args.repeats else sizes


def make_hub(directory: Path, *, adapters: dict[str, dict[str, Any]] | None = None, **hub: Any) -> Hub:
    """A hub with its SQLite store in ``directory`` and the benchmark pseudonym key."""
    config = HubConfig.from_dict(
        {
            "hub": {"store": str(directory / "hub.db"), "pseudonym_keys": {"env": "BENCH_PSEUDONYM_KEYS"}, **hub},
            "adapters": adapters
            or {
                "transit_card": {"base_url": "http://127.0.0.1:9", "client_id": "bench", "client_secret": {"env": "S"}}
            },
        },
        source="benchmark hub.toml",
        environ={"BENCH_PSEUDONYM_KEYS": PSEUDONYM_KEYS, "S": "bench-secret"},
        base_dir=directory,
    )
    return Hub(config)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result), after a full collection so GC debt is not inherited."""
    gc.collect()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def rss_kib(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB from /proc (Linux); (0, 0) elsewhere."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in {"ms", "µs", "MB"} or abs(value) < 100:
        text = f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def print_table(rows: Sequence[Row], machine: str, write: Callable[[str], None] = print) -> None:
    """The one table: path, figure, target, naive baseline (same run), ratio, pass/fail; then the notes."""
    header = ("path", "figure", "target", "naive baseline (same run)", "ratio", "result")
    lines = []
    for r in rows:
        ratio = r.ratio
        base = _fmt(r.baseline, r.unit) if r.baseline is not None else "-"
        if r.baseline_label and r.baseline is not None:
            base = f"{base} ({r.baseline_label})"
        result = "n/a" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append((r.path, _fmt(r.figure, r.unit), r.target, base, f"{ratio:.1f}x" if ratio else "-", result))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    write(f"\n{machine}\n")
    write("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    write("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        write("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
    notes = [(r.path, n) for r in rows for n in r.notes]
    if notes:
        write("")
        for path, note in notes:
            write(f"- {path}: {note}")


def machine_line() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import platform
    import sqlite3

    load = " load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}{load}"
    )


class ServerProcess:
    """A benchmark server in its own process (``python <args>``), stopped on exit.

    Without ``port`` the server picks one and prints ``PORT <n>`` when listening; with ``port`` (see
    :func:`free_port`) it is told the port and is ready once ``GET <ready_path>`` answers.
    """

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
        ready_path: str = "/",
        timeout: float = 60.0,
    ) -> None:
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=root,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE if port is None else subprocess.DEVNULL,
            stderr=None if port is None else subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + timeout
        if port is None:
            assert self.process.stdout is not None
            line = ""
            while time.monotonic() < deadline:
                line = self.process.stdout.readline()
                if line.startswith("PORT ") or not line:
                    break
            if not line.startswith("PORT "):
                self.stop()
                raise RuntimeError(f"{' '.join(args)} did not start (exit {self.process.poll()})")
            port = int(line.split()[1])
        else:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2):
                        break
                except urllib.error.HTTPError:
                    break  # it answers
                except OSError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"{' '.join(args)} did not start (exit {self.process.poll()})") from None
                    time.sleep(0.1)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc); 0.0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
