"""``tanpuhui validate`` reads a file as it checks it: its peak RSS does not grow with the file's size.

The 200 MB run is ``python -m benchmarks --only inputs`` (figures in docs/performance.md); here the same
measurement on 3 MB and 30 MB files, JSON Lines and one JSON array: both under the 100 MB target, and the tenfold
file costs less than 6 MB more (reading whole, as before, cost about three times the file's size for JSON Lines,
eight for an array).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.big_inputs import VALIDATE_TARGET_MIB, validate_peak_mib, write_trips


@pytest.mark.parametrize("array", [False, True], ids=["json-lines", "json-array"])
def test_validate_peak_memory_does_not_grow_with_the_file(tmp_path: Path, array: bool) -> None:
    peaks = []
    for size in (3 * 2**20, 30 * 2**20):
        path = tmp_path / f"trips-{size}.json"
        write_trips(path, size, array=array)
        peak, status = validate_peak_mib(path)
        path.unlink()
        assert status == 1  # every 100th trip is invalid
        peaks.append(peak)
    assert peaks[1] < VALIDATE_TARGET_MIB, peaks
    assert peaks[1] - peaks[0] < 6, f"peak RSS {peaks[0]:.1f} MB for 3 MB, {peaks[1]:.1f} MB for 30 MB"
