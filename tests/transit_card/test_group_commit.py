"""A pull commits its processed pages together (``[hub] commit_records``, ``commit_interval``): the same outcome as
a commit per page, in fewer transactions, and nothing processed before a partner failure is dropped."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import PartnerResponseError

from .conftest import HubFactory
from .test_pipeline_e2e import run


def _pull_counting_commits(hub: Hub) -> tuple[PullSummary, int, Any]:
    """Pull the transactions; the summary, the store transactions the pull committed, and what the store holds."""
    calls = 0
    commit_pages = hub.store.commit_pages

    def counting(pages: Any) -> Any:
        nonlocal calls
        calls += 1
        return commit_pages(pages)

    hub.store.commit_pages = counting  # type: ignore[method-assign]

    async def body() -> tuple[PullSummary, Any]:
        (summary,) = await hub.pull("transit_card", "transactions")
        checkpoint = hub.store.load_checkpoint("transit_card", "transactions")
        held = (
            {row.record_id: row.body for row in hub.store.read_outbox(0, 100_000)},
            Counter((e.partner_record_id, e.stage) for e in hub.store.quarantine_list(limit=100_000)),
            orjson.dumps(checkpoint.state),
        )
        return summary, held

    summary, held = run(hub, body)
    assert summary.error is None
    return summary, calls, held


@pytest.mark.parametrize("commit_records", [1, 500, 100_000])
def test_grouped_commits_store_exactly_what_a_commit_per_page_stores(
    make_hub: HubFactory, tmp_path: Any, commit_records: int
) -> None:
    with TransitSandbox(trips=1500, seed=9) as sandbox:
        one = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret, hub={"commit_records": 0})
        per_page, per_page_commits, expected = _pull_counting_commits(one)
        (tmp_path / "hub.db").rename(tmp_path / "per-page.db")
        grouped_hub = make_hub(
            sandbox.url, sandbox.client_id, sandbox.client_secret, hub={"commit_records": commit_records}
        )
        grouped, grouped_commits, found = _pull_counting_commits(grouped_hub)
    assert found == expected  # records, quarantine and the saved state, byte for byte
    assert (grouped.pages, grouped.inserted) == (per_page.pages, per_page.inserted)
    assert per_page_commits == per_page.pages + 1  # each page, then the final flush
    if commit_records == 1:
        assert grouped_commits == per_page_commits
    elif commit_records == 500:
        assert 2 < grouped_commits < per_page_commits / 2  # ~150 records a page: every fourth page
    else:
        assert grouped_commits == 1  # everything with the final flush


def test_a_partner_failing_mid_run_keeps_the_pages_processed_before_it(make_hub: HubFactory) -> None:
    # Every 4th transactions request answers 500 and is not retried: the 4th page never comes.
    with TransitSandbox(trips=1500, seed=9, fail_every=4) as sandbox:
        hub = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret, retry_attempts=1)

        async def body() -> tuple[PullSummary, int, Any]:
            (summary,) = await hub.pull("transit_card", "transactions")
            return summary, hub.store.counts()["outbox"], hub.store.load_checkpoint("transit_card", "transactions")

        summary, stored, checkpoint = run(hub, body)
    assert summary.error is not None and "500" in summary.error
    assert summary.pages == 3 and summary.inserted > 0
    assert stored == summary.inserted  # the three pages' records were committed, with their cursor
    assert checkpoint.cursor is not None


def test_a_page_whose_processing_fails_midway_commits_nothing_of_the_group_it_would_have_joined(
    make_hub: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream's state may already hold part of the failed page, so no checkpoint is taken from it: the pages
    before it are fetched again by the next run (nothing lost, nothing credited twice)."""
    with TransitSandbox(trips=1500, seed=9) as sandbox:
        hub = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret)
        process = hub.pipeline.process
        calls = 0

        def failing_fourth(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 4:
                raise PartnerResponseError("transit_card: a page the hub could not process")
            return process(*args, **kwargs)

        monkeypatch.setattr(hub.pipeline, "process", failing_fourth)

        async def body() -> tuple[PullSummary, int, Any]:
            (summary,) = await hub.pull("transit_card", "transactions")
            return summary, hub.store.counts()["outbox"], hub.store.load_checkpoint("transit_card", "transactions")

        summary, stored, checkpoint = run(hub, body)
        monkeypatch.setattr(hub.pipeline, "process", process)
        again = make_hub(sandbox.url, sandbox.client_id, sandbox.client_secret)
        (rest,) = run(again, lambda: again.pull("transit_card", "transactions"))
        expected = sandbox.dataset.expected()
    assert summary.error is not None and summary.pages == 0
    assert stored == 0 and checkpoint.cursor is None
    assert rest.error is None and (rest.inserted, rest.duplicates) == (expected["records"], 0)
