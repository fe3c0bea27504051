"""The simulator's segments (``&segment=I&segments=N``, the sandbox partner's rule) and a partitioned pull of it:
``partitions = {transactions = 2}`` credits and quarantines exactly what the whole stream does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from benchmarks.common import ServerProcess
from benchmarks.job import BAD_EVERY, HUB_ENV, hub_config, store_outcome
from benchmarks.simulator import _Partner
from tanpuhui.testing.sandbox import segment_of

PAGES = 4


def _get(partner: _Partner, query: str) -> tuple[int, dict[str, object]]:
    status, body = partner.answer(b"GET", f"/v1/transactions?limit=1000&{query}".encode())
    return status, orjson.loads(body)


def _holder(item: dict[str, str]) -> str:
    return item.get("account_mobile") or item.get("card_no") or ""


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_a_segments_page_is_its_part_of_as_many_windows_as_there_are_segments_in_the_feeds_order(
    segments: int,
) -> None:
    partner = _Partner(PAGES, BAD_EVERY)
    windows = [_get(partner, f"cursor=p{k}")[1] for k in range(PAGES + 1)]
    assert windows[-1]["data"] == [] and windows[-1]["has_more"] is False  # past the last page
    for k in range(0, PAGES, segments):
        covered = [item for w in windows[k : min(k + segments, PAGES)] for item in w["data"]]  # type: ignore[attr-defined]
        after = min(k + segments, PAGES)
        for segment in range(segments):
            status, part = _get(partner, f"cursor=p{k}&segment={segment}&segments={segments}")
            assert status == 200
            assert part["data"] == [i for i in covered if segment_of(_holder(i), segments) == segment]
            assert (part["next_cursor"], part["has_more"]) == (f"p{after}", after < PAGES)


def test_a_segment_asked_for_again_after_others_is_the_same_bytes() -> None:
    partner = _Partner(40, BAD_EVERY)
    first = partner.answer(b"GET", b"/v1/transactions?cursor=p3&segment=1&segments=2")
    for k in range(4, 40):  # far ahead: page 3 and the windows it needs were dropped and are made again
        partner.answer(b"GET", f"/v1/transactions?cursor=p{k}&segment=0&segments=2".encode())
    assert partner.answer(b"GET", b"/v1/transactions?cursor=p3&segment=1&segments=2") == first


def test_a_simulator_holding_its_pages_answers_the_bytes_it_would_make() -> None:
    held, made = _Partner(PAGES, BAD_EVERY, hold=[2]), _Partner(PAGES, BAD_EVERY)
    assert len(held.held) == PAGES + PAGES // 2 * 2  # every page, and both parts at p0, p2, ...
    for query in ("", "&segment=0&segments=2", "&segment=1&segments=2", "&segment=2&segments=3"):
        for k in range(PAGES + 1):
            target = f"/v1/transactions?cursor=p{k}{query}".encode()
            assert held.answer(b"GET", target) == made.answer(b"GET", target)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("segment=0", "segments must be a whole number from 1 to 64, given with segment"),
        ("segments=2", "segment must be a whole number from 0 to 1, given with segments"),
        ("segment=2&segments=2", "segment must be a whole number from 0 to 1, given with segments"),
        ("segment=-1&segments=2", "segment must be a whole number from 0 to 1, given with segments"),
        ("segment=x&segments=2", "segment must be a whole number from 0 to 1, given with segments"),
        ("segment=0&segments=65", "segments must be a whole number from 1 to 64, given with segment"),
        ("segment=0&segments=", "segments must be a whole number from 1 to 64, given with segment"),
    ],
)
def test_a_segment_the_simulator_cannot_serve_is_a_400_naming_it_as_the_sandbox_says(query: str, problem: str) -> None:
    status, answer = _get(_Partner(PAGES), query)
    assert status == 400
    assert answer == {"error": "invalid_request", "error_description": problem}


def _pull(directory: Path, url: str, partitions: int) -> list[str]:
    """``tanpuhui pull transit_card`` with the job benchmark's hub.toml; the streams it pulled."""
    directory.mkdir()
    config = hub_config(directory, url, partitions)
    exe = str(Path(sys.executable).parent / "tanpuhui")
    done = subprocess.run(
        [exe, "pull", "transit_card", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **HUB_ENV},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summaries = orjson.loads(done.stdout)["summaries"]
    assert all(s["error"] is None for s in summaries), summaries
    return [s["stream"] for s in summaries]


def test_two_partitions_of_the_simulator_credit_and_quarantine_what_the_whole_stream_does(tmp_path: Path) -> None:
    with ServerProcess(["-m", "benchmarks.simulator", "--pages", str(PAGES), "--bad-every", str(BAD_EVERY)]) as sim:
        assert _pull(tmp_path / "whole", sim.url, 1) == ["transactions"]
        assert _pull(tmp_path / "split", sim.url, 2) == ["transactions_0of2", "transactions_1of2"]
    records, quarantine = store_outcome(tmp_path / "whole" / "hub.db")
    split_records, split_quarantine = store_outcome(tmp_path / "split" / "hub.db")
    assert len(records) > 1000 and sum(quarantine.values()) > 10
    assert split_records.keys() == records.keys()
    assert split_records == records  # the same bodies, byte for byte
    assert split_quarantine == quarantine
