"""The store suite runs every test against both stores: SQLite (a file per test) and PostgreSQL (a schema per test
in a database made for the session; see :mod:`store.pg`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.hub.store.sqlite import SQLiteStore

from .pg import temporary_database, temporary_schema

Opener = Callable[..., Any]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with temporary_database() as dsn:
        yield dsn


@pytest.fixture
def pg_dsn(pg_database: str) -> Iterator[str]:
    with temporary_schema(pg_database) as dsn:
        yield dsn


class Backend:
    """Opens stores on one shared state: each :meth:`open` is another replica (own connections)."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        self.target = target
        self.opened: list[Any] = []

    def open(self, **options: Any) -> Any:
        if self.kind == "sqlite":
            store: Any = SQLiteStore(self.target, **options)
        else:
            options.setdefault("migrate", True)
            store = PostgresStore(self.target, **options)
        self.opened.append(store)
        return store

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        """Plain SQL on the store's database, as someone with access to it would run (no placeholders)."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.target)
            try:
                with conn:
                    return conn.execute(statement).fetchall()
            finally:
                conn.close()
        with psycopg.connect(self.target, autocommit=True) as pg:
            cur = pg.execute(statement)
            return cur.fetchall() if cur.description else []

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "var" / "hub.db"))
    else:
        b = Backend("postgres", request.getfixturevalue("pg_dsn"))
    yield b
    b.close_all()


@pytest.fixture
def store(backend: Backend) -> Any:
    return backend.open()
