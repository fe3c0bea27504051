"""The memory benchmark's report: milestones, a slope the page-by-page swing does not move, the smaps breakdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.memory import _breakdown, _milestones, _rss_at, _slope, _theil_sen
from benchmarks.memory_child import mapping_breakdown


def _samples(mb_at: dict[int, float], step: int = 10_000) -> list[list[float]]:
    """Samples (t, records, rss KiB, hwm KiB) every ``step`` records, RSS from the nearest key at or below."""
    out: list[list[float]] = []
    for i, records in enumerate(range(0, max(mb_at) + 1, step)):
        mb = mb_at[max(k for k in mb_at if k <= records)]
        out.append([i * 0.25, records, mb * 1024, mb * 1024])
    return out


def test_rss_at_a_milestone_is_the_median_just_before_it_and_none_when_not_reached() -> None:
    samples = _samples({0: 70.0, 400_000: 130.0, 950_000: 135.0, 1_200_000: 136.0})
    assert _rss_at(samples, 500_000) == 130.0
    assert _rss_at(samples, 2_000_000) is None
    assert _milestones(samples, 1_200_000) == "70 MB at 0.25M, 130 MB at 0.5M, 135 MB at 1M"


def test_the_median_of_pairwise_slopes_ignores_spikes_that_move_least_squares() -> None:
    flat = [(x / 100, 140.0 + (6.0 if i % 10 == 9 else 0.0)) for i, x in enumerate(range(100, 200))]
    flat[-3:] = [(x, y + 8.0) for x, y in flat[-3:]]  # a swing of the malloc heap at the end
    assert abs(_theil_sen(flat)) < 0.5
    assert _slope(flat) > 1.0
    rising = [(x / 100, 100.0 + 10.0 * x / 100) for x in range(100, 200)]
    assert _theil_sen(rising) == pytest.approx(10.0)


def test_the_breakdown_names_the_mapping_that_grew() -> None:
    detail = [
        {"records": r, "heap": 30_000 + r // 100, "anon": 50_000, "sqlite_mapped": 32, "files": 40_000,
         "malloc_in_use": 20_000 + r // 100, "wal_file": 17_000}
        for r in range(0, 2_000_001, 100_000)
    ]  # fmt: skip
    text = _breakdown(detail, 2_000_000)  # type: ignore[arg-type]
    assert "malloc heap +7.8" in text and "SQLite files mapped +0.0" in text
    assert "bytes in use inside malloc +7.8 MB" in text and "WAL file 17 MB" in text
    assert _breakdown(detail[:2], 2_000_000) == ""  # type: ignore[arg-type]


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux /proc only")
def test_mapping_breakdown_reads_this_process(tmp_path: Path) -> None:
    found = mapping_breakdown(tmp_path / "hub.db")
    assert found["files"] > 0 and found["heap"] + found["anon"] > 0
    assert found["sqlite_mapped"] == 0 and found["wal_file"] == 0
