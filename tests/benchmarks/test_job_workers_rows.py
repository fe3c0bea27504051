"""The job benchmark's two-worker rows (``tanpuhui run --workers 2``, ``tanpuhui pull --workers 2``, 2 partitions):
present only when the installed tanpuhui offers ``--workers``, the run's ratio to one worker against 1.7."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import benchmarks.job as job
from benchmarks.common import Sizes

TINY = replace(Sizes.make(quick=True), job_pages=2)


def _without_dlt(monkeypatch: pytest.MonkeyPatch) -> None:
    peer = job._peer
    monkeypatch.setattr(job, "_peer", lambda name, *a: None if name.startswith("dlt") else peer(name, *a))


def test_without_workers_the_job_has_the_partitioned_one_worker_row_and_says_what_it_left_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_dlt(monkeypatch)
    monkeypatch.setattr(job, "_offers_workers", lambda command: False)
    rows = {r.path: r for r in job.run(TINY, tmp_path)}
    parts = rows["pull-and-forward job, one core: tanpuhui run, 2 partitions read one after the other (items/s)"]
    assert parts.passed is None and parts.ratio  # the same records as tanpuhui run
    assert not any("--workers" in path for path in rows)
    notes = " ".join(n for r in rows.values() for n in r.notes)
    assert "tanpuhui run --workers 2: not measured" in notes


def test_with_workers_the_two_worker_rows_are_measured_unpinned_and_run_is_held_to_1_7x(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_dlt(monkeypatch)
    offered = job._offers_workers("run")
    child = job._child
    pinned: list[tuple[str, int | None]] = []

    def fake_child(args: Sequence[str], core: int | None, env: Any = None) -> tuple[float, float, str, int]:
        args = list(args)
        pinned.append((" ".join(args[1:2] + args[-2:]), core))
        if not offered and "--workers" in args:  # before `--workers` lands: one worker, to exercise the rows
            at = args.index("--workers")
            del args[at : at + 2]
        return child(args, core, env)

    monkeypatch.setattr(job, "_child", fake_child)
    monkeypatch.setattr(job, "_offers_workers", lambda command: True)
    rows = {r.path: r for r in job.run(TINY, tmp_path)}
    run2 = rows["pull-and-forward job, two workers: tanpuhui run --workers 2, 2 partitions (items/s)"]
    assert run2.target.startswith(">= 1.7x tanpuhui run on one core")
    assert run2.baseline == rows["pull-and-forward job through the CLI, one core: tanpuhui run (items/s)"].figure
    assert run2.passed == (run2.ratio is not None and run2.ratio >= 1.7)
    assert "not pinned" in run2.notes[0] and "share with the simulator" in run2.notes[0]
    pull2 = (
        "pull-and-forward job, two workers: tanpuhui pull --workers 2 (2 partitions), then tanpuhui forward (items/s)"
    )
    assert rows[pull2].passed is None  # the same records as one worker
    assert {core for step, core in pinned if "--workers 2" in step} == {None}
    assert None not in {core for step, core in pinned if "--workers" not in step and step.startswith("run")}
