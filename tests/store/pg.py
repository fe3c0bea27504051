"""A PostgreSQL to test against: the server on loopback, one throwaway database per test session.

``TANPUHUI_TEST_PG`` is the admin connection (default ``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth
as on the CI machine). The session creates ``tanpuhui_test_<random>`` and drops it at the end, so parallel runs never
share state; each test gets its own schema in it (``?options=-csearch_path=...``).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import conninfo

from tanpuhui.hub.store.base import PageWrite
from tanpuhui.hub.store.postgres import PostgresStore

__all__ = ["ADMIN_DSN", "SlowCommitter", "database_url", "schema_dsn", "temporary_database", "temporary_schema"]

ADMIN_DSN = os.environ.get("TANPUHUI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_dbname(dsn: str, dbname: str) -> str:
    return conninfo.make_conninfo(dsn, dbname=dbname)


@contextmanager
def _created(dsn: str, create: str, drop: str) -> Iterator[None]:
    """Runs the statement ``create`` on ``dsn``, and ``drop`` (on a connection of its own) when the block ends,
    however it ends."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(drop)


@contextmanager
def temporary_database() -> Iterator[str]:
    """A fresh database (its connection string), dropped afterwards even if sessions are left connected."""
    name = f"tanpuhui_test_{secrets.token_hex(6)}"
    try:
        psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"the tests need PostgreSQL at {ADMIN_DSN} (set TANPUHUI_TEST_PG); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`: {exc}"
        ) from exc
    with _created(ADMIN_DSN, f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'):
        yield _with_dbname(ADMIN_DSN, name)


def database_url(database_dsn: str) -> str:
    """The database as a ``postgresql://`` URL (as a hub.toml ``store`` would hold it)."""
    params = conninfo.conninfo_to_dict(database_dsn)
    user = params.get("user") or ""
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or 5432
    return f"postgresql://{quote(str(user))}@{host}:{port}/{params['dbname']}"


def schema_dsn(database_dsn: str, schema: str) -> str:
    """A URL for the database with ``search_path`` set to ``schema`` (as a hub.toml ``store`` would hold it)."""
    return f"{database_url(database_dsn)}?options=-csearch_path%3D{schema}"


@contextmanager
def temporary_schema(database_dsn: str) -> Iterator[str]:
    """A new empty schema in the database; yields a URL whose connections use it."""
    schema = f"t_{secrets.token_hex(5)}"
    with _created(database_dsn, f'CREATE SCHEMA "{schema}"', f'DROP SCHEMA "{schema}" CASCADE'):
        yield schema_dsn(database_dsn, schema)


class SlowCommitter(PostgresStore):
    """Holds its transaction open for ``delay`` seconds after writing the page (a slow disk, a busy server): its
    outbox rows have their ``seq`` values, not yet committed, once ``written`` is set."""

    delay = 0.6

    def __init__(self, dsn: str, **options: Any) -> None:
        self.written = threading.Event()
        super().__init__(dsn, **options)

    def _write_page(self, cur: Any, page: PageWrite, *args: Any) -> Any:
        result = super()._write_page(cur, page, *args)
        self.written.set()
        time.sleep(self.delay)
        return result
