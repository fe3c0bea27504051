"""A partitioned transactions stream (``partitions = {transactions = N}``): the partner's segments, pulled as streams
of their own, credit exactly what the whole stream credits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter, TransitCardSettings
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import ConfigError

from .conftest import HubFactory
from .test_pipeline_e2e import run

PARTS = ["transactions_0of3", "transactions_1of3", "transactions_2of3"]
Outcome = tuple[dict[str, bytes], Counter[tuple[str, str]]]


def _outcome(hub: Hub) -> Outcome:
    """The records by id (their bodies) and the quarantine (partner id, stage) of a store."""
    records = {row.record_id: row.body for row in hub.store.read_outbox(0, 100_000)}
    quarantine = Counter((e.partner_record_id, e.stage) for e in hub.store.quarantine_list(limit=100_000))
    return records, quarantine


def _pull_all(hub: Hub) -> tuple[list[PullSummary], Outcome]:
    """Pull the transactions (every part of them), then read what the store holds."""

    async def body() -> tuple[list[PullSummary], Outcome]:
        return await hub.pull("transit_card", "transactions"), _outcome(hub)

    summaries, outcome = run(hub, body)
    assert [s.error for s in summaries] == [None] * len(summaries)
    return summaries, outcome


def test_three_partitions_credit_and_quarantine_exactly_what_the_whole_stream_does(
    make_hub: HubFactory, tmp_path: Path
) -> None:
    with TransitSandbox(trips=1500, seed=11) as sandbox:
        expected = sandbox.dataset.expected()
        whole = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret)
        _, (records, quarantine) = _pull_all(whole)
        (tmp_path / "hub.db").rename(tmp_path / "whole.db")

        split = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret, partitions={"transactions": 3})
        summaries, (split_records, split_quarantine) = _pull_all(split)

    assert [s.stream for s in summaries] == PARTS
    assert all(s.pulled > 0 for s in summaries)
    assert sum(s.pulled for s in summaries) == expected["items"]
    assert len(records) == expected["records"]
    assert split_records == records  # the same ids and the same bytes: records name the stream, not the part
    assert split_quarantine == quarantine
    assert {orjson.loads(body)["source"]["stream"] for body in split_records.values()} == {"transactions"}


def test_each_partition_keeps_its_own_cursor_and_resumes_from_it(make_hub: HubFactory) -> None:
    with TransitSandbox(trips=1500, seed=21, visible=1111) as sandbox:
        expected = sandbox.dataset.expected()
        hub = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret, partitions={"transactions": 3})

        async def body() -> tuple[list[PullSummary], list[PullSummary], list[Any]]:
            first = await hub.pull("transit_card")
            sandbox.publish()
            rest = await hub.pull("transit_card", "transactions_1of3")  # one part alone, then the others
            cursors = [hub.store.load_checkpoint("transit_card", name).cursor for name in PARTS]
            rest += await hub.pull("transit_card")
            return first, rest, cursors

        first, rest, cursors = run(hub, body)
    assert sum(s.pulled for s in first) == 1111
    assert sum(s.pulled for s in rest) == expected["items"] - 1111
    assert sum(s.inserted for s in first + rest) == expected["records"]
    assert sum(s.duplicates for s in first + rest) == 0
    assert cursors[0] == cursors[2] != cursors[1]  # part 1 went on alone; the others kept their own cursors


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ({"trips": 2}, "partitions.trips: the adapter has no stream 'trips'; streams: transactions"),
        ({"transactions": 0}, "partitions.transactions: expected a whole number of partitions from 1 to 64"),
        ({"transactions": 65}, "partitions.transactions: expected a whole number of partitions from 1 to 64"),
        ({"transactions": True}, "partitions.transactions: expected a whole number of partitions from 1 to 64"),
        (2, "partitions: expected a table of stream = number of partitions, e.g. { transactions = 2 }"),
    ],
)
def test_a_wrong_partitions_setting_is_refused_naming_the_file_and_key(
    make_hub: HubFactory, partitions: dict[str, int], message: str
) -> None:
    hub = make_hub("http://127.0.0.1:9", "tanpuhui-client", "Kx9-partition-test-credential", partitions=partitions)
    with pytest.raises(ConfigError) as caught:
        hub.adapter("transit_card")
    assert str(caught.value) == f"test hub.toml: [adapters.transit_card] {message}"


def test_a_stream_whose_partner_cannot_split_it_is_not_partitioned() -> None:
    class Unsplittable(TransactionsStream):
        partitionable = False

    class Adapter(TransitCardAdapter):
        stream_types = (Unsplittable,)

    adapter = Adapter(TransitCardSettings(base_url="http://127.0.0.1:9", client_id="c", client_secret="s" * 12))
    with pytest.raises(ConfigError) as caught:
        adapter.split({"transactions": 2})
    assert str(caught.value) == (
        "[adapters.transit_card] partitions.transactions: stream 'transactions' cannot be partitioned "
        "(its partner cannot split it)"
    )


def test_one_partition_is_the_whole_stream_under_its_own_name(make_hub: HubFactory) -> None:
    hub = make_hub(
        "http://127.0.0.1:9", "tanpuhui-client", "Kx9-partition-test-credential", partitions={"transactions": 1}
    )
    assert [s.name for s in hub.adapter("transit_card").streams()] == ["transactions"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("segment=0", "segments must be a whole number from 1 to 64, given with segment"),
        ("segment=2&segments=2", "segment must be a whole number from 0 to 1, given with segments"),
        ("segment=-1&segments=2", "segment must be a whole number from 0 to 1, given with segments"),
        ("segment=0&segments=65", "segments must be a whole number from 1 to 64, given with segment"),
    ],
)
def test_the_sandbox_refuses_a_segment_it_cannot_serve_with_a_400_naming_it(query: str, problem: str) -> None:
    with TransitSandbox(trips=50) as sandbox:
        token = httpx.post(
            f"{sandbox.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(sandbox.client_id, sandbox.client_secret),
        ).json()["access_token"]
        answer = httpx.get(f"{sandbox.url}/v1/transactions?{query}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_request", "error_description": problem}
