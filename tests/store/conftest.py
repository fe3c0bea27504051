"""The store suite runs every test against both stores: SQLite (a file per test) and PostgreSQL (a schema per test
in a database made for the session; see :mod:`store.pg`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
