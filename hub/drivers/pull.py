"""The pull driver: a stream's pages from its committed cursor to the partner's end, each committed with its cursor.

Per page, in one transaction: the new outbox rows, the quarantine entries and the stream's checkpoint (partner
cursor + the stream's pending state). A crash before the commit repeats the page (its records dedup by id); a crash
after it resumes from the next page. A run holds the stream's lease, so replicas (and a CLI pull beside the
sidecar) never pull one stream twice at once; each page commits only while the lease is still this run's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tanpuhui.sdk import Adapter, ConfigError, PullStream, StreamContext, TanpuhuiError, redact

from ..audit import AuditEvent
from ..leasing import HeldLease, hold_lease
from ..pausing import PAUSED
from ..pipeline import PageResult, Pipeline, ProcessedPage
from ..runtime import BoundStream, Runtime
from ..splits import check_splits, split_bases
from ..store.base import Checkpoint, CommitResult, PageWrite, RunCount, RunLog, Store
from ..store.leases import LeaseLost
from .paging import CursorsSeen, ahead, check_loop, page_details

__all__ = ["PageGroup", "Progress", "PullDriver", "PullSummary", "pull_stream_names"]

log = logging.getLogger("tanpuhui.pull")

Progress = Callable[[PageResult], None]
_LEASE_POLL = 1.0
"""Seconds between tries for a lease another process holds, while waiting for it."""


@dataclass
class PullSummary:
    """Totals of a pull run of one stream."""

    adapter: str
    stream: str
    pages: int = 0
    pulled: int = 0
    valid: int = 0
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    held: int = 0
    quarantined: int = 0
    quarantine_repeats: int = 0
    """Items quarantined before whose entries counted a repeat (no new entry)."""
    seconds: float = 0.0
    error: str | None = None
    leased_elsewhere: bool = False
    """Skipped: another replica holds the stream's lease (it is pulling the stream now), or it is paused."""
    paused: bool = False
    """Skipped: an operator paused the stream (:mod:`tanpuhui.hub.pausing`); ``leased_elsewhere`` is set too."""
    kg_by_scenario: Counter[str] = field(default_factory=Counter)
    records_by_scenario: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    """Top-level fields the partner sent that the stream's schema does not name -> items carrying them."""
    plausibility: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(rule, action) -> records a plausibility rule fired on."""

    def add(self, page: PageResult) -> None:
        self.pages += 1
        self.pulled += page.items
        self.valid += page.valid_items
        self.records += page.records
        self.inserted += page.inserted
        self.duplicates += page.duplicates
        self.held += page.held
        self.quarantined += page.quarantined
        self.quarantine_repeats += page.quarantine_repeats
        self.kg_by_scenario.update(page.kg_by_scenario)
        self.records_by_scenario.update(page.inserted_by_scenario)
        self.drift.update(page.drift)
        self.plausibility.update(page.plausibility)


class PullDriver:
    """Runs pull streams through the pipeline (see the module docstring)."""

    def __init__(self, runtime: Runtime, pipeline: Pipeline) -> None:
        self.runtime = runtime
        self.pipeline = pipeline
        self.on_commit: Callable[[PageWrite, CommitResult], None] | None = None
        """Called (in the committing thread) with each page once its transaction has committed: ``tanpuhui run``
        hands the rows to its forwarder (:class:`tanpuhui.hub.feed.CommittedFeed`)."""

    async def pull(
        self,
        adapter_name: str,
        stream_name: str | None = None,
        *,
        progress: Progress | None = None,
        max_pages: int | None = None,
        wait: float = 0.0,
    ) -> list[PullSummary]:
        """Pull one stream (or every pull stream of the adapter) from its saved cursor to the end.

        ``wait``: seconds to wait for a stream whose lease another process holds (a pull that crashed holds it
        until ``[hub] lease_ttl`` runs out) before it is reported ``leased_elsewhere``; 0 skips it at once.
        """
        names = pull_stream_names(self.runtime.adapter(adapter_name), stream_name)
        await self.check_splits(adapter_name, names)
        return [await self._pull_stream(adapter_name, name, progress, max_pages, wait) for name in names]

    async def check_splits(self, adapter_name: str, names: Sequence[str] | None = None) -> None:
        """Refuse (:class:`~tanpuhui.hub.splits.SplitChanged`, nothing pulled) when a stream of ``names`` (all the
        adapter's pull streams when None) is of a stream whose split changed without being acknowledged."""
        runtime = self.runtime
        adapter = runtime.adapter(adapter_name)
        if names is None:
            names = pull_stream_names(adapter)
        if split_bases(adapter, names):  # the others have one split: no query
            await asyncio.to_thread(check_splits, runtime.store, adapter, names, runtime.config.source)

    def commit_page(
        self,
        bound: BoundStream,
        ctx: StreamContext,
        items: Sequence[Any],
        cursor: Any,
        *,
        final: bool = False,
        lease_owner: str | None = None,
        run_id: int | None = None,
    ) -> PageResult:
        """Run one page of raw items through the pipeline and commit it with the cursor, atomically.

        ``lease_owner``: commit only while that owner holds the stream's lease (else :class:`LeaseLost`).
        ``run_id``: the run-history row whose counters the page's commit adds to (in the same transaction)."""
        group = PageGroup(bound, ctx, lease_owner, run_id)
        group.add(self.pipeline.process(bound, ctx, items, final=final), items, cursor, final)
        (result,) = self.commit(group)
        return result

    def add_page(self, group: PageGroup, items: Sequence[Any], cursor: Any) -> list[PageResult]:
        """Process a page of ``group``'s stream into the group, and commit the group once it holds
        ``[hub] commit_records`` records or its first page waited ``commit_interval`` seconds: the results of the
        pages committed (none while the group fills). A pull ends with :meth:`commit` of what is left."""
        try:
            processed = self.pipeline.process(group.bound, group.ctx, items)
        except BaseException:
            group.unsound = True  # the state may hold part of this page: the pending pages are not committed
            raise
        group.add(processed, items, cursor, False)
        settings = self.runtime.config.hub
        if group.records >= settings.commit_records or time.monotonic() - group.since >= settings.commit_interval:
            return self.commit(group)
        return []

    def commit(self, group: PageGroup) -> list[PageResult]:
        """Commit the processed pages of ``group`` in one transaction, the checkpoint (cursor and state) with the
        last; the results of its pages, in order. The group is empty afterwards."""
        pages, group.pages = group.pages, []
        if not pages:
            return []
        writes: list[PageWrite] = []
        last = len(pages) - 1
        for i, (processed, items, cursor, final) in enumerate(pages):
            audit = AuditEvent("page.commit", group.bound.label, page_details(items, cursor))
            checkpoint = Checkpoint(cursor, group.ctx.state) if i == last else None
            write = processed.write(checkpoint, audit, lease_owner=group.lease_owner)
            if group.run_id is not None:
                write = dataclasses.replace(write, run=RunCount(group.run_id, len(items), 0 if final else 1))
            writes.append(write)
        committed = self.runtime.store.commit_pages(writes)
        results: list[PageResult] = []
        for (processed, _, _, _), write, result in zip(pages, writes, committed, strict=True):
            assert result is not None  # only a page with a webhook receipt can be skipped
            if self.on_commit is not None:
                self.on_commit(write, result)
            results.append(processed.committed(result))
        return results

    async def _pull_stream(
        self, adapter_name: str, stream_name: str, progress: Progress | None, max_pages: int | None, wait: float
    ) -> PullSummary:
        bound = self.runtime.stream(adapter_name, stream_name)
        if not isinstance(bound.stream, PullStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a push stream; partners send it to the sidecar")
        summary = PullSummary(adapter_name, stream_name)
        started = time.perf_counter()
        deadline = time.monotonic() + wait
        runtime = self.runtime
        ttl = runtime.config.hub.lease_ttl
        while True:
            async with hold_lease(runtime.store, adapter_name, stream_name, runtime.replica_id, ttl) as lease:
                if lease is not None:
                    pull = functools.partial(self._pull_leased, bound, summary, lease, progress, max_pages)
                    await self._run_recorded(summary, lease.owner, started, pull)
                    break
            if await asyncio.to_thread(_paused, runtime.store, adapter_name, stream_name):
                summary.leased_elsewhere = summary.paused = True  # waiting would not help: it stays paused
                log.info("pull %s:%s skipped: an operator paused it", adapter_name, stream_name)
                break
            left = deadline - time.monotonic()
            if left <= 0:
                summary.leased_elsewhere = True
                log.info("pull %s:%s skipped: another process holds its lease", adapter_name, stream_name)
                break
            await asyncio.sleep(min(left, _LEASE_POLL, ttl / 4))
        summary.seconds = time.perf_counter() - started
        return summary

    async def _run_recorded(
        self, summary: PullSummary, owner: str, started: float, pull: Callable[[int | None], Awaitable[None]]
    ) -> None:
        """One run under the lease (``pull``, given the id of its run-history row or None), kept in the store's run
        history when it keeps one (the CLI's and the scheduler's runs alike): its row is opened here, each page adds
        its counts in its own commit."""
        store = self.runtime.store
        if not isinstance(store, RunLog):
            await pull(None)
            return
        run_id = await asyncio.to_thread(store.run_begin, summary.adapter, summary.stream, owner)
        outcome = "stopped"  # unless the run ends by itself: a shutdown (or a crash in the adapter) ended it
        try:
            await pull(run_id)
            outcome = "error" if summary.error else "ok"
        finally:
            seconds = time.perf_counter() - started
            try:
                await asyncio.to_thread(store.run_end, run_id, outcome, summary.error, seconds)
            except Exception:  # the run's pages are committed; a history row left "running" is marked later
                log.warning("pull %s:%s: could not close run %d", summary.adapter, summary.stream, run_id)

    async def _pull_leased(
        self,
        bound: BoundStream,
        summary: PullSummary,
        lease: HeldLease,
        progress: Progress | None,
        max_pages: int | None,
        run_id: int | None,
    ) -> None:
        """Pull from the committed cursor (read once the lease is ours), each page committed under the lease."""
        adapter_name, stream_name = summary.adapter, summary.stream
        stream = bound.stream
        assert isinstance(stream, PullStream)
        store = self.runtime.store
        checkpoint = store.load_checkpoint(adapter_name, stream_name)
        ctx = bound.context(dict(checkpoint.state))
        cursor = checkpoint.cursor
        seen = CursorsSeen(cursor)
        pages = stream.pages(ctx, cursor)
        if stream.prefetch:
            pages = ahead(pages, max_pages)
        group = PageGroup(bound, ctx, lease.owner, run_id)
        process = functools.partial(self.add_page, group)

        def report(results: list[PageResult]) -> None:
            for result in results:
                summary.add(result)
                if progress:
                    progress(result)

        try:
            async for page in pages:
                if lease.lost:
                    raise LeaseLost(adapter_name, stream_name, lease.owner)
                check_loop(adapter_name, stream_name, seen, cursor, summary.pages + len(group.pages))
                if stream.prefetch:  # off the event loop: the next page's request runs meanwhile
                    report(await asyncio.to_thread(process, page.items, page.cursor))
                else:
                    report(process(page.items, page.cursor))
                cursor = page.cursor
                if max_pages is not None and summary.pages + len(group.pages) >= max_pages:
                    break
            else:
                group.add(self.pipeline.process(bound, ctx, [], final=True), [], cursor, True)
                *results, last = self.commit(group)
                report(results)
                if last.records or last.quarantined or last.quarantine_repeats:
                    summary.add(last)
                    summary.pages -= 1
            report(self.commit(group))  # what a break left (max_pages)
        except LeaseLost as exc:
            # Another replica took the stream over (this one stalled past the lease): it carries on from the
            # last page committed here; nothing of the refused page was written.
            summary.error = str(exc)
            log.warning("pull %s:%s stopped: %s", adapter_name, stream_name, summary.error)
        except TanpuhuiError as exc:
            summary.error = redact(str(exc))
            pending = len(group.pages)
            if pending and not group.unsound:  # the pages processed before the partner failed are kept
                try:
                    report(self.commit(group))
                except TanpuhuiError as lost:  # e.g. the lease went meanwhile: the next run fetches them again
                    log.warning(
                        "pull %s:%s: %d processed page(s) not committed: %s",
                        adapter_name,
                        stream_name,
                        pending,
                        redact(str(lost)),
                    )
            store.record_stream_error(adapter_name, stream_name, summary.error)
            log.error("pull %s:%s stopped: %s", adapter_name, stream_name, summary.error)
        finally:
            aclose = getattr(pages, "aclose", None)
            if aclose is not None:
                await aclose()  # a prefetch in flight is cancelled; the stream's generator is closed
        if summary.drift:
            fields = ", ".join(f"{name} ({count} items)" for name, count in sorted(summary.drift.items()))
            log.warning(
                "pull %s:%s: the partner sends fields its schema does not name (accepted, kept in the drift "
                "report): %s",
                adapter_name,
                stream_name,
                redact(fields),
            )


class PageGroup:
    """Pages of one stream processed and not committed yet (:meth:`PullDriver.commit` commits them together).

    Committing several pages in one transaction writes each index page they share once: the record-id, record-head
    and day-count indexes take keys spread over their whole range, so a commit dirties most of their leaves whether
    it holds one page or four (``[hub] commit_records``, ``commit_interval``; docs/performance.md)."""

    __slots__ = ("bound", "ctx", "lease_owner", "pages", "records", "run_id", "since", "unsound")

    def __init__(self, bound: BoundStream, ctx: StreamContext, lease_owner: str | None, run_id: int | None) -> None:
        self.bound = bound
        self.ctx = ctx
        self.lease_owner = lease_owner
        self.run_id = run_id
        self.pages: list[tuple[ProcessedPage, Sequence[Any], Any, bool]] = []
        self.records = 0
        self.since = 0.0
        self.unsound = False
        """Processing a page failed midway: ``ctx.state`` may hold part of it, so no checkpoint is taken from it."""

    def add(self, processed: ProcessedPage, items: Sequence[Any], cursor: Any, final: bool) -> None:
        if not self.pages:
            self.records = 0
            self.since = time.monotonic()
        self.pages.append((processed, items, cursor, final))
        self.records += len(processed.records)


def pull_stream_names(adapter: Adapter, stream_name: str | None = None) -> list[str]:
    """The adapter's pull streams to pull: all of them, or ``stream_name`` (a partitioned stream's name: all its
    partitions). Another name is left for :meth:`Runtime.stream` to refuse, naming the streams there are."""
    pulls = [s for s in adapter.streams() if isinstance(s, PullStream)]
    if stream_name is None:
        return [s.name for s in pulls]
    return [s.name for s in pulls if s.partition is not None and s.base_name == stream_name] or [stream_name]


def _paused(store: Store, adapter: str, stream: str) -> bool:
    return any(lease.owner == PAUSED and (lease.adapter, lease.stream) == (adapter, stream) for lease in store.leases())
