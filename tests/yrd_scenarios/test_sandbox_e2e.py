"""End to end through the hub: the sandbox YRD exchange on loopback -> Hub.pull / Hub.receive -> SQLite store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tanpuhui.adapters.yrd_scenarios.sandbox import SandboxExchange, YrdSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import recompute

from .conftest import REDUCTION, WEBHOOK_SECRET, FakeSleep, HubFactory, outbox, voids

T = TypeVar("T")


def run(hub: Hub, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """One event loop per run, closing the adapter's connections in it (they belong to the loop that opened them).

    The store stays open for the assertions; the fixture closes it.
    """

    async def wrapped() -> T:
        try:
            return await body()
        finally:
            await hub.adapter("yrd_scenarios").aclose()

    return asyncio.run(wrapped())


def pull(hub: Hub, stream: str | None = None, **kwargs: Any) -> dict[str, PullSummary]:
    summaries = run(hub, lambda: hub.pull("yrd_scenarios", stream, **kwargs))
    for s in summaries:
        assert s.error is None, s.error
    return {s.stream: s for s in summaries}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[YrdSandbox]:
    with YrdSandbox(records=2000, seed=7) as sandbox:
        yield sandbox


def hub_for(hub_factory: HubFactory, sandbox: YrdSandbox, **settings: Any) -> Hub:
    return hub_factory(
        sandbox.settings(client_secret_env="YRD_CLIENT_SECRET", webhook_secrets=[WEBHOOK_SECRET], **settings),
        environ={"YRD_CLIENT_SECRET": sandbox.client_secret},
    )


def test_a_full_pull_ends_as_the_dataset_says(hub_factory: HubFactory, sandbox: YrdSandbox) -> None:
    expected = sandbox.dataset.expected()
    hub = hub_for(hub_factory, sandbox, page_size=300)
    summaries = pull(hub)
    records, catalog = summaries["records"], summaries["catalog"]
    assert (records.pulled, records.inserted, records.quarantined) == (
        expected["items"],
        expected["records"],
        expected["quarantined"],
    )
    assert catalog.quarantined == expected["catalog_gaps"]
    treatments = [r["activity"]["details"]["treatment"] for r in outbox(hub)]
    assert treatments.count("recognised") == expected["recognised"]
    assert treatments.count("requantified") == expected["requantified"]


def test_withdrawn_records_are_counted_per_platform(hub_factory: HubFactory, sandbox: YrdSandbox) -> None:
    expected = sandbox.dataset.expected()
    hub = hub_for(hub_factory, sandbox)
    pull(hub, "records")
    counts = hub.store.load_checkpoint("yrd_scenarios", "records").state["withdrawn"]
    by_status = {"credited": 0, "cancelled": 0}
    for key, n in counts.items():
        by_status[key.split(":")[1]] += n
    assert by_status == {"credited": expected["credited"], "cancelled": expected["cancelled"]}


def test_a_record_cancelled_after_it_was_forwarded_is_logged_under_its_forwarded_id(
    hub_factory: HubFactory, sandbox: YrdSandbox
) -> None:
    hub = hub_for(hub_factory, sandbox)
    pull(hub, "records")
    origin_ids = set(sandbox.dataset.kinds["cancelled_after_active"])
    forwarded = {
        r["origin"]["record_id"]: r["record_id"] for r in outbox(hub) if r["origin"]["record_id"] in origin_ids
    }
    assert set(forwarded) == origin_ids
    log = hub.store.load_checkpoint("yrd_scenarios", "records").state["withdrawn_log"]
    logged = {e["origin"].split(":")[1]: e["record_id"] for e in log if e["origin"].split(":")[1] in origin_ids}
    assert logged == forwarded
    voided = {v["voids"] for v in voids(hub)}
    assert set(forwarded.values()) <= voided  # and each was voided downstream (docs/verification.md)


def test_every_bad_item_is_quarantined_at_the_stage_and_pointer_that_caught_it(
    hub_factory: HubFactory, sandbox: YrdSandbox
) -> None:
    hub = hub_for(hub_factory, sandbox)
    pull(hub, "records")
    found = {e.partner_record_id: (e.stage, e.problems[0]["pointer"]) for e in hub.store.quarantine_list(limit=1000)}
    kinds = sandbox.dataset.kinds
    expected = {
        **{rid: ("raw", "/start_time") for rid in kinds["no_offset"]},
        **{rid: ("normalize", "/resident_id") for rid in kinds["bad_resident_id"]},
        **{rid: ("normalize", "/methodology_code") for rid in kinds["unrecognised_no_activity"]},
    }
    assert found == expected


def test_outbox_records_are_valid_recomputable_and_hold_no_identifier(
    hub_factory: HubFactory, sandbox: YrdSandbox, tmp_path: Path
) -> None:
    hub = hub_for(hub_factory, sandbox)
    pull(hub, "records")
    records = outbox(hub)
    for record in records:
        assert recompute(record) == record["quantification"]["reduction_kgco2e"]
    for record in records[::20]:  # the reference validator is slow; the hub validated all of them already
        assert list(REDUCTION.iter_errors(record)) == []
    hub.store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("hub.db*"))
    people = {i.get("mobile") for i in sandbox.dataset.items} | {i.get("resident_id") for i in sandbox.dataset.items}
    leaked = [p for p in people - {None} if p.encode() in stored]
    assert leaked == []


def _credited_by_a_pull_then_forgotten(hub_factory: HubFactory, sandbox: YrdSandbox, tmp_path: Path) -> set[str]:
    """The record ids a pull through the exchange credits; the store is deleted after, so the next hub starts
    afresh."""
    hub = hub_for(hub_factory, sandbox)
    pull(hub, "records")
    credited = {r["record_id"] for r in outbox(hub)}
    hub.store.close()
    for p in tmp_path.glob("hub.db*"):
        p.unlink()
    return credited


def test_one_endpoint_per_platform_credits_the_same_records_as_the_exchange(
    hub_factory: HubFactory, sandbox: YrdSandbox, tmp_path: Path
) -> None:
    via_exchange = _credited_by_a_pull_then_forgotten(hub_factory, sandbox, tmp_path)
    per_platform = hub_for(hub_factory, sandbox, per_platform=True)
    summaries = pull(per_platform, "records")
    assert {r["record_id"] for r in outbox(per_platform)} == via_exchange
    cursor = per_platform.store.load_checkpoint("yrd_scenarios", "records").cursor
    assert sorted(cursor) == ["jiangsu", "shanghai", "zhejiang"]
    assert summaries["records"].quarantined == sandbox.dataset.expected()["quarantined"]


def test_an_incremental_pull_resumes_where_the_last_run_stopped(hub_factory: HubFactory) -> None:
    with YrdSandbox(records=600, seed=8, visible=250) as sandbox:
        first = pull(hub_for(hub_factory, sandbox, page_size=100), "records")["records"]
        sandbox.publish()
        second = pull(hub_for(hub_factory, sandbox, page_size=100), "records")["records"]
        total = sandbox.dataset.expected()
    assert first.pulled == 250 and first.pulled + second.pulled == total["items"]
    assert second.duplicates == 0
    assert first.inserted + second.inserted == total["records"]


def test_partner_faults_are_retried_and_nothing_is_lost(hub_factory: HubFactory, fake_sleep: FakeSleep) -> None:
    with YrdSandbox(records=900, seed=9, fail_every=4, throttle_every=3, retry_after=2) as sandbox:
        summary = pull(hub_for(hub_factory, sandbox, page_size=100), "records")["records"]
        faults = dict(sandbox.stats.faults)
        expected = sandbox.dataset.expected()
    assert summary.inserted == expected["records"]
    assert faults[429] > 0 and faults[500] > 0
    assert fake_sleep.waits.count(2.0) == faults[429]


def test_tokens_revoked_after_every_page_are_renewed_and_the_pull_completes(hub_factory: HubFactory) -> None:
    with YrdSandbox(records=500, seed=10) as sandbox:
        hub = hub_for(hub_factory, sandbox, page_size=100)
        hub.config.hub.commit_records = 0  # each page committed (and reported) alone: a revocation between pages
        summaries = run(
            hub, lambda: hub.pull("yrd_scenarios", "records", progress=lambda page: sandbox.revoke_tokens())
        )
        issued = sandbox.stats.tokens_issued
        expected = sandbox.dataset.expected()
    (summary,) = summaries
    assert summary.error is None and summary.inserted == expected["records"]
    assert issued == summary.pages  # one at the start, one after each revocation but the last


def test_wrong_client_credentials_stop_the_run_with_an_auth_error(hub_factory: HubFactory, sandbox: YrdSandbox) -> None:
    hub = hub_factory(sandbox.settings(client_secret_env="YRD_CLIENT_SECRET"), environ={"YRD_CLIENT_SECRET": "nope"})
    (summary,) = run(hub, lambda: hub.pull("yrd_scenarios", "records"))
    assert summary.error is not None
    assert "refused client 'anhui-tanpuhui-sandbox': invalid_client" in summary.error


def test_the_pushed_feed_credits_what_a_pull_credits(
    hub_factory: HubFactory, sandbox: YrdSandbox, tmp_path: Path
) -> None:
    via_pull = _credited_by_a_pull_then_forgotten(hub_factory, sandbox, tmp_path)
    pushed = hub_for(hub_factory, sandbox)
    results = [
        pushed.receive("yrd_scenarios", "records_push", headers, body).page
        for headers, body in sandbox.signed_pushes(WEBHOOK_SECRET, batch=250)
    ]
    assert {r["record_id"] for r in outbox(pushed)} == via_pull
    assert sum(r.quarantined for r in results) == sandbox.dataset.expected()["quarantined"]


def test_pulling_after_the_feed_was_pushed_only_finds_duplicates(hub_factory: HubFactory, sandbox: YrdSandbox) -> None:
    hub = hub_for(hub_factory, sandbox)
    for headers, body in sandbox.signed_pushes(WEBHOOK_SECRET, batch=500):
        hub.receive("yrd_scenarios", "records_push", headers, body)
    before = len(outbox(hub))
    summary = pull(hub_for(hub_factory, sandbox), "records")["records"]
    assert (summary.inserted, summary.duplicates) == (0, before)


def test_the_catalog_is_reviewed_again_only_when_it_or_the_tables_change(
    hub_factory: HubFactory, sandbox: YrdSandbox
) -> None:
    assert pull(hub_for(hub_factory, sandbox), "catalog")["catalog"].quarantined == 2
    again = pull(hub_for(hub_factory, sandbox), "catalog")["catalog"]
    assert (again.pages, again.quarantined) == (0, 0)
    tables = sandbox.settings()
    tables["recognition"]["JS-TPH-NEV-2024"] = "tph.transit.bus"
    changed = pull(hub_for(hub_factory, sandbox, recognition=tables["recognition"]), "catalog")["catalog"]
    assert (changed.pages, changed.quarantined, changed.quarantine_repeats) == (1, 0, 1)  # the same entry, again


def test_a_catalog_gap_replayed_after_the_table_is_fixed_is_resolved(
    hub_factory: HubFactory, sandbox: YrdSandbox
) -> None:
    hub = hub_for(hub_factory, sandbox)
    pull(hub, "catalog")
    entries = {e.partner_record_id: e.id for e in hub.store.quarantine_list()}
    recognition = {**sandbox.settings()["recognition"], "JS-TPH-NEV-2024": "tph.transit.bus"}
    fixed = hub_for(hub_factory, sandbox, recognition=recognition)
    (nev, bike) = asyncio.run(fixed.replay_quarantine([entries["JS-NEV"], entries["ZJ-GXDC"]]))
    assert (nev.status, bike.status) == ("resolved", "failed")
    state = fixed.store.load_checkpoint("yrd_scenarios", "catalog").state
    assert state["scenarios"]["jiangsu:JS-NEV"]["treatment"] == "recognised as tph.transit.bus"


def test_a_catalog_entry_mapped_to_a_methodology_the_hub_lacks_is_reported(
    hub_factory: HubFactory, sandbox: YrdSandbox
) -> None:
    recognition = {**sandbox.settings()["recognition"], "ZJ-TPH-GXDC-2023": "tph.bike.shared"}
    hub = hub_for(hub_factory, sandbox, recognition=recognition)
    pull(hub, "catalog")
    problems = {e.partner_record_id: e.problems[0]["message"] for e in hub.store.quarantine_list()}
    assert (
        "is recognised as tph.bike.shared, which cannot be used: unknown methodology 'tph.bike.shared'"
        in problems["ZJ-GXDC"]
    )


def test_the_sandbox_starts_in_under_a_second() -> None:
    started = time.perf_counter()
    with YrdSandbox(records=5000, seed=7) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
    assert time.perf_counter() - started < 1.0


def test_the_dataset_is_deterministic_per_seed() -> None:
    assert SandboxExchange(300, 5).dataset.items == SandboxExchange(300, 5).dataset.items
    assert SandboxExchange(300, 5).dataset.items != SandboxExchange(300, 6).dataset.items
