"""A verifier's evidence pack for one record (``tanpuhui evidence RECORD_ID``).

What a verification body (核查机构) needs to accept a record as evidence, without access to the hub:

- ``record``: the record exactly as forwarded, its outbox ``seq``, event ``kind`` and what revised it (the
  correction that superseded it, the void that withdrew it) or what it supersedes;
- ``raw_item``: the SHA-256 of the partner's raw item (``source.raw_sha256``) and how it is computed, so the item
  kept by the partner can be matched; the hub keeps no clear copy of accepted items;
- ``methodology``: the registered methodology of that id and version (title, formula, references) and the
  factors as applied in the record, each with its value, unit and source;
- ``computation``: the formula, every variable's value, the result recomputed from the record alone and whether
  it equals ``reduction_kgco2e`` (a netted record's deductions name the records they come from);
- ``withholds``: the records withheld because this one is credited for the same activity (an overlap rule's
  ``withhold``, a cross-source claim), each with its adapter and stream: a verifier follows the pair from either
  side, since the pack of a withheld record (never forwarded) is refused naming the record credited instead;
- ``audit``: the audit-log entry that committed the record's outbox row, the batch's rows (ids and body
  hashes) whose digest is the entry's ``records_sha256``, every entry after it up to the head (so the chain can
  be recomputed from the entry to the head), and whether the whole log verifies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from tanpuhui.sdk import Methodology, TanpuhuiError, recompute

from .audit import AuditEntry, AuditLog, batch_digest, iter_pages, verify_log

__all__ = ["EvidenceError", "evidence_pack", "find_row", "held_claims"]

RAW_HASH_RULE = (
    "SHA-256 (hex) of the partner item as canonical JSON: UTF-8, object keys sorted, no insignificant whitespace "
    "(for an item built from several partner items, e.g. a tap-in and its tap-out, the object the record's "
    "adapter documents)"
)


class EvidenceError(TanpuhuiError, LookupError):
    """A record the store does not hold, or a store without an audit log."""


def find_row(store: Any, record_id: str) -> dict[str, Any] | None:
    """The outbox row of ``record_id`` with what revised it: ``{seq, kind, supersedes, adapter, stream, body,
    superseded_by, voided_by}`` (None when the outbox has no such record)."""
    sql = store.sql
    with sql.read() as tx:
        row = sql.run(
            tx,
            "SELECT seq, kind, supersedes, adapter, stream, body, created_at FROM outbox WHERE record_id=?",
            (record_id,),
        ).fetchone()
        if row is None:
            return None
        later = sql.run(
            tx, "SELECT record_id, kind FROM outbox WHERE supersedes=? ORDER BY seq", (record_id,)
        ).fetchall()
    body = row[5]
    found: dict[str, Any] = {
        "seq": int(row[0]),
        "kind": str(row[1]),
        "supersedes": row[2],
        "adapter": str(row[3]),
        "stream": str(row[4]),
        "body": body.encode() if isinstance(body, str) else bytes(body),
        "committed_at": str(row[6]),
    }
    for rid, kind in later:
        found["voided_by" if kind == "voided" else "superseded_by"] = str(rid)
    return found


def evidence_pack(
    store: Any,
    record_id: str,
    methodology: Callable[[str, str], Methodology | None],
    *,
    chain_limit: int = 10_000,
) -> dict[str, Any]:
    """The pack for one record (see the module docstring); ``methodology(id, version)`` looks one up."""
    if not isinstance(store, AuditLog):
        raise EvidenceError(f"this store ({type(store).__name__}) keeps no audit log: no evidence can be given")
    row = find_row(store, record_id)
    if row is None:
        for held in held_claims(store, "record_id", record_id):
            raise EvidenceError(
                f"record {record_id!r} ({held['adapter']}:{held['stream']}) was withheld and never forwarded: record "
                f"{held['claimed_by']!r} is credited for the same activity (its pack: tanpuhui evidence "
                f"{held['claimed_by']})"
            )
        raise EvidenceError(f"record {record_id!r} is not in the outbox of this store")
    record = orjson.loads(row["body"])
    pack: dict[str, Any] = {
        "record_id": record_id,
        "kind": row["kind"],
        "seq": row["seq"],
        "committed_at": row["committed_at"],
        "adapter": row["adapter"],
        "stream": row["stream"],
    }
    for key in ("supersedes", "superseded_by", "voided_by"):
        if row.get(key):
            pack[key] = row[key]
    pack["record"] = record
    if row["kind"] != "voided":
        pack["raw_item"] = {"sha256": record["source"]["raw_sha256"], "rule": RAW_HASH_RULE}
        pack["methodology"] = _methodology(record, methodology)
        pack["computation"] = _computation(record)
    withheld = held_claims(store, "claimed_by", record_id)
    if withheld:
        pack["withholds"] = [{k: h[k] for k in ("record_id", "adapter", "stream")} for h in withheld]
    pack["audit"] = _audit(store, row["seq"], chain_limit)
    return pack


def held_claims(store: Any, column: str, record_id: str) -> list[dict[str, str]]:
    """The held claims (records withheld, never forwarded) whose ``column`` (``record_id`` or ``claimed_by``: the
    record credited instead) is ``record_id``, oldest first."""
    assert column in ("record_id", "claimed_by")
    sql = store.sql
    with sql.read() as tx:
        rows = sql.run(
            tx,
            f"SELECT record_id, claimed_by, adapter, stream FROM held_claims WHERE {column}=? ORDER BY record_id",
            (record_id,),
        ).fetchall()
    return [{"record_id": r[0], "claimed_by": r[1], "adapter": r[2], "stream": r[3]} for r in rows]


def _methodology(record: Mapping[str, Any], lookup: Callable[[str, str], Methodology | None]) -> dict[str, Any]:
    q = record["quantification"]
    out: dict[str, Any] = {"id": q["methodology_id"], "version": q["methodology_version"]}
    found = lookup(q["methodology_id"], q["methodology_version"])
    if found is not None:
        described = found.describe()
        out.update(title=described["title"], formula=described["formula"], references=described["references"])
        out["registered_factors"] = described["factors"]
    else:
        out["note"] = "this hub has no methodology of that id and version registered; the record carries its own"
    out["factors_applied"] = q["factors"]
    return out


def _computation(record: Mapping[str, Any]) -> dict[str, Any]:
    q = record["quantification"]
    variables: dict[str, float] = {f["name"]: float(f["value"]) for f in q["factors"]}
    variables["activity"] = float(record["activity"]["quantity"])
    if "baseline" in q:
        variables["baseline"] = float(q["baseline"]["quantity"])
    if "deductions" in q:
        variables["deducted"] = sum(float(d["quantity"]) for d in q["deductions"])
    result = recompute(record)
    out: dict[str, Any] = {
        "formula": q["formula"],
        "variables": variables,
        "recomputed_kgco2e": result,
        "recorded_kgco2e": q["reduction_kgco2e"],
        "matches": abs(result - float(q["reduction_kgco2e"])) <= 1e-9,
    }
    if "deductions" in q:
        out["deductions"] = q["deductions"]
    return out


def _covers(entry: AuditEntry, seq: int) -> bool:
    first, last = entry.details.get("first_seq"), entry.details.get("last_seq")
    if not isinstance(first, int) or not isinstance(last, int) or not first <= seq <= last:
        return False
    ranges = entry.details.get("seq_ranges")
    if isinstance(ranges, list):
        return any(isinstance(r, list) and len(r) == 2 and r[0] <= seq <= r[1] for r in ranges)
    return True


def _audit(log: Any, seq: int, chain_limit: int) -> dict[str, Any]:
    entry: AuditEntry | None = None
    chain: list[dict[str, Any]] = []
    truncated = False
    for e in iter_pages(log.audit_entries):
        if entry is None:
            if "records_sha256" in e.details and _covers(e, seq):
                entry = e
            continue
        if len(chain) >= chain_limit:
            truncated = True
            break
        chain.append(e.as_dict())
    verification = verify_log(log, records=False)
    head = f"{verification.head[0]}:{verification.head[1]}" if verification.head else None
    out: dict[str, Any] = {"head": head, "log_verifies": verification.ok, "problems": verification.problems}
    if entry is None:
        out["entry"] = None
        out["note"] = "no audit entry covers this outbox row (committed before the audit log existed?)"
        return out
    details = entry.details
    runs = details.get("seq_ranges") or [[details["first_seq"], details["last_seq"]]]
    rows = [r for first, last in runs for r in log.audit_outbox_rows(first, last)]
    out["entry"] = entry.as_dict()
    out["batch"] = {
        "rows": [[rid, hashlib.sha256(body).hexdigest()] for rid, body in rows],
        "records_sha256": batch_digest(rows),
        "matches_entry": batch_digest(rows) == details["records_sha256"],
    }
    out["chain_to_head"] = chain
    if truncated:
        out["chain_truncated_after"] = chain_limit
    out["how_to_verify"] = (
        "hash(entry) = SHA-256('tanpuhui-audit-v1\\n' + prev_hash + '\\n' + canonical JSON [seq, at, actor, "
        "action, subject, details]); each entry of chain_to_head has the previous one's hash as prev_hash and the "
        "last one is the head; records_sha256 = SHA-256 over the batch's rows (record id, NUL, stored body, "
        "newline) in seq order: this record's body hashes to its row's hash"
    )
    return out
