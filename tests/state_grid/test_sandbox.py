"""End to end against the sandbox partner on loopback: 200 Hefei households x 30 days, faults, pushes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from tanpuhui.adapters.state_grid import StateGridSettings
from tanpuhui.adapters.state_grid.sandbox import Dataset, StateGridSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub

from .conftest import KEYS, FakeSleep, HubFactory, outbox, quarantine


@pytest.fixture(scope="module")
def sandbox() -> Iterator[StateGridSandbox]:
    with StateGridSandbox(households=200, days=30, seed=7) as sb:
        yield sb


def run_pull(hub: Hub, **options: Any) -> PullSummary:
    """One pull run, its partner connections closed in the same event loop (as one CLI invocation does)."""

    async def go() -> PullSummary:
        try:
            (summary,) = await hub.pull("state_grid", "readings", **options)
            return summary
        finally:
            await hub.adapter("state_grid").aclose()

    return asyncio.run(go())


def sandbox_hub(make_hub: HubFactory, sb: StateGridSandbox, **overrides: Any) -> Hub:
    return make_hub(table=sb.hub_table(**{"page_size": 500, **overrides}), environ=sb.environ())


def test_a_full_pull_credits_exactly_what_the_dataset_expects(sandbox: StateGridSandbox, make_hub: HubFactory) -> None:
    hub = sandbox_hub(make_hub, sandbox)
    summary = run_pull(hub)
    expected = sandbox.dataset.expected()
    assert summary.error is None
    assert (summary.pulled, summary.inserted, summary.quarantined) == (
        expected["items"],
        expected["records"],
        expected["quarantined"],
    )
    records = outbox(hub)
    saved = sum(r["quantification"]["baseline"]["quantity"] - r["activity"]["quantity"] for r in records)
    assert saved == pytest.approx(expected["saved_kwh"], abs=0.01)
    assert summary.kg_by_scenario["peak_electricity_saving"] == pytest.approx(saved * 0.6782, rel=1e-4)
    assert {r["region"][:4] for r in records} == {"3401"}  # Hefei


def test_the_sandbox_faults_end_where_the_adapter_documents(sandbox: StateGridSandbox, make_hub: HubFactory) -> None:
    hub = sandbox_hub(make_hub, sandbox)
    run_pull(hub)
    faults = sandbox.dataset.faults
    assert [(pid, stage) for pid, stage, _ in quarantine(hub)] == sorted(
        [(faults["malformed"][0], "raw"), (faults["backwards"][0], "normalize")]
    )
    credited = {r["source"]["partner_record_id"] for r in outbox(hub)}
    # a faulty reading is never credited, and the reading after it spans two days (a gap): not credited either
    for kind in ("missing_status", "estimated", "backwards", "malformed", "missing_day"):
        (faulty,) = faults[kind]
        after = faulty[:2] + _next_day(faulty[2:10]) + faulty[10:]
        assert faulty not in credited and after not in credited, kind
    # the new meter's first reading starts a chain: no difference across meters is ever credited
    (first_on_new_meter,) = faults["meter_replacement"]
    assert first_on_new_meter not in credited


def _next_day(yyyymmdd: str) -> str:
    from datetime import date, timedelta

    day = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    return f"{day + timedelta(days=1):%Y%m%d}"


def test_daily_incremental_runs_add_up_to_one_full_pull(make_hub: HubFactory) -> None:
    with StateGridSandbox(households=40, days=20, seed=9, visible_days=10) as sb:
        first = run_pull(sandbox_hub(make_hub, sb, page_size=150))
        sb.publish(5)
        second = run_pull(sandbox_hub(make_hub, sb, page_size=150))
        sb.publish()
        third = run_pull(sandbox_hub(make_hub, sb, page_size=150))
        expected = sb.dataset.expected()
    runs = (first, second, third)
    assert [r.error for r in runs] == [None, None, None]
    assert sum(r.pulled for r in runs) == expected["items"]
    assert sum(r.inserted for r in runs) == expected["records"]
    assert sum(r.duplicates for r in runs) == 0


def test_throttling_server_errors_and_a_revoked_token_lose_nothing(make_hub: HubFactory, fake_sleep: FakeSleep) -> None:
    with StateGridSandbox(households=60, days=15, seed=11, fail_every=4, throttle_every=3, retry_after=2) as sb:
        hub = sandbox_hub(make_hub, sb, page_size=100)
        hub.config.hub.commit_records = 0  # each page committed (and reported) alone: a revocation between pages
        summary = run_pull(hub, progress=lambda page: sb.revoke_tokens())
        expected = sb.dataset.expected()
        stats = sb.stats
    assert summary.error is None
    assert (summary.pulled, summary.inserted, summary.quarantined) == (
        expected["items"],
        expected["records"],
        expected["quarantined"],
    )
    assert stats.faults[429] > 0 and stats.faults[500] > 0
    assert 2.0 in fake_sleep.waits  # the partner's Retry-After
    assert stats.tokens_issued == summary.pages  # one token per page: each was revoked after its page


def test_demand_response_pushes_from_the_sandbox_are_credited(sandbox: StateGridSandbox, make_hub: HubFactory) -> None:
    hub = sandbox_hub(make_hub, sandbox)
    results = [hub.receive("state_grid", "demand_response", h, b).page for h, b in sandbox.signed_demand_response(50)]
    expected = sandbox.dataset.expected_demand_response()
    assert sum(r.items for r in results) == expected["results"]
    assert sum(r.inserted for r in results) == expected["records"]
    assert sum(r.quarantined for r in results) == expected["quarantined"]
    subjects = {r["subject"]["pseudonym"] for r in outbox(hub)}
    assert subjects <= {KEYS.pseudonym("account", hh.cons_no) for hh in sandbox.dataset.households}


def test_deliver_demand_response_posts_signed_batches(sandbox: StateGridSandbox, make_hub: HubFactory) -> None:
    hub = sandbox_hub(make_hub, sandbox)
    url = "http://hub.sidecar.test/webhooks/state_grid/demand_response"

    def receive(request: httpx.Request) -> httpx.Response:
        result = hub.receive("state_grid", "demand_response", dict(request.headers), request.content).page
        return httpx.Response(200, json={"inserted": result.inserted})

    with respx.mock(assert_all_mocked=True) as router:
        router.post(url).mock(side_effect=receive)
        statuses = sandbox.deliver_demand_response(url, batch_size=40)
    assert statuses == [200] * len(statuses) and len(statuses) == -(-len(sandbox.dataset.demand_response) // 40)
    assert len(outbox(hub)) == sandbox.dataset.expected_demand_response()["records"]


def test_the_dataset_is_deterministic_per_seed() -> None:
    assert Dataset(30, 10, 5).items == Dataset(30, 10, 5).items
    assert Dataset(30, 10, 5).items != Dataset(30, 10, 6).items
    assert Dataset(30, 10, 5).demand_response == Dataset(30, 10, 5).demand_response


def test_household_usage_is_plausible_for_hefei(sandbox: StateGridSandbox) -> None:
    days = sandbox.dataset.clean_days()
    totals = [total for series in days.values() for _, _, total in series]
    shares = [peak / total for series in days.values() for _, peak, total in series]
    means = [sum(t for _, _, t in series) / len(series) for series in days.values()]
    assert min(totals) >= 2.5 and max(totals) <= 26
    assert min(means) >= 5 and max(means) <= 16.5
    assert min(shares) >= 0.14 and max(shares) <= 0.71
    assert 0.3 <= sum(shares) / len(shares) <= 0.5


def test_the_sandbox_starts_in_under_a_second() -> None:
    started = time.perf_counter()
    with StateGridSandbox(households=200, days=30, seed=3) as sb:
        elapsed = time.perf_counter() - started
        assert sb.url.startswith("http://127.0.0.1:")
    assert elapsed < 1.0


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        Dataset(10, 10, 1, faults={"meter_fire": 1})


def test_the_sandbox_settings_build_the_adapters_settings_model(sandbox: StateGridSandbox) -> None:
    settings = StateGridSettings(**sandbox.settings(page_size=200))
    assert (settings.base_url, settings.token_url) == (sandbox.url, f"{sandbox.url}/oauth/token")
    assert [s.get_secret_value() for s in settings.webhook_secrets] == [sandbox.webhook_secret]
    assert sandbox.hub_table()["client_secret"] == {"env": "STATE_GRID_CLIENT_SECRET"}
    assert set(sandbox.environ()) == {"STATE_GRID_CLIENT_SECRET", "STATE_GRID_WEBHOOK_SECRET"}
