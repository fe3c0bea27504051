"""The SQL of a stream's splits, portable between the dialects: the checkpoints of every split of a partitionable
pull stream (the unsplit stream and its parts ``NAME_<i>of<N>``), and forgetting those of a split no longer read
(see :mod:`tanpuhui.hub.splits`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

import orjson

from tanpuhui.sdk import Partition

from .base import StreamStatus
from .times import time_text

__all__ = ["SplitSql"]

T = TypeVar("T")


class SplitSql(ABC, Generic[T]):
    """The split statements of a :class:`~.dialect.Dialect` (which provides ``run`` and ``run_many``)."""

    @abstractmethod
    def run(self, tx: T, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute a portable statement (``?`` placeholders)."""

    @abstractmethod
    def run_many(self, tx: T, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Execute a portable statement once per row; the rows it touched."""

    def split_checkpoints(self, tx: T, adapter: str, base: str) -> list[StreamStatus]:
        """The checkpoint rows of ``base`` and of its parts (any split), by stream name."""
        rows = self.run(
            tx,
            "SELECT adapter, stream, cursor, last_success, last_error, last_error_at FROM checkpoints"
            " WHERE adapter=? ORDER BY stream",  # an adapter has a few streams: no name pattern in SQL
            (adapter,),
        ).fetchall()
        return [
            StreamStatus(a, s, orjson.loads(c) if c else None, time_text(ok), err, time_text(err_at))
            for a, s, c, ok, err, err_at in rows
            if Partition.base_of(s) == base
        ]

    def delete_checkpoints(self, tx: T, adapter: str, streams: Sequence[str]) -> int:
        """Remove the checkpoint rows (cursor, state, last success and error) and the lease rows of ``streams``; how
        many checkpoint rows there were."""
        keys = [(adapter, stream) for stream in streams]
        self.run_many(tx, "DELETE FROM leases WHERE adapter=? AND stream=?", keys)
        return self.run_many(tx, "DELETE FROM checkpoints WHERE adapter=? AND stream=?", keys)
