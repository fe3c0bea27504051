"""The pull benchmark's growth figure (CPU a committed record over the middle and the last fifth of a run's pages)
and its one-run command, whose output digests compare two versions of the hot path byte for byte."""

from __future__ import annotations

import json

import pytest
from bench_kit import run_module

from benchmarks.pull import growth


def test_a_steady_run_gives_the_same_cost_a_record_in_the_middle_and_at_the_end() -> None:
    pages = [(0.001, 10)] * 4 + [(0.020, 600)] * 16  # warm-up pages (mostly tap-ins) are left out
    middle, last = growth(pages)
    assert middle == pytest.approx(last)
    assert middle == pytest.approx(1e6 * 0.020 / 600)


def test_a_cost_that_grows_with_the_store_shows_in_the_last_fifth() -> None:
    pages = [(0.020 + 0.001 * i, 600) for i in range(20)]
    middle, last = growth(pages)
    assert last > middle
    assert middle == pytest.approx(1e6 * (0.028 + 0.029 + 0.030 + 0.031) / 2400)


def test_a_run_of_one_page_reports_that_page_twice_and_a_page_without_records_divides_by_one() -> None:
    assert growth([(0.5, 0)]) == (pytest.approx(5e5), pytest.approx(5e5))


def _one_run(pages: int) -> dict[str, object]:
    out = run_module("benchmarks.pull", "--pages", str(pages))
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_one_run_prints_its_cpu_and_digests_that_two_runs_of_the_same_code_share() -> None:
    first, second = _one_run(2), _one_run(2)
    assert first["records"] == second["records"] and isinstance(first["records"], int) and first["records"] > 0
    assert isinstance(first["cpu_s"], float) and first["cpu_s"] > 0
    for key in ("outbox", "quarantine", "state"):
        assert first[key] == second[key] and len(str(first[key])) == 64
