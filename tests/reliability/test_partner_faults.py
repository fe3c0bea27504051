"""Partner faults: timeouts, 429 storms, truncated JSON, looping cursors, schema drift.

What must hold whatever the partner does: retries are bounded, the error says what happened and where, every page
committed before the fault stays committed with its cursor (the next run resumes there and finishes with every
journey credited once), and no item disappears without a trace: each one ends as a record or in quarantine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.audit import AuditEntry, AuditLog
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.store.base import DriftEntry, DriftLog, QuarantineEntry, StreamStatus

from .conftest import HubFactory, SleepRecorder, run
from .partner import Fault, FaultyPartner

PAGE = 200


async def _pull(hub: Hub, timeout: float = 60.0) -> PullSummary:
    (summary,) = await asyncio.wait_for(hub.pull("transit_card", "transactions"), timeout)
    return summary


@dataclass
class Pulled:
    """A pull run and the store after it (read before the hub closed)."""

    summary: PullSummary
    outbox: list[dict[str, Any]]
    quarantine: list[QuarantineEntry]
    status: list[StreamStatus]


def _pull_and_close(hub: Hub) -> Pulled:
    async def body() -> Pulled:
        try:
            summary = await _pull(hub)
            store = hub.store
            outbox = [orjson.loads(row.body) for row in store.read_outbox(0, 1_000_000)]
            return Pulled(summary, outbox, store.quarantine_list(limit=1_000_000), store.stream_status())
        finally:
            await hub.aclose()

    return run(body)


def _journeys_credited_once(pulled: Pulled, sandbox: TransitSandbox) -> None:
    records = pulled.outbox
    ids = [r["record_id"] for r in records]
    assert len(ids) == len(set(ids)) == sandbox.dataset.expected()["records"]
    ends = [r["source"]["partner_record_id"].rpartition("+")[2] for r in records]
    assert len(ends) == len(set(ends))


PERSISTENT = {
    "timeouts": (Fault("slow", 3, onwards=True, seconds=2.0), "timeout (ReadTimeout)", 3),
    "429 storm": (Fault("status", 3, onwards=True, value=429, seconds=7), "HTTP 429", 3),
    "503s": (Fault("status", 3, onwards=True, value=503), "HTTP 503", 3),
    "truncated JSON": (Fault("truncate", 3), "response is not JSON", 1),
}


@pytest.mark.parametrize("fault, says, requests", PERSISTENT.values(), ids=list(PERSISTENT))
def test_a_fault_that_outlasts_the_retries_stops_the_run_clearly_and_the_next_run_resumes_after_the_last_page(
    faulty: tuple[TransitSandbox, FaultyPartner],
    make_hub: HubFactory,
    sleeps: SleepRecorder,
    fault: Fault,
    says: str,
    requests: int,
) -> None:
    sandbox, partner = faulty
    partner.add(fault)
    hub = make_hub(sandbox, timeout=0.5)
    pulled = _pull_and_close(hub)
    first = pulled.summary

    assert first.error is not None and says in first.error
    assert "transit_card" in first.error and "/v1/transactions" in first.error
    assert first.pages == 2 and first.pulled == 2 * PAGE
    assert partner.transactions_requests == 2 + requests  # bounded: the retry budget, then it stops
    if fault.kind == "status" and fault.value == 429:
        assert sleeps.waits == [7.0, 7.0]  # the partner's Retry-After, honoured
    (status,) = pulled.status
    assert status.last_error == first.error

    partner.clear()
    resumed = _pull_and_close(make_hub(sandbox, timeout=0.5))
    second = resumed.summary
    assert second.error is None
    assert second.duplicates == 0  # resumed from the saved cursor: page 3 on, nothing pulled twice
    assert first.pulled + second.pulled == len(sandbox.dataset.items)
    _journeys_credited_once(resumed, sandbox)


def test_timeouts_within_the_retry_budget_cost_nothing_but_time(
    faulty: tuple[TransitSandbox, FaultyPartner], make_hub: HubFactory, sleeps: SleepRecorder
) -> None:
    sandbox, partner = faulty
    partner.add(Fault("slow", 3, seconds=2.0), Fault("slow", 4, seconds=2.0))
    pulled = _pull_and_close(make_hub(sandbox, timeout=0.5))
    assert pulled.summary.error is None
    assert [kind for _, kind in partner.applied] == ["slow", "slow"]
    assert len(sleeps.waits) == 2 and all(0.5 <= w <= 2.5 for w in sleeps.waits)  # backoff, first try 0.5 s
    _journeys_credited_once(pulled, sandbox)


def test_a_page_that_repeats_the_cursor_it_was_asked_for_stops_the_run_instead_of_looping(
    faulty: tuple[TransitSandbox, FaultyPartner], make_hub: HubFactory
) -> None:
    sandbox, partner = faulty
    partner.add(Fault("repeat_cursor", 3))
    summary = _pull_and_close(make_hub(sandbox)).summary
    assert summary.error is not None and "next_cursor is the cursor just requested" in summary.error
    assert summary.pages == 2 and partner.transactions_requests == 3

    partner.clear()
    resumed = _pull_and_close(make_hub(sandbox))
    assert resumed.summary.error is None
    _journeys_credited_once(resumed, sandbox)


def test_a_cursor_that_leads_back_to_an_earlier_page_stops_the_run_instead_of_looping(
    faulty: tuple[TransitSandbox, FaultyPartner], make_hub: HubFactory
) -> None:
    sandbox, partner = faulty
    # The page at offset 600 (the 4th) says "more at the start": no single answer repeats its own cursor.
    partner.add(Fault("cycle_cursor", 1, onwards=True, value=3 * PAGE))
    summary = _pull_and_close(make_hub(sandbox)).summary
    assert summary.error is not None and "loop" in summary.error
    assert partner.transactions_requests <= 12  # stopped at the first cursor seen twice, not after many rounds
    assert summary.duplicates <= PAGE  # at most one page again before the loop is seen


def test_a_retyped_field_quarantines_each_item_with_its_json_pointer_and_the_run_goes_on(
    faulty: tuple[TransitSandbox, FaultyPartner], make_hub: HubFactory
) -> None:
    sandbox, partner = faulty
    partner.add(Fault("retype", 3, field="deal_value_fen"))
    pulled = _pull_and_close(make_hub(sandbox))
    summary = pulled.summary
    assert summary.error is None
    assert summary.pulled == len(sandbox.dataset.items)

    entries = pulled.quarantine
    raw_stage = [e for e in entries if e.stage == "raw"]
    assert len(raw_stage) == PAGE
    for entry in raw_stage:
        assert [p["pointer"] for p in entry.problems] == ["/deal_value_fen"]
        assert "integer" in entry.problems[0]["message"]
    # Never a silent drop: each transaction is in a record (its own or its journey's) or in quarantine.
    accounted: set[str] = set()
    for record in pulled.outbox:
        accounted.update(record["source"]["partner_record_id"].split("+"))
    accounted.update(e.partner_record_id for e in entries)
    assert {item["txn_id"] for item in sandbox.dataset.items} <= accounted


def test_a_new_field_passes_and_is_reported_as_schema_drift_per_stream(
    faulty: tuple[TransitSandbox, FaultyPartner], make_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, partner = faulty
    partner.add(
        Fault("add_field", 2, field="carbon_points", value=3), Fault("add_field", 3, field="carbon_points", value=5)
    )
    hub = make_hub(sandbox)

    async def body() -> tuple[PullSummary, list[DriftEntry], list[AuditEntry]]:
        try:
            summary = await _pull(hub)
            store = hub.store
            assert isinstance(store, DriftLog) and isinstance(store, AuditLog)
            return summary, store.schema_drift(), store.audit_entries(0, 1000)
        finally:
            await hub.aclose()

    with caplog.at_level("WARNING", logger="tanpuhui.pull"):
        summary, drift, audit = run(body)
    assert summary.error is None and summary.quarantined == 0  # the schema admits extra fields: nothing refused
    assert summary.inserted == sandbox.dataset.expected()["records"]
    assert summary.drift == {"carbon_points": 2 * PAGE}
    (entry,) = drift
    assert (entry.adapter, entry.stream, entry.field, entry.items) == (
        "transit_card",
        "transactions",
        "carbon_points",
        2 * PAGE,
    )
    assert entry.example.startswith("HF")  # a transaction id to look it up by
    assert "carbon_points (400 items)" in caplog.text and "drift report" in caplog.text
    flagged = [e.seq for e in audit if e.details.get("unknown_fields") == ["carbon_points"]]
    assert len(flagged) == 2  # pages 2 and 3, in the tamper-evident log too
