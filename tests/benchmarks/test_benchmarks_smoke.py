"""Smoke test of the benchmark suite (``python -m benchmarks``): it runs and prints its table. Nothing is asserted
about speed: CI machines differ, and the figures belong in docs/performance.md, not in a unit test."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from bench_kit import run_module

from benchmarks.common import Row, Sizes, print_table

TINY = replace(
    Sizes.make(quick=True),
    pull_pages=3,
    naive_pages=1,
    dedup_small=1_000,
    dedup_large=5_000,
    forward_records=2_000,
    webhook_seconds=0.3,
    webhook_batches=2,
    memory_records=3_000,
    job_pages=2,
)


def test_the_quick_suite_runs_from_the_command_line_and_prints_one_table() -> None:
    out = run_module("benchmarks", "--quick", "--only", "pull")
    assert out.returncode == 0, out.stderr
    assert "| path" in out.stdout and "naive baseline (same run)" in out.stdout
    assert "pull path end to end, one core (records/s)" in out.stdout
    assert "machine:" in out.stdout


@pytest.mark.parametrize("name", ["pull", "dedup", "forward", "webhook", "memory", "job"])
def test_each_benchmark_completes_at_tiny_sizes(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    rows = importlib.import_module(f"benchmarks.{name}").run(TINY, tmp_path)
    assert rows and all(isinstance(r, Row) for r in rows)
    assert all(r.figure > 0 for r in rows)
    print_table(rows, "machine: test")
    table = capsys.readouterr().out
    for row in rows:
        assert row.path in table


def test_a_dlt_peer_without_dlt_installed_exits_3_with_a_message_the_job_benchmark_reports(tmp_path: Path) -> None:
    """The job benchmark leaves the dlt rows out (status 3) instead of failing when the bench extra is missing."""
    shadow = tmp_path / "shadow" / "dlt"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("No module named dlt")\n')
    out = run_module(
        "benchmarks.job_peers",
        "dlt-jsonl",
        "--url",
        "http://127.0.0.1:9",
        "--dir",
        str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(tmp_path / "shadow")},
    )
    assert out.returncode == 3, out.stderr
    assert "dlt is not installed (pip install -e '.[bench]')" in out.stderr
