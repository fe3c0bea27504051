"""The store fixtures (SQLite and PostgreSQL backends) are shared with the store suite."""

from store.conftest import backend, pg_database, pg_dsn, store

__all__ = ["backend", "pg_database", "pg_dsn", "store"]
