"""Idle PostgreSQL connections for :class:`~.postgres.PostgresStore`: one per concurrent caller (the forwarder
calls the store from worker threads), a broken one dropped, never handed out again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus

__all__ = ["Pool"]

_PING_AFTER = 1.0
"""An idle connection is checked with ``SELECT 1`` before reuse when it has been idle longer than this (seconds)."""


class Pool:
    """Connections in autocommit mode; ``application_name`` and ``connect_timeout`` defaulted when the DSN has none."""

    def __init__(self, dsn: str, *, max_idle: int, synchronous_commit: bool) -> None:
        defaults: dict[str, Any] = {}
        params = conninfo.conninfo_to_dict(dsn)
        if "application_name" not in params:
            defaults["application_name"] = "tanpuhui"
        if "connect_timeout" not in params:
            defaults["connect_timeout"] = 10
        self._dsn = conninfo.make_conninfo(dsn, **defaults)
        self._max_idle = max_idle
        self._synchronous_commit = synchronous_commit
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, autocommit=True)
        # Whatever the server's default: a statement after a lock must see what the lock's last holder committed
        # (the outbox safe mark, the audit head).
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        if not self._synchronous_commit:
            conn.execute("SET synchronous_commit = off")
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn: psycopg.Connection[Any] | None = None
        while conn is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the store is closed")
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                conn = self._connect()
            elif time.monotonic() - since > _PING_AFTER and not self._alive(conn):
                conn = None  # the server dropped it while idle (a restart, a failover, idle timeouts)
        try:
            yield conn
        finally:
            reusable = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
            with self._lock:
                if reusable and not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append((conn, time.monotonic()))
                    conn = None
            if conn is not None:
                conn.close()

    @staticmethod
    def _alive(conn: psycopg.Connection[Any]) -> bool:
        try:
            conn.execute("SELECT 1")
        except psycopg.OperationalError:
            conn.close()
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
