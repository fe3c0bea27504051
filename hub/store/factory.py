"""Open the store that ``[hub] store`` names: a SQLite file (the default) or a PostgreSQL database.

    [hub]
    store = "var/hub.db"                              # SQLite (or "sqlite:///var/hub.db")
    store = { env = "TANPUHUI_STORE_URL" }            # postgresql://tanpuhui:...@db.internal/tanpuhui

PostgreSQL is imported only when configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .migrations import SCHEMA_VERSION, MigrationReport

if TYPE_CHECKING:
    from tanpuhui.hub.config import HubConfig

    from .base import Store

__all__ = ["SchemaStatus", "migrate_store", "open_store", "schema_status", "store_display_name"]


def open_store(config: HubConfig, *, migrate: bool = False) -> Store:
    """The configured store, its schema checked (or first brought up to date with ``migrate``)."""
    dsn = config.store_dsn()
    if dsn is not None:
        from .postgres import PostgresStore

        return PostgresStore(dsn, synchronous=config.hub.synchronous, migrate=migrate)
    from .sqlite import SQLiteStore

    return SQLiteStore(config.store_path(), synchronous=config.hub.synchronous, migrate=migrate)


def migrate_store(config: HubConfig) -> MigrationReport:
    """Apply the pending schema migrations of the configured store (``tanpuhui migrate``)."""
    dsn = config.store_dsn()
    if dsn is not None:
        from .postgres import PostgresStore

        pg = PostgresStore(dsn, synchronous=config.hub.synchronous, migrate=True)
        try:
            return pg.last_migration
        finally:
            pg.close()
    from .sqlite import SQLiteStore

    lite = SQLiteStore(config.store_path(), synchronous=config.hub.synchronous, migrate=True)
    try:
        return lite.last_migration
    finally:
        lite.close()


def store_display_name(config: HubConfig) -> str:
    """The store for messages: the SQLite path, or the PostgreSQL URL without its password."""
    dsn = config.store_dsn()
    if dsn is not None:
        from .postgres import display_dsn

        return display_dsn(dsn)
    return config.store_path()


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the configured store stands: its schema version (None: no SQLite file yet) and the code's."""

    store: str
    found: int | None
    expected: int = SCHEMA_VERSION

    @property
    def pending(self) -> bool:
        return self.found is not None and self.found < self.expected

    @property
    def newer(self) -> bool:
        return self.found is not None and self.found > self.expected


def schema_status(config: HubConfig) -> SchemaStatus:
    """Read the store's schema version without changing anything (``tanpuhui migrate --check``)."""
    dsn = config.store_dsn()
    if dsn is not None:
        import psycopg

        from .migrations.postgres import applied_version as pg_version
        from .postgres import display_dsn

        with psycopg.connect(dsn, connect_timeout=10) as pg:
            return SchemaStatus(display_dsn(dsn), pg_version(pg))
    import sqlite3

    from .migrations.sqlite import applied_version as sqlite_version

    path = config.store_path()
    if path == ":memory:" or not Path(path).exists():
        return SchemaStatus(path, None)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return SchemaStatus(path, sqlite_version(conn))
    finally:
        conn.close()
