"""(b) Dedup at scale: the per-record cost of committing new records with 100k vs 10M records already stored.

The outbox is prefilled fast (its own connection, ``synchronous=OFF``, no journal, big transactions, the store's
indexes in place) with realistic rows: time-ordered record ids (48-bit ms + 80 random bits, as
:func:`~tanpuhui.sdk.records.record_id_at` makes them) and behaviour fingerprints of 256k subjects in 10-minute
windows, and the record head of each row's partner item (corrections look every page's items up by partner id).
Prefilled bodies are 100 bytes (the body is in neither dedup index; the measured pages carry full-size
records). Then :meth:`SQLiteStore.commit_page` commits pages of 1,000 new records (later times, fingerprints
checked against other sources' claims, WAL, ``synchronous=FULL``) and the median cost per record is compared.
A page of records already stored (a re-pull: every one a duplicate) is timed too.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tanpuhui.hub.store.base import NewRecord
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk.records import _PAIRS, _window_label

from .common import Row, Sizes, median

__all__ = ["run"]

TARGET_RATIO = 1.5
_T0_MS = 1_730_764_800_000  # 2024-11-05T00:00:00Z
_STEP_MS = 250  # ~4 records a second, 10M records span ~29 days
_SUBJECTS = 256 * 1024
_PAGE = 1000


class _Generator:
    """Realistic outbox rows, cheaply: record ids and fingerprints with the shapes the SDK gives them."""

    def __init__(self, seed: int = 11) -> None:
        self._rng = random.Random(seed)
        self._digests = [
            hashlib.sha256(f"subject-{i}".encode()).hexdigest()[:32] for i in range(_SUBJECTS)
        ]  # SHA-256(pseudonym|scenario)[:32]
        self._prefix: dict[int, str] = {}

    def record_id(self, ms: int) -> str:
        p = _PAIRS
        head = self._prefix.get(ms >> 10)
        if head is None:
            hi = ms >> 10
            head = self._prefix[hi] = p[hi >> 30] + p[(hi >> 20) & 1023] + p[(hi >> 10) & 1023] + p[hi & 1023]
            if len(self._prefix) > 100_000:
                self._prefix.clear()
        r = self._rng.getrandbits(80)
        return (
            f"{head}{p[ms & 1023]}{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}{p[(r >> 40) & 1023]}"
            f"{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}{p[(r >> 10) & 1023]}{p[r & 1023]}"
        )

    def fingerprints(self, ms: int) -> tuple[str, str, str]:
        """(scenario, fingerprint, neighbour window's fingerprint) of a random subject at ``ms``."""
        bits = self._rng.getrandbits(28)
        scenario = "metro" if bits & 15 < 10 else "bus"  # ~60% metro
        digest = self._digests[bits >> 10]  # 18 bits: one of 256k subjects
        seconds = ms // 1000
        floored = seconds - seconds % 600
        neighbour = floored - 600 if seconds - floored < 300 else floored + 600
        return (
            scenario,
            f"{_window_label(floored)}:{scenario}:{digest}",
            f"{_window_label(neighbour)}:{scenario}:{digest}",
        )

    def prefill_rows(self, count: int) -> Iterator[tuple[object, ...]]:
        """Rows for the prefill, as cheaply as Python allows (10M of them).

        Every row has its own millisecond, so the random part of its id only has to look like one: it is drawn from
        a pool of 65,536 random 16-character tails instead of being made per row.
        """
        p, rng = _PAIRS, self._rng
        tails = []
        for _ in range(65_536):
            r = rng.getrandbits(80)
            tails.append("".join(p[(r >> s) & 1023] for s in range(70, -10, -10)))
        digests = self._digests
        body = b'{"record_id":"%s","padding":"' + b"x" * 60 + b'"}'
        getrandbits = rng.getrandbits
        for i in range(count):
            ms = _T0_MS + i * _STEP_MS
            hi = ms >> 10
            rid = f"{p[hi >> 30]}{p[(hi >> 20) & 1023]}{p[(hi >> 10) & 1023]}{p[hi & 1023]}{p[ms & 1023]}{tails[getrandbits(16)]}"
            bits = getrandbits(22)
            scenario = "metro" if bits & 15 < 10 else "bus"
            seconds = ms // 1000
            fp = f"{_window_label(seconds - seconds % 600)}:{scenario}:{digests[bits >> 4]}"
            yield (rid, fp, "transit_card", "transactions", scenario, 0.2, body % rid.encode(), "2024-11-05T00:00:00Z")

    def page(self, start_index: int, body: bytes) -> list[NewRecord]:
        out = []
        for i in range(start_index, start_index + _PAGE):
            ms = _T0_MS + i * _STEP_MS
            rid = self.record_id(ms)
            scenario, fp, neighbour = self.fingerprints(ms)
            out.append(
                NewRecord(
                    rid,
                    fp,
                    scenario,
                    0.2,
                    body.replace(b"RECORD_ID", rid.encode()),
                    neighbour,
                    partner_record_id=_partner_id(i),
                    raw_sha256=_RAW,
                )
            )
        return out


_RAW = "a" * 64


def _partner_id(i: int) -> str:
    """The partner's transaction id of the ``i``-th record (unique, as a card operator's are)."""
    return f"HF{i:012d}"


_BODY = (
    b'{"record_id":"RECORD_ID","schema_version":"1.0","source":{"adapter":"transit_card","adapter_version":"1.0.0",'
    b'"stream":"transactions","partner_record_id":"HF00000470600I+HF00000470600O","raw_sha256":"'
    + b"a" * 64
    + b'"},"subject":{"kind":"person","pseudonym":"'
    + b"b" * 64
    + b'","key_version":"v1"},"scenario":"metro","period":{"start":"2024-11-05T14:00:01+08:00","end":'
    b'"2024-11-05T14:31:12+08:00"},"region":"340100","activity":{"quantity":12.4,"unit":"pkm","details":'
    b'{"origin_stop":"M1-03","destination_stop":"M2-11","line_in":"M1","line_out":"M2","network_version":'
    b'"hf-2024.11"}},"quantification":{"methodology_id":"tph.transit.metro","methodology_version":"1.0.0",'
    b'"formula":"activity * ef_reduction","factors":[{"name":"ef_reduction","value":0.0412,"unit":"kgCO2e/pkm",'
    b'"source":"' + b"s" * 300 + b'","default":true}],"reduction_kgco2e":0.51088},'
    b'"fingerprint":"202411050600:metro:' + b"c" * 32 + b'"}'
)


def prefill(path: Path, count: int, gen: _Generator) -> float:
    """Create the store and put ``count`` rows in its outbox; returns the seconds it took."""
    started = time.perf_counter()
    SQLiteStore(path).close()  # the schema and indexes, exactly as the hub creates them
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    # The record_id UNIQUE index is maintained row by row (ids are time-ordered: appends); the fingerprint index is
    # built once after the load (a sorted build, 10x cheaper than 10M inserts into it), then both are in place.
    index_sql = conn.execute("SELECT sql FROM sqlite_master WHERE name='outbox_fingerprint'").fetchone()[0]
    conn.execute("DROP INDEX outbox_fingerprint")
    rows = gen.prefill_rows(count)
    chunk = 500_000
    for _ in range(0, count, chunk):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO outbox (record_id, fingerprint, adapter, stream, scenario, reduction_kgco2e, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            itertools.islice(rows, chunk),
        )
        conn.execute("COMMIT")
    conn.execute(index_sql)
    # Every pulled record leaves its partner item's head (corrections: tanpuhui.hub.store.revisions), keyed by
    # (adapter, stream, partner id): a store of 10M records holds 10M heads, and each page looks its items up.
    conn.execute(
        "INSERT INTO record_heads (adapter, stream, partner_record_id, record_id, raw_sha256)"
        " SELECT adapter, stream, printf('HF%012d', seq - 1), record_id, ? FROM outbox",
        (_RAW,),
    )
    stored = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    conn.close()
    if stored != count:
        raise RuntimeError(f"prefill stored {stored} rows, expected {count}")
    return time.perf_counter() - started


def measure(path: Path, stored: int, gen: _Generator, pages: int) -> tuple[float, float]:
    """(median µs per new record, µs per record of a page of duplicates) committing pages into the store."""
    store = SQLiteStore(path)
    try:
        costs = []
        first: list[NewRecord] = []
        for k in range(pages + 2):
            page = gen.page(stored + k * _PAGE, _BODY)
            first = first or page
            t = time.perf_counter()
            result = store.commit_page("transit_card", "transactions", page, [], None)
            costs.append((time.perf_counter() - t) / len(page))
            assert result.inserted == len(page), result
        t = time.perf_counter()
        result = store.commit_page("transit_card", "transactions", first, [], None)
        dup = (time.perf_counter() - t) / len(first)
        assert result.duplicates == len(first), result
        return median(costs[2:]) * 1e6, dup * 1e6  # the first two pages warm the caches
    finally:
        store.close()


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    pages = 30 if sizes.quick else 100
    results = {}
    prefill_s = {}
    for count in (sizes.dedup_small, sizes.dedup_large):
        with tempfile.TemporaryDirectory(prefix="tph-bench-dedup-", dir=tmp) as d:
            path = Path(d) / "hub.db"
            gen = _Generator()
            prefill_s[count] = prefill(path, count, gen)
            results[count] = measure(path, count, gen, pages)
    small, large = results[sizes.dedup_small], results[sizes.dedup_large]
    ratio = large[0] / small[0]
    label = f"{sizes.dedup_small // 1000:,}k"
    big = f"{sizes.dedup_large / 1e6:g}M"
    return [
        Row(
            f"dedup at scale: commit cost per new record at {big} stored",
            large[0],
            "µs",
            f"<= {TARGET_RATIO}x the cost at {label}",
            ratio <= TARGET_RATIO,
            small[0],
            f"at {label}",
            notes=[
                f"pages of 1,000 new records, median of {pages}; re-pulled page (all duplicates): "
                f"{small[1]:.1f} µs/record at {label}, {large[1]:.1f} µs/record at {big}; prefill took "
                f"{prefill_s[sizes.dedup_small]:.1f} s and {prefill_s[sizes.dedup_large]:.1f} s"
            ],
        )
    ]
