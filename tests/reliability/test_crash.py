"""The crash test, quick variant: `tanpuhui pull`, `forward`, `run` and `serve` SIGKILLed at random points.

The long variant is ``python -m tests.reliability.long_run`` (see docs/reliability.md); both run
:func:`tests.reliability.crash.run_crash_test`, whose docstring says what is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from .crash import CrashConfig, CrashReport, run_crash_test, set_check


def assert_nothing_lost_or_doubled(report: CrashReport, expected: int) -> None:
    """What every hard-kill run must end with: no failed step; each of the ``expected`` journeys delivered exactly
    once under one event id (nothing lost, doubled or unexpected); the audit chain, the store and the sinks intact."""
    print(report.summary())
    assert report.failures == []
    assert report.lost == [], f"lost sequence numbers {report.lost[:20]}"
    assert report.duplicated == [], f"journeys doubled under two event ids: {report.duplicated[:20]}"
    assert report.unexpected == []
    assert report.delivered == report.expected == expected
    assert report.audit_problems == []
    assert report.integrity == "ok" and report.outbox_rows == report.expected and report.quarantined == 0
    assert report.lagging_sinks == {}


def test_hard_kills_of_pull_forward_and_serve_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("TANPUHUI_CRASH_SEED", "20241105"))
    config = CrashConfig(workdir=tmp_path, trips=1000, kills=8, seed=seed, serve=True, pushes=400, push_batch=20)
    report = run_crash_test(config)
    assert_nothing_lost_or_doubled(report, 1000 + 400)
    assert report.acked_not_delivered == [] and report.webhooks_acked == 20
    assert report.total_kills >= 8, report.summary()
    assert report.kills["pull:after-page"] + report.kills["forward:after-request"] > 0, report.summary()
    assert sum(n for kind, n in report.kills.items() if kind.startswith("serve:")) > 0, report.summary()


def test_hard_kills_of_run_pulling_and_forwarding_in_one_process_lose_nothing_and_double_nothing(
    tmp_path: Path,
) -> None:
    """``tanpuhui run`` forwards pages from memory as they commit: a kill between commit and send, mid-send or
    between send and mark must leave the outbox and the sink position to the next run, as pull + forward do."""
    seed = int(os.environ.get("TANPUHUI_CRASH_SEED", "20261206"))
    config = CrashConfig(workdir=tmp_path, trips=1000, kills=8, seed=seed, run=True)
    report = run_crash_test(config)
    assert_nothing_lost_or_doubled(report, 1000)
    assert report.total_kills >= 8, report.summary()
    assert report.kills["run:after-page"] + report.kills["run:after-request"] > 0, report.summary()


def test_hard_kills_of_pull_and_run_with_two_workers_on_two_partitions_lose_nothing_and_double_nothing(
    tmp_path: Path,
) -> None:
    """``pull --workers 2`` and ``run --workers 2`` over the feed read in two partitions: each worker commits its
    partition's pages with their cursors; SIGKILL of the process group (all at once) or of the parent alone must
    leave each partition to resume from its own committed cursor."""
    seed = int(os.environ.get("TANPUHUI_CRASH_SEED", "20261207"))
    config = CrashConfig(workdir=tmp_path, trips=1000, kills=8, seed=seed, run=True, workers=2, partitions=2)
    report = run_crash_test(config)
    assert_nothing_lost_or_doubled(report, 1000)
    assert report.total_kills >= 8, report.summary()
    assert report.kills["pull:after-page"] + report.kills["run:after-page"] > 0, report.summary()


def _event(event_id: str, partner_record_id: str) -> dict[str, object]:
    return {"id": event_id, "data": {"source": {"partner_record_id": partner_record_id}}}


ITEMS = [
    {"txn_id": "T0", "deal_type": "metro_in"},
    {"txn_id": "T1", "deal_type": "bus"},
    {"txn_id": "T2", "deal_type": "metro_out"},
    {"txn_id": "T3", "deal_type": "bus"},
]


def test_the_set_check_passes_a_complete_delivery() -> None:
    found = set_check(ITEMS, [_event("a", "T1"), _event("b", "T0+T2"), _event("c", "T3")])
    assert (found.expected, found.delivered, found.lost, found.duplicated, found.unexpected) == (3, 3, [], [], [])


def test_the_set_check_reports_a_lost_a_doubled_and_an_unexpected_journey() -> None:
    found = set_check(ITEMS, [_event("a", "T1"), _event("a2", "T1"), _event("b", "T0+T2"), _event("x", "T9")])
    assert found.lost == ["3"]  # T3's journey never arrived
    assert found.duplicated == ["1"]  # T1's journey arrived as two different records
    assert found.unexpected == ["T9"]
