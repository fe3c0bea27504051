"""Committed pages handed to the forwarder of the same process, without reading them back (``tanpuhui run``).

A pull commits a page (outbox rows, quarantine, checkpoint: one transaction); the rows it inserted, with the
``seq`` values the store gave them (:attr:`CommitResult.seq_runs`), are then added here. The forwarder reads
through :meth:`CommittedFeed.read_outbox`, which answers from memory only when that is exactly what the store
would answer: the rows from ``after_seq + 1`` on, with consecutive ``seq`` values, all committed by this process
(so no other row can lie between them). Anything else (rows another process committed, a gap in the sequence,
rows already dropped from the bounded buffer, a page whose insert did not tell its ``seq`` values) is read from
the store as before. The outbox stays the durable source of truth and each sink's position still moves only
after its batch was delivered (:meth:`Store.advance_sink`): a crash loses only this memory, and the next run
reads the rows back from the store.

The ``seq`` of each row comes from the stores' contract that a page's outbox rows take their ``seq`` values in page
order (:meth:`Dialect.insert_outbox`); ``tests/store/test_contract_feed.py`` pins it on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain

from tanpuhui.sdk import OutboxRow

from .store.base import CommitResult, PageWrite, Store

__all__ = ["CommittedFeed"]


class CommittedFeed:
    """The last ``max_rows`` outbox rows committed by this process, by ``seq`` (see the module docstring).

    :meth:`add` and :meth:`read_outbox` may be called from any thread (the pull commits pages in a worker thread,
    the forwarder reads in one); the followers are awaited on the event loop the feed was created on.
    """

    def __init__(self, store: Store, *, max_rows: int = 20_000) -> None:
        self.store = store
        self.max_rows = max_rows
        self.hits = 0
        """Rows handed to the forwarder from memory."""
        self.misses = 0
        """Reads answered by the store (rows not in memory, or not provably contiguous)."""
        self._rows: dict[int, OutboxRow] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._events: list[asyncio.Event] = []
        self._closed = False

    def add(self, page: PageWrite, result: CommitResult | None) -> None:
        """The rows ``page`` inserted, once its transaction has committed (``result`` is what the store said)."""
        if result is None or not result.inserted or not result.seq_runs:
            return
        records = page.records
        if result.inserted_ids is not None:
            ids = result.inserted_ids
            records = [r for r in records if r.record_id in ids]
        seqs = chain.from_iterable(range(first, last + 1) for first, last in result.seq_runs)
        rows = [
            OutboxRow(seq, r.record_id, page.adapter, page.stream, r.scenario, r.body)
            for seq, r in zip(seqs, records, strict=False)
        ]
        if len(rows) != len(records) or len(records) != result.inserted:
            return  # not what the store says it inserted: leave it to a read
        with self._lock:
            table = self._rows
            for row in rows:
                table[row.seq] = row
            extra = len(table) - self.max_rows
            if extra > 0:
                for seq in list(table)[:extra]:  # oldest first: the dict keeps commit order
                    del table[seq]
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in self._events:
            event.set()

    def read_outbox(self, after_seq: int, limit: int) -> list[OutboxRow]:
        """What :meth:`Store.read_outbox` answers, from memory when the rows are known (see the module docstring)."""
        out: list[OutboxRow] = []
        with self._lock:
            table = self._rows
            seq = after_seq + 1
            row = table.get(seq)
            while row is not None and len(out) < limit:
                out.append(row)
                seq += 1
                row = table.get(seq)
            for done in [s for s in table if s <= after_seq]:  # delivered (or read past): not needed again
                del table[done]
        if out:
            self.hits += len(out)
            return out
        self.misses += 1
        return self.store.read_outbox(after_seq, limit)

    def follower(self) -> Callable[[], Awaitable[bool]]:
        """A ``follow`` for one drain (:meth:`Forwarder.drain`): each call returns True once rows were added since
        the last call (or the feed was closed since), False when the feed is closed and nothing came since."""
        event = asyncio.Event()
        self._events.append(event)

        async def follow() -> bool:
            while True:
                if event.is_set():
                    event.clear()
                    return True
                if self._closed:
                    return False
                await event.wait()

        return follow

    def close(self) -> None:
        """No more pages will be added (the pull ended): each follower reads once more, then ends."""
        self._closed = True
        self._loop.call_soon_threadsafe(self._wake)

    def pages(self) -> Sequence[int]:
        """The ``seq`` values held (for tests)."""
        with self._lock:
            return list(self._rows)
