"""What the embedded SQLite store does with its file: WAL mode, 16 KiB pages, and refusing a newer schema.

Everything else a store must do (pages, dedup, cross-source claims, quarantine, delivery state, reopening) is in
tests/store/test_contract*.py, run against SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tanpuhui.hub.store.sqlite import SQLiteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "hub.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    yield s
    s.close()


def test_database_is_in_wal_mode(store: SQLiteStore, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_new_store_file_uses_16_kib_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "new.db").close()
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE t (x)")  # a file created with SQLite's default page size
    conn.close()
    SQLiteStore(old, migrate=True).close()
    sizes = {}
    for name in ("new.db", "old.db"):
        conn = sqlite3.connect(tmp_path / name)
        sizes[name] = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
    assert sizes == {"new.db": 16384, "old.db": 4096}


def test_store_written_by_a_newer_version_is_refused(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        SQLiteStore(db_path)
