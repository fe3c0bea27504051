"""The SQLite schema as migrations (see the package docstring). Statements run in one ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import sqlite3

from . import numbered

__all__ = ["MIGRATIONS", "applied_version"]

_BASELINE = (
    # IF NOT EXISTS: a store created before versioned migrations (``meta.schema_version = 1``) adopts this.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        scenario TEXT NOT NULL,
        reduction_kgco2e REAL NOT NULL,
        body BLOB NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_fingerprint ON outbox (fingerprint)",
    """CREATE TABLE IF NOT EXISTS held_claims (
        id INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        claimed_by TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        cursor TEXT,
        state TEXT NOT NULL DEFAULT '{}',
        last_success TEXT,
        last_error TEXT,
        last_error_at TEXT,
        PRIMARY KEY (adapter, stream)
    )""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        id INTEGER PRIMARY KEY,
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        stage TEXT NOT NULL,
        partner_record_id TEXT NOT NULL,
        problems TEXT NOT NULL,
        raw BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        created_at TEXT NOT NULL,
        resolved_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS quarantine_status ON quarantine (status, adapter)",
    "CREATE TABLE IF NOT EXISTS sink_positions (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record_id TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (sink, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS webhook_receipts (
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (adapter, stream, webhook_id)
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_receipts_created ON webhook_receipts (created_at)",
)

_LEASES = (
    # expires_at in unix seconds: one host's clock (several processes on one file share it).
    """CREATE TABLE leases (
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        owner TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (adapter, stream)
    )""",
)

_AUDIT = (
    # The tamper-evident audit log (tanpuhui.hub.audit): ``at`` and ``details`` are the exact texts hashed.
    """CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    # Top-level fields partners send that their schema does not name (allowed, reported): one row per field.
    """CREATE TABLE schema_drift (
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        field TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        items INTEGER NOT NULL,
        example TEXT NOT NULL,
        PRIMARY KEY (adapter, stream, field)
    )""",
)

_QUARANTINE_DEDUP = (
    # An entry per distinct item: a repeat (the same digest) bumps repeats and last_seen. Entries from before this
    # have no digest (NULL) and are never matched; a NULL digest is outside the unique index.
    "ALTER TABLE quarantine ADD COLUMN digest TEXT",
    "ALTER TABLE quarantine ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE quarantine ADD COLUMN last_seen TEXT NOT NULL DEFAULT ''",
    "UPDATE quarantine SET last_seen = created_at",
    "CREATE UNIQUE INDEX quarantine_digest ON quarantine (adapter, stream, digest) WHERE digest IS NOT NULL",
)

_RUNS = (
    # Run history: one row per pull run, its counters added in each page's commit (see store.base.RunRecord).
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        owner TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        seconds REAL,
        outcome TEXT NOT NULL,
        pages INTEGER NOT NULL DEFAULT 0,
        items INTEGER NOT NULL DEFAULT 0,
        inserted INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        held INTEGER NOT NULL DEFAULT 0,
        quarantined INTEGER NOT NULL DEFAULT 0,
        quarantine_repeats INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    "CREATE INDEX runs_stream ON runs (adapter, stream, id)",
)

_SHARED_SINK_STATE = (
    # Each sink's delivery state (ok / retrying / stopped) as the replica draining it last saw it, and its recent
    # failures: every worker and replica reads them (the console, `tanpuhui status`, /readyz). When it last
    # delivered goes with its position. Receipts by stream and time: a push stream's freshness.
    "ALTER TABLE sink_positions ADD COLUMN delivered_at TEXT",
    """CREATE TABLE sink_states (
        sink TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_attempt_at TEXT,
        given_up INTEGER NOT NULL DEFAULT 0,
        recoveries INTEGER NOT NULL DEFAULT 0,
        owner TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE sink_errors (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        at TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL
    )""",
    "CREATE INDEX sink_errors_sink ON sink_errors (sink, id)",
    "CREATE INDEX webhook_receipts_stream ON webhook_receipts (adapter, stream, created_at)",
    "CREATE INDEX dead_letters_sink ON dead_letters (sink, id)",
)

_REVISIONS = (
    # Corrections and voids (tanpuhui.hub.store.revisions): what kind of event an outbox row is, the record it
    # supersedes, the current record of each partner item, and the keys of the no-double-credit overlap rules.
    "ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'created'",
    "ALTER TABLE outbox ADD COLUMN supersedes TEXT",
    """CREATE TABLE record_heads (
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        partner_record_id TEXT NOT NULL,
        record_id TEXT NOT NULL,
        raw_sha256 TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        PRIMARY KEY (adapter, stream, partner_record_id)
    )""",
    """CREATE TABLE overlap_keys (
        rule TEXT NOT NULL,
        match_key TEXT NOT NULL,
        role TEXT NOT NULL,
        record_id TEXT NOT NULL,
        amount REAL NOT NULL,
        PRIMARY KEY (rule, match_key, role, record_id)
    )""",
)

_PLAUSIBILITY_COUNTS = (
    # The daily counts of the max_per_day plausibility rules (tanpuhui.hub.plausibility), per stream: one row per
    # distinct record counted, with its place in the subject's day; written with the page's records.
    """CREATE TABLE plausibility_counts (
        adapter TEXT NOT NULL,
        stream TEXT NOT NULL,
        rule TEXT NOT NULL,
        day TEXT NOT NULL,
        subject TEXT NOT NULL,
        record_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (adapter, stream, rule, day, subject, record_id)
    ) WITHOUT ROWID""",
)

_BY_RECORD_ID = (
    # Voids and corrections find a record's head and overlap keys by its record id (tanpuhui.hub.store.revisions):
    # without these, each looked every head and key up. Record ids are time-ordered, so the index grows at its end.
    "CREATE INDEX record_heads_record_id ON record_heads (record_id)",
    "CREATE INDEX overlap_keys_record_id ON overlap_keys (record_id)",
)

MIGRATIONS = numbered(
    _BASELINE,
    _LEASES,
    _AUDIT,
    _QUARANTINE_DEDUP,
    _RUNS,
    _SHARED_SINK_STATE,
    _REVISIONS,
    _PLAUSIBILITY_COUNTS,
    _BY_RECORD_ID,
)


def applied_version(conn: sqlite3.Connection) -> int:
    """The store's schema version: the newest migration applied; 0 for an empty file.

    Also ``meta.schema_version`` (kept equal): a store made before versioned migrations has only that."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    version = 0
    if "schema_migrations" in tables:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        version = int(row[0])
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = max(version, int(row[0]) if row else 0)
    return version
