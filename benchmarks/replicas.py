"""Scale-out: records/s with 1, 2 and 3 hub replicas sharing one PostgreSQL, beside one hub on SQLite.

``python -m benchmarks.replicas [--quick] [--repeats N] [--tmp DIR]``; PostgreSQL from ``TANPUHUI_BENCH_PG``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``: a throwaway database is created there and dropped).

The work: ``shards`` pull streams (``transit_card:shard00`` ...), each ``pages`` pages of ~1000 transit-card
transactions (the benchmark feed, :mod:`benchmarks.feed`; a stream's name is part of the record id, so the
shards' records are all different). Each replica is its own process with its own :class:`Hub`; it goes over the
shards, takes a shard's lease (``acquire_lease``; busy or finished shards are skipped), and runs its pages through
the hub's pull path (:meth:`Hub.ingest`: raw validation, normalize, record validation, dedup, one transaction per
page with the cursor, under the lease). Timed from a common start until every shard is done; the figure is
committed records per second of wall time, the median of ``repeats`` runs. SQLite runs the same work in one
process (several processes on one SQLite file would only take turns at its single writer).

All replicas, the PostgreSQL server and the SQLite process share this machine's cores: with 2 cores, more replicas
than cores cannot add CPU, and what the figures show is how much the shared store costs and whether it serializes.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from .common import Row, Sizes, machine_line, make_hub, median, print_table
from .feed import TransitFeed

__all__ = ["run"]

ADMIN_DSN = os.environ.get("TANPUHUI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADAPTER = "transit_card"
LEASE_TTL = 60.0


def _shape(sizes: Sizes) -> tuple[int, int]:
    """(shards, pages per shard)."""
    return (3, 3) if sizes.quick else (6, 12)


def _worker(
    store: str,
    directory: str,
    shards: int,
    pages: int,
    barrier: Any,
    results: Any,
) -> None:
    """One replica: take free shards' leases and ingest their pages (see the module docstring)."""
    from tanpuhui.hub.store.leases import new_owner_id

    feed = TransitFeed()
    bodies = feed.pages(pages)
    hub = make_hub(Path(directory), store=store)
    owner = new_owner_id()
    rt: Any = hub.stream(ADAPTER, "transactions")  # the transit stream (use_network), renamed per shard below
    rt.stream.use_network(feed.network_doc)
    inserted = 0
    try:
        barrier.wait()
        started = time.perf_counter()
        cpu = time.process_time()
        for shard in range(shards):
            name = f"shard{shard:02d}"
            if not hub.store.acquire_lease(ADAPTER, name, owner, LEASE_TTL):
                continue
            try:
                checkpoint = hub.store.load_checkpoint(ADAPTER, name)
                done = int(checkpoint.cursor or 0)
                if done >= pages:
                    continue
                shard_rt = copy.copy(rt)
                shard_rt.stream = copy.copy(rt.stream)
                shard_rt.stream.name = name
                ctx = shard_rt.context(dict(checkpoint.state))
                for k in range(done, pages):
                    doc = orjson.loads(bodies[k])
                    result = hub.pulls.commit_page(shard_rt, ctx, doc["data"], k + 1, lease_owner=owner)
                    inserted += result.inserted
            finally:
                hub.store.release_lease(ADAPTER, name, owner)
        results.put((inserted, started, time.perf_counter(), time.process_time() - cpu))
    finally:
        hub.store.close()


def _migrate(store: str) -> None:
    from tanpuhui.hub.store.postgres import PostgresStore

    PostgresStore(store, migrate=True).close()


def _run_once(store: str, directory: Path, replicas: int, shards: int, pages: int) -> tuple[float, int, float]:
    """(records/s, records, hub CPU µs per record) for one run of ``replicas`` processes on ``store``."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(replicas)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(store, str(directory), shards, pages, barrier, results), daemon=True)
        for _ in range(replicas)
    ]
    for p in procs:
        p.start()
    outs = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a replica exited with {p.exitcode}")
    records = sum(o[0] for o in outs)
    wall = max(o[2] for o in outs) - min(o[1] for o in outs)
    return records / wall, records, sum(o[3] for o in outs) / records * 1e6


class _Database:
    """A throwaway PostgreSQL database per run."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"tanpuhui_bench_{secrets.token_hex(5)}"
        try:
            with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.OperationalError as exc:
            raise SystemExit(f"benchmarks.replicas needs PostgreSQL at {ADMIN_DSN} (TANPUHUI_BENCH_PG): {exc}") from exc
        from psycopg import conninfo

        self.dsn = conninfo.make_conninfo(ADMIN_DSN, dbname=self.name)
        _migrate(self.dsn)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _server_version() -> str:
    import psycopg

    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"
    except psycopg.OperationalError:
        return "unreachable"


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    shards, pages = _shape(sizes)
    sqlite_runs: list[float] = []
    pg_runs: dict[int, list[float]] = {1: [], 2: [], 3: []}
    cpu: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    records = 0
    for _ in range(sizes.repeats):
        with tempfile.TemporaryDirectory(prefix="tph-bench-replicas-", dir=tmp) as d:
            rate, records, us = _run_once(str(Path(d) / "hub.db"), Path(d), 1, shards, pages)
            sqlite_runs.append(rate)
            cpu["sqlite"].append(us)
            for n in pg_runs:
                db = _Database()
                try:
                    rate, got, us = _run_once(db.dsn, Path(d), n, shards, pages)
                finally:
                    db.drop()
                if got != records:
                    raise RuntimeError(f"{n} replicas committed {got} records, SQLite {records}")
                pg_runs[n].append(rate)
                if n == 1:
                    cpu["postgres"].append(us)
    sqlite_rate = median(sqlite_runs)
    note = (
        f"{shards} leased streams x {pages} pages = {records:,} records per run, median of {sizes.repeats}; "
        f"PostgreSQL {_server_version()} on this machine ({os.cpu_count()} CPUs shared by the replicas and the "
        "server); synchronous commit on both stores; hub-process CPU per record (1 process): SQLite "
        f"{median(cpu['sqlite']):.0f} µs, PostgreSQL {median(cpu['postgres']):.0f} µs (the server's CPU not included)"
    )
    rows = [Row("replicas: SQLite, 1 process (records/s)", sqlite_rate, "rec/s", "-", None, notes=[note])]
    for n, runs in pg_runs.items():
        rows.append(
            Row(
                f"replicas: PostgreSQL, {n} replica{'s' if n > 1 else ''} (records/s)",
                median(runs),
                "rec/s",
                "-",
                None,
                sqlite_rate,
                "SQLite, 1 process",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas", description=__doc__.split("\n\n")[0])
    Sizes.add_arguments(parser, quick="small sizes (a smoke test)", tmp="directory for the SQLite databases")
    args = parser.parse_args(argv)
    sizes = Sizes.from_args(args)
    started = time.perf_counter()
    rows = run(sizes, args.tmp)
    print_table(rows, machine_line() + f"; {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
