"""Versioned schema migrations for both stores, kept as Python strings (no data files to ship).

Each store has an ordered list of :class:`Migration` (``sqlite.MIGRATIONS``, ``postgres.MIGRATIONS``) numbered
1, 2, ... with the same numbers meaning the same change in both. A store records what it applied in a
``schema_migrations`` table (version, name, applied_at). At start-up a store compares its newest applied
version with :data:`SCHEMA_VERSION`:

- equal: it opens;
- older: :class:`SchemaTooOld`, telling to run ``tanpuhui migrate --config hub.toml`` (a brand-new SQLite file is
  the exception: it is created at the current version, the embedded default needs no setup step);
- newer (written by a later tanpuhui): :class:`SchemaTooNew`; upgrade tanpuhui instead.

``tanpuhui migrate`` applies the missing migrations in one transaction (PostgreSQL: under an advisory lock, so
replicas starting together cannot race) and prints what it did.

Adding a migration: append what it does to :data:`STEPS` and its statements to BOTH stores' ``numbered(...)``,
bump :data:`SCHEMA_VERSION`, and add a test that a store at version N is refused until migrated and keeps its data.
"""

from __future__ import annotations

from dataclasses import dataclass

from tanpuhui.sdk import TanpuhuiError

__all__ = [
    "SCHEMA_VERSION",
    "STEPS",
    "Migration",
    "MigrationReport",
    "SchemaTooNew",
    "SchemaTooOld",
    "SchemaVersionError",
    "numbered",
    "pending",
]

SCHEMA_VERSION = 9
"""The schema version this code reads and writes (the highest migration number)."""


STEPS = (
    "baseline: outbox, claims, checkpoints, quarantine, delivery state, webhook receipts",
    "leases: one replica pulls a stream / drains a sink at a time",
    "audit log (hash-chained) and schema drift report",
    "quarantine dedup: one entry per item digest, with repeats and last_seen",
    "run history: one row per pull run with its counters, duration, outcome and error",
    "shared sink state: each sink's state, recent failures and last delivery",
    "corrections, voids and overlap rules: outbox kind/supersedes, record heads, overlap keys",
    "plausibility daily counts in the store, not in the stream state",
    "record heads and overlap keys indexed by record id (voids and corrections find them without a scan)",
)
"""What migration 1, 2, ... does: the same in both stores (each has its own statements for it)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def numbered(*statements: tuple[str, ...]) -> tuple[Migration, ...]:
    """One store's migrations: its statements for each of :data:`STEPS`, in order, numbered from 1."""
    steps = zip(STEPS, statements, strict=True)
    return tuple(Migration(version, name, sql) for version, (name, sql) in enumerate(steps, start=1))


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What :func:`migrate` found and did: versions before and after, and the migrations applied."""

    store: str
    before: int
    after: int
    applied: tuple[Migration, ...]


class SchemaVersionError(TanpuhuiError, RuntimeError):
    """The store's schema version is not the one this code needs."""

    def __init__(self, store: str, found: int, expected: int, message: str) -> None:
        super().__init__(message)
        self.store = store
        self.found = found
        self.expected = expected


class SchemaTooOld(SchemaVersionError):
    def __init__(self, store: str, found: int, expected: int = SCHEMA_VERSION) -> None:
        what = "has no tanpuhui schema yet" if found == 0 else f"schema version {found} is older than this tanpuhui"
        super().__init__(
            store,
            found,
            expected,
            f"{store}: store {what} (needs {expected}); run `tanpuhui migrate --config hub.toml` first",
        )


class SchemaTooNew(SchemaVersionError):
    def __init__(self, store: str, found: int, expected: int = SCHEMA_VERSION) -> None:
        super().__init__(
            store,
            found,
            expected,
            f"{store}: store schema version {found} is newer than this tanpuhui ({expected}); "
            "upgrade tanpuhui (a store is never migrated down)",
        )


def pending(migrations: tuple[Migration, ...], current: int) -> tuple[Migration, ...]:
    """The migrations after ``current``, checked to be numbered 1..SCHEMA_VERSION without gaps."""
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, SCHEMA_VERSION + 1)):
        raise AssertionError(f"migrations must be numbered 1..{SCHEMA_VERSION} in order, got {numbers}")
    return tuple(m for m in migrations if m.version > current)
