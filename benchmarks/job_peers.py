"""The peers of the pull-and-forward job (``benchmarks/job.py``), each a process of its own on one core.

    python -m benchmarks.job_peers NAME --url http://127.0.0.1:PORT --dir DIR

Every peer pulls the simulator's transit-card transactions (``POST /oauth/token``, then ``GET /v1/transactions``
with the cursor, pages of ~1000), validates each item against the same JSON Schema as the hub's raw validation
(``transit-card-trip``, jsonschema-rs with formats on), drops the invalid ones and stores the valid ones durably.
Prints one JSON document: items pulled, items stored, items dropped.

- ``hand``: httpx + orjson + jsonschema-rs -> SQLite WAL (``synchronous=FULL``), one ``executemany`` + COMMIT per
  page: the floor of any pipeline in Python on this machine (no normalize, no ids, no dedup, no forwarding).
- ``dlt-jsonl``: a dlt resource (the same fetch, parse and validation) -> dlt's filesystem destination, JSONL.
- ``dlt-parquet-duckdb``: the same resource -> duckdb, loaded from parquet files.

dlt is imported only by its peers: without it (``pip install -e '.[bench]'``) they exit with status 3 and the job
benchmark leaves their rows out with a message.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import orjson

from tanpuhui.schemas import load_builtin

__all__ = ["main"]

NO_DLT = 3
"""Exit status of a dlt peer when dlt is not installed."""


class _Counts:
    def __init__(self) -> None:
        self.items = 0
        self.valid = 0


def pages(url: str, counts: _Counts) -> Iterator[list[dict[str, Any]]]:
    """The simulator's pages, each parsed and validated: the valid items of each page."""
    is_valid: Callable[[Any], bool] = jsonschema_rs.validator_for(
        load_builtin("transit-card-trip"), validate_formats=True
    ).is_valid
    with httpx.Client(base_url=url, timeout=30.0) as client:
        token = orjson.loads(
            client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "client_id": "bench", "client_secret": "bench-secret"},
            ).content
        )["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        cursor = "p0"
        while True:
            page = orjson.loads(
                client.get("/v1/transactions", params={"cursor": cursor, "limit": 1000}, headers=headers).content
            )
            items = page["data"]
            valid = [item for item in items if is_valid(item)]
            counts.items += len(items)
            counts.valid += len(valid)
            if valid:
                yield valid
            if not page.get("has_more"):
                return
            cursor = page["next_cursor"]


def hand(url: str, directory: Path, counts: _Counts) -> None:
    conn = sqlite3.connect(directory / "hand.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE txn (txn_id TEXT PRIMARY KEY, body BLOB NOT NULL)")
    dumps = orjson.dumps
    for valid in pages(url, counts):
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO txn VALUES (?, ?)", [(i["txn_id"], dumps(i)) for i in valid])
        conn.execute("COMMIT")
    conn.close()


def _dlt(url: str, directory: Path, counts: _Counts, destination: str) -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    try:
        import dlt
    except ImportError:
        print("dlt is not installed (pip install -e '.[bench]')", file=sys.stderr)
        raise SystemExit(NO_DLT) from None

    @dlt.resource(name="transactions", write_disposition="append")
    def transactions() -> Iterator[list[dict[str, Any]]]:
        yield from pages(url, counts)

    if destination == "jsonl":
        dest: Any = dlt.destinations.filesystem(bucket_url=(directory / "lake").as_uri())
        file_format = "jsonl"
    else:
        dest = dlt.destinations.duckdb(str(directory / "bench.duckdb"))
        file_format = "parquet"
    pipeline = dlt.pipeline(
        pipeline_name="tph_bench_job", pipelines_dir=str(directory / "dlt"), destination=dest, dataset_name="transit"
    )
    pipeline.run(transactions(), loader_file_format=file_format)


PEERS: dict[str, Callable[[str, Path, _Counts], None]] = {
    "hand": hand,
    "dlt-jsonl": lambda url, d, c: _dlt(url, d, c, "jsonl"),
    "dlt-parquet-duckdb": lambda url, d, c: _dlt(url, d, c, "duckdb"),
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.job_peers")
    parser.add_argument("name", choices=sorted(PEERS))
    parser.add_argument("--url", required=True, help="the simulator's base URL")
    parser.add_argument("--dir", type=Path, required=True, help="where the peer stores what it pulled")
    args = parser.parse_args()
    counts = _Counts()
    PEERS[args.name](args.url, args.dir, counts)
    print(
        orjson.dumps({"items": counts.items, "stored": counts.valid, "dropped": counts.items - counts.valid}).decode()
    )


if __name__ == "__main__":
    main()
