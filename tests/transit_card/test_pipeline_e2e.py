"""End to end through the hub pipeline: the sandbox operator on loopback -> Hub.pull -> the SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import respx

from tanpuhui.adapters.transit_card import TransactionsStream
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.store.base import Checkpoint
from tanpuhui.sdk import recompute
from tanpuhui.testing import Cassette

from .conftest import BASE_URL, CASSETTES, RECORD, FakeSleep, HubFactory

T = TypeVar("T")


def run(hub: Hub, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``body()`` in an event loop of its own (the adapter's HTTP connections belong to the loop that opened them),
    then ``hub`` closed."""

    async def closing() -> T:
        try:
            return await body()
        finally:
            await hub.aclose()

    return asyncio.run(closing())


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=1500, seed=7) as sandbox:
        yield sandbox


def _hub(make_hub: HubFactory, sandbox: TransitSandbox, **settings: Any) -> Hub:
    return make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret, **settings)


async def _pull(hub: Hub, **kwargs: Any) -> PullSummary:
    (summary,) = await hub.pull("transit_card", "transactions", **kwargs)
    assert summary.error is None, summary.error
    return summary


def _outbox(hub: Hub) -> list[dict[str, Any]]:
    return [orjson.loads(row.body) for row in hub.store.read_outbox(0, 100_000)]


def test_a_full_pull_credits_every_journey_and_quarantines_every_bad_item(
    make_hub: HubFactory, sandbox: TransitSandbox
) -> None:
    expected = sandbox.dataset.expected()
    hub = _hub(make_hub, sandbox)

    async def body() -> PullSummary:
        return await _pull(hub)

    summary = run(hub, body)
    assert summary.pulled == expected["items"]
    assert summary.valid == expected["items"] - expected["schema_invalid"] - expected["rejected"]
    assert summary.inserted == expected["records"] and summary.duplicates == 0
    assert summary.quarantined == expected["quarantined"]
    assert summary.records_by_scenario["metro"] + summary.records_by_scenario["bus"] == expected["records"]
    assert summary.kg_by_scenario["metro"] > summary.kg_by_scenario["bus"] > 0


def test_each_bad_item_is_quarantined_at_the_stage_that_caught_it(
    make_hub: HubFactory, sandbox: TransitSandbox
) -> None:
    hub = _hub(make_hub, sandbox)

    async def body() -> dict[str, str]:
        await _pull(hub)
        return {e.partner_record_id: e.stage for e in hub.store.quarantine_list()}

    stages = run(hub, body)
    bad = sandbox.dataset.bad
    expected = {
        **dict.fromkeys(bad["no_offset"] + bad["missing_card"] + bad["unknown_deal_type"], "raw"),
        **dict.fromkeys(bad["orphan_tap_out"] + bad["same_station"] + bad["unknown_bus_line"], "normalize"),
        **dict.fromkeys(bad["unclosed_tap_in"], "incomplete"),
    }
    assert stages == expected


def test_records_in_the_outbox_are_valid_recomputable_and_pseudonymous(
    make_hub: HubFactory, sandbox: TransitSandbox
) -> None:
    hub = _hub(make_hub, sandbox)

    async def body() -> list[dict[str, Any]]:
        await _pull(hub)
        return _outbox(hub)

    records = run(hub, body)
    assert len(records) == sandbox.dataset.expected()["records"]
    dumped = orjson.dumps(records).decode()
    for item in sandbox.dataset.items[:200]:
        for identifier in (item.get("card_no"), item.get("account_mobile")):
            assert not identifier or identifier not in dumped
    for record in records[:300]:
        assert list(RECORD.iter_errors(record)) == []
        assert recompute(record) == record["quantification"]["reduction_kgco2e"]


def test_neither_card_numbers_nor_mobiles_are_stored_in_clear(
    make_hub: HubFactory, sandbox: TransitSandbox, tmp_path: Path
) -> None:
    hub = _hub(make_hub, sandbox)

    async def body() -> None:
        await _pull(hub)

    run(hub, body)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("hub.db*"))
    identifiers = {i.get("card_no") for i in sandbox.dataset.items} | {
        i.get("account_mobile") for i in sandbox.dataset.items
    }
    leaked = [i for i in identifiers if i and i.encode() in stored]
    assert leaked == []


def test_a_pull_resumed_after_more_transactions_are_cleared_credits_each_journey_once(
    make_hub: HubFactory, tmp_path: Path
) -> None:
    with TransitSandbox(trips=1500, seed=21, visible=1111) as sandbox:
        expected = sandbox.dataset.expected()
        hub = _hub(make_hub, sandbox)

        async def body() -> tuple[PullSummary, PullSummary, PullSummary]:
            first = await _pull(hub)
            nothing_new = await _pull(hub)
            sandbox.publish()
            rest = await _pull(hub)
            return first, nothing_new, rest

        first, nothing_new, rest = run(hub, body)
    assert first.pulled == 1111 and nothing_new.pulled == 0
    assert rest.pulled == expected["items"] - 1111
    assert first.inserted + rest.inserted == expected["records"]
    assert first.duplicates == rest.duplicates == 0
    assert first.quarantined + rest.quarantined == expected["quarantined"]


def test_tap_ins_still_waiting_for_their_tap_out_are_kept_with_the_cursor(
    make_hub: HubFactory, sandbox: TransitSandbox
) -> None:
    hub = _hub(make_hub, sandbox)

    async def body() -> Checkpoint:
        await _pull(hub)
        return hub.store.load_checkpoint("transit_card", "transactions")

    checkpoint = run(hub, body)
    assert checkpoint.cursor
    assert len(checkpoint.state["open"]) == sandbox.dataset.expected()["held"]
    assert checkpoint.state["latest"] == max(
        i["deal_time"] for i in sandbox.dataset.items if i["txn_id"] not in sandbox.dataset.bad["no_offset"]
    )


def test_pulling_everything_again_from_the_start_only_finds_duplicates(
    make_hub: HubFactory, sandbox: TransitSandbox
) -> None:
    hub = _hub(make_hub, sandbox)

    async def body() -> tuple[PullSummary, PullSummary]:
        first = await _pull(hub)
        hub.store.commit_page("transit_card", "transactions", [], [], Checkpoint())  # forget cursor and state
        return first, await _pull(hub)

    first, again = run(hub, body)
    assert again.inserted == 0 and again.duplicates == first.inserted


def test_partner_faults_are_retried_and_nothing_is_lost(make_hub: HubFactory, fake_sleep: FakeSleep) -> None:
    with TransitSandbox(trips=1500, seed=7, fail_every=3, throttle_every=5, retry_after=2) as sandbox:
        hub = _hub(make_hub, sandbox, page_size=200)

        async def body() -> PullSummary:
            return await _pull(hub)

        summary = run(hub, body)
        assert sandbox.stats.faults[500] > 0 and sandbox.stats.faults[429] > 0
        assert summary.inserted == sandbox.dataset.expected()["records"]
    assert 2.0 in fake_sleep.waits


def test_a_token_revoked_after_every_page_is_renewed_and_the_pull_completes(
    make_hub: HubFactory, sandbox: TransitSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages one after the other, so each revocation falls between two requests. (With the stream's prefetch, a
    # revocation can also land between a 401 and its retry with the new token: two revocations within one
    # request's life, which the client rightly does not chase past one renewal.)
    # And each page committed alone, so the progress callback (called once a page is committed) runs between them.
    monkeypatch.setattr(TransactionsStream, "prefetch", False)
    hub = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret, hub={"commit_records": 0})

    async def body() -> PullSummary:
        return await _pull(hub, progress=lambda _page: sandbox.revoke_tokens())

    summary = run(hub, body)
    assert summary.inserted == sandbox.dataset.expected()["records"]
    assert sandbox.stats.tokens_issued == summary.pages  # one at the start, one after each revocation but the last


def test_a_recorded_page_with_malformed_items_through_the_hub(make_hub: HubFactory) -> None:
    cassette = Cassette.load(CASSETTES / "malformed_items_quarantined.json")
    hub = make_hub(BASE_URL, "tanpuhui-sandbox", "recorded-secret", page_size=50)

    async def body() -> tuple[PullSummary, list[tuple[str, str]]]:
        summary = await _pull(hub)
        return summary, [(e.partner_record_id, e.problems[0]["pointer"]) for e in hub.store.quarantine_list()]

    with respx.mock(assert_all_called=False) as router:
        cassette.mount(router)
        summary, quarantined = run(hub, body)
    assert (summary.pulled, summary.inserted, summary.quarantined) == (8, 3, 3)
    assert quarantined == [
        ("HF2024110508084401", ""),
        ("HF2024110508391502", "/deal_type"),
        ("HF2024110518372207", "/deal_time"),
    ]
    cassette.assert_all_used()


def test_replay_outside_a_pull_run_loads_the_distance_table_first(
    make_hub: HubFactory, sandbox: TransitSandbox
) -> None:
    async def pull_then_replay_in_a_new_hub() -> list[Any]:
        first = _hub(make_hub, sandbox)
        await _pull(first)
        await first.aclose()
        second = _hub(make_hub, sandbox)
        try:
            entries = [e for e in second.store.quarantine_list(limit=1000) if e.stage == "normalize"]
            assert entries, "the sandbox serves items that fail in normalize (unknown bus line, same station)"
            return await second.replay_quarantine([e.id for e in entries])
        finally:
            await second.aclose()

    results = asyncio.run(pull_then_replay_in_a_new_hub())
    messages = [p.message for r in results for p in r.problems]
    assert all(r.status == "failed" for r in results)
    assert not any("no distance table" in m for m in messages), messages
