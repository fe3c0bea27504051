"""Corrections, voids and the no-double-credit overlap rules: what a page's commit does besides inserting records.

Written once over a :class:`~.dialect.Dialect` (portable SQL) and called by :class:`~.rules.RuleStore` inside the
page's transaction. Nothing already forwarded is ever changed: every change goes downstream as an outbox row of
its own, whose ``kind`` the sinks turn into its own CloudEvents type.

- **Corrections.** ``record_heads`` keeps, per partner item (adapter, the stream its record id derives from, the
  partner's id), the current record and the hash of the raw item it came from. The same item again with the same
  hash is a duplicate (nothing written); with another hash it is a *correction*: a new record id (derived from
  the record's and the new hash), ``supersedes`` naming the record it replaces, ``kind = 'corrected'``.
- **Voids.** A withdrawn item (``StreamContext.withdraw``) whose head is active gets a ``voided`` row: a small
  document ``{"record_id": <void id>, "voids": <record id>, "reason": ..., "source": {...}}``; the head is marked
  ``voided``, and the record's behaviour fingerprint no longer claims the behaviour against other sources. A
  withdrawal of an item the hub never credited writes nothing. A stream whose items yield no record when they
  credit nothing (``void_when_empty``) withdraws an item re-sent that way: the pipeline passes a void with the
  item's raw hash, which the head keeps (re-sent again so, a duplicate; crediting again, a correction).
- **Overlap rules** (:mod:`tanpuhui.hub.overlaps`). ``overlap_keys`` remembers which record holds which role of a
  rule for a subject and day (after a key rotation a record has a key per pseudonym of its subject: the keep
  records of an ``other`` record are those on any of its keys). An ``other`` record arriving after its ``keep``
  record is netted (its ``quantification.deductions`` name the keep records, the formula takes ``deducted`` off)
  or held (a held claim whose ``claimed_by`` is the keep record). A ``keep`` record arriving after its ``other``
  record corrects it (netted, superseding it) or voids it (``because_of`` names the keep record). Either order
  ends in the same credited state.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple

import orjson

from tanpuhui.sdk import recompute, record_id_at_revision

from ..audit import AuditEvent, batch_digest
from .base import NewRecord, NewVoid
from .dialect import Dialect, T

__all__ = ["CORRECTED", "CREATED", "VOIDED", "PageRevision", "Revisions", "netted_formula"]

CREATED, CORRECTED, VOIDED = "created", "corrected", "voided"


class _Head(NamedTuple):
    record_id: str
    raw_sha256: str
    status: str


class _Held(NamedTuple):
    record_id: str
    amount: float


@dataclass
class PageRevision:
    """What :meth:`Revisions.before_insert` decided for a page's records."""

    records: list[NewRecord]
    """The records to insert: new ones as they came, corrections and netted ones rewritten."""
    held: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    """Withheld by an overlap rule: ``(record_id, fingerprint, claimed_by, body)``."""
    supersedes: dict[str, str] = field(default_factory=dict)
    """Record id of a correction -> the record it supersedes."""
    heads: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(stream, partner id) -> (record id, raw hash) to record once the record is inserted."""


class Revisions(Generic[T]):
    """The rules above over one database's SQL."""

    def __init__(self, sql: Dialect[T]) -> None:
        self.sql = sql

    # -- before the page's records are inserted ----------------------------------------------------------------

    def before_insert(self, tx: T, adapter: str, stream: str, records: Sequence[NewRecord]) -> PageRevision:
        items = [r for r in records if r.partner_record_id]
        keys = [(r.head_stream or stream, r.partner_record_id) for r in items]
        tracked = set(keys)
        overlaps = any(r.overlaps for r in records)
        if not tracked and not overlaps:
            return PageRevision(list(records))
        heads = self._heads(tx, adapter, tracked)
        if not heads and not overlaps and len(tracked) == len(keys):
            # The common page: brand-new items, each once, no overlap rule. What :meth:`_revise` gives for it (no
            # head to compare with, none set by an earlier record of the page): every record as it came, a head each.
            new = dict(zip(keys, [(r.record_id, r.raw_sha256) for r in items], strict=True))
            return PageRevision(list(records), heads=new)
        return self._revise(tx, stream, records, heads)

    def _revise(
        self, tx: T, stream: str, records: Sequence[NewRecord], heads: dict[tuple[str, str], _Head]
    ) -> PageRevision:
        """Record by record: duplicates dropped, corrections and netted records rewritten, held ones set aside
        (``heads``: those on file of the page's items, updated as the page's records become them)."""
        revision = PageRevision([])
        for r in records:
            if r.partner_record_id:
                key = (r.head_stream or stream, r.partner_record_id)
                head = heads.get(key)
                if head is not None:
                    if head.raw_sha256 == r.raw_sha256 or self._same_record(tx, head, r):
                        continue  # the same item again (or one whose changes change nothing credited): a duplicate
                    r = _rewritten(r, record_id_at_revision(r.record_id, r.raw_sha256), head.record_id)
                    revision.supersedes[r.record_id] = head.record_id
                heads[key] = _Head(r.record_id, r.raw_sha256, "active")
                revision.heads[key] = (r.record_id, r.raw_sha256)
            held_by = ""
            # (rule, role) -> the record's match keys of it: one per pseudonym of its subject (key rotation)
            gives: dict[tuple[str, str], list[str]] = {}
            for o in r.overlaps:
                if o.role != "keep":
                    gives.setdefault((o.rule, o.role), []).append(o.match_key)
            for (rule, role), match_keys in gives.items():
                keeps = self._keeps(tx, rule, match_keys, r.record_id)
                if keeps and role == "give":
                    r = _netted(r, keeps, rule)
                elif keeps:
                    held_by = keeps[0].record_id
            if held_by:
                revision.held.append((r.record_id, r.fingerprint, held_by, r.body))
                revision.supersedes.pop(r.record_id, None)
                revision.heads = {k: v for k, v in revision.heads.items() if v[0] != r.record_id}
                continue
            revision.records.append(r)
        return revision

    # -- after: kinds, heads, overlap keys, and the rows that revise records on file ---------------------------

    def after_insert(
        self,
        tx: T,
        adapter: str,
        stream: str,
        revision: PageRevision,
        inserted: frozenset[str] | None,
        voids: Sequence[NewVoid],
        now: str,
    ) -> list[AuditEvent]:
        sql = self.sql
        if inserted is None:  # every record given was inserted
            rows = revision.records
            corrections = [(CORRECTED, old, new) for new, old in revision.supersedes.items()]
            heads = [(s, pid, rid, raw) for (s, pid), (rid, raw) in revision.heads.items()]
        else:
            rows = [r for r in revision.records if r.record_id in inserted]
            corrections = [(CORRECTED, old, new) for new, old in revision.supersedes.items() if new in inserted]
            heads = [(s, pid, rid, raw) for (s, pid), (rid, raw) in revision.heads.items() if rid in inserted]
        if corrections:
            sql.run_many(tx, "UPDATE outbox SET kind=?, supersedes=? WHERE record_id=?", corrections)
            sql.run_many(tx, "DELETE FROM overlap_keys WHERE record_id=?", [(old,) for _, old, _ in corrections])
        if heads:
            sql.upsert_heads(tx, adapter, heads)
        keys = [(o.rule, o.match_key, o.role, r.record_id, o.amount) for r in rows for o in r.overlaps]
        if keys:
            sql.run_many(
                tx,
                "INSERT INTO overlap_keys (rule, match_key, role, record_id, amount) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (rule, match_key, role, record_id) DO UPDATE SET amount=excluded.amount",
                keys,
            )
        events: list[AuditEvent] = []
        for r in rows:
            for o in r.overlaps:
                if o.role == "keep":
                    events += self._keep_arrived(tx, o.rule, o.match_key, r.record_id, now)
        found = self._heads(tx, adapter, {(v.head_stream, v.partner_record_id) for v in voids}) if voids else {}
        for void in voids:
            key = (void.head_stream, void.partner_record_id)
            head = found.get(key)
            if head is not None and head.status == "active":
                events += self._void(tx, head.record_id, void.reason, "", now)
            if head is not None and void.raw_sha256:
                # The item as re-sent (yielding no record) is the head's version now: sent so again, a duplicate;
                # sent crediting again, a correction of the voided record.
                sql.run(
                    tx,
                    "UPDATE record_heads SET raw_sha256=? WHERE adapter=? AND stream=? AND partner_record_id=?",
                    (void.raw_sha256, adapter, *key),
                )
        return events

    def _keep_arrived(self, tx: T, rule: str, match_key: str, keep_id: str, now: str) -> list[AuditEvent]:
        """A keep record was inserted: net (correct) or void the other records of its subject and day on file."""
        events: list[AuditEvent] = []
        for other in self._overlap(tx, rule, match_key, "withhold", keep_id):
            reason = f"overlap rule {rule}: record {keep_id} credits the same saving"
            events += self._void(tx, other.record_id, reason, keep_id, now)
        return events + self._renet(tx, rule, match_key, now)

    def _renet(self, tx: T, rule: str, match_key: str, now: str) -> list[AuditEvent]:
        """Correct the give records of a subject and day whose deductions differ from the keep records on file now
        (a keep record arrived, was corrected or voided): netted again, or no longer netted when none is left."""
        events: list[AuditEvent] = []
        for other in self._overlap(tx, rule, match_key, "give", ""):
            found = self._row(tx, other.record_id)
            if found is None:
                continue
            row_adapter, row_stream, body = found
            match_keys = self.sql.run(
                tx,
                "SELECT match_key FROM overlap_keys WHERE record_id=? AND rule=? AND role='give'",
                (other.record_id, rule),
            ).fetchall()
            keeps = self._keeps(tx, rule, [str(k) for (k,) in match_keys], other.record_id)
            doc = orjson.loads(body)
            wanted = sorted((k.record_id, k.amount) for k in keeps)
            had = sorted((d["record_id"], d["quantity"]) for d in doc["quantification"].get("deductions", ()))
            if wanted == had:
                continue
            current = NewRecord(other.record_id, doc["fingerprint"], doc["scenario"], 0.0, body)
            salt = "net:" + ",".join(rid for rid, _ in wanted)
            revised = _rewritten(current, record_id_at_revision(other.record_id, salt), other.record_id)
            netted = _netted(revised, keeps, rule) if keeps else _unnetted(revised)
            events += self._insert_revision(tx, row_adapter, row_stream, netted, CORRECTED, other.record_id, now)
            self.sql.run(
                tx, "UPDATE overlap_keys SET record_id=? WHERE record_id=?", (netted.record_id, other.record_id)
            )
            self.sql.run(
                tx, "UPDATE record_heads SET record_id=? WHERE record_id=?", (netted.record_id, other.record_id)
            )
        return events

    def _void(self, tx: T, record_id: str, reason: str, because_of: str, now: str) -> list[AuditEvent]:
        found = self._row(tx, record_id)
        if found is None:
            return []
        row_adapter, row_stream, body = found
        doc = orjson.loads(body)
        void_id = record_id_at_revision(record_id, "void")
        void: dict[str, Any] = {
            "record_id": void_id,
            "voids": record_id,
            "reason": reason or "withdrawn by the partner",
            "scenario": doc.get("scenario", ""),
            "source": {
                k: v for k, v in doc.get("source", {}).items() if k in ("adapter", "stream", "partner_record_id")
            },
        }
        if because_of:
            void["because_of"] = because_of
        row = NewRecord(void_id, "", void["scenario"] or "void", 0.0, orjson.dumps(void))
        events = self._insert_revision(tx, row_adapter, row_stream, row, VOIDED, record_id, now)
        self.sql.run(tx, "UPDATE record_heads SET status='voided' WHERE record_id=?", (record_id,))
        # Its behaviour claim goes with it: the outbox fingerprint column is the claim other sources are checked
        # against (the forwarded body keeps its fingerprint), so the same behaviour from another source is credited.
        self.sql.run(tx, "UPDATE outbox SET fingerprint='' WHERE record_id=?", (record_id,))
        kept = self.sql.run(
            tx, "SELECT rule, match_key FROM overlap_keys WHERE record_id=? AND role='keep'", (record_id,)
        ).fetchall()
        self.sql.run(tx, "DELETE FROM overlap_keys WHERE record_id=?", (record_id,))
        for rule, match_key in kept:  # a keep record withdrawn: its saving is no longer deducted elsewhere
            events += self._renet(tx, str(rule), str(match_key), now)
        return events

    def _insert_revision(
        self, tx: T, adapter: str, stream: str, row: NewRecord, kind: str, supersedes: str, now: str
    ) -> list[AuditEvent]:
        """One outbox row revising a record on file, with its own audit entry (its seq and digest)."""
        outbox = self.sql.insert_outbox(tx, adapter, stream, [row], now)
        if not outbox.inserted:
            return []  # the same revision is on file already
        self.sql.run(tx, "UPDATE outbox SET kind=?, supersedes=? WHERE record_id=?", (kind, supersedes, row.record_id))
        (first, last), *_ = outbox.seq_runs
        details = {
            "record_id": row.record_id,
            "supersedes" if kind == CORRECTED else "voids": supersedes,
            "first_seq": first,
            "last_seq": last,
            "records_sha256": batch_digest([(row.record_id, row.body)]),
        }
        return [AuditEvent(f"record.{'correct' if kind == CORRECTED else 'void'}", f"{adapter}:{stream}", details)]

    # -- reads ---------------------------------------------------------------------------------------------------

    def _heads(self, tx: T, adapter: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Head]:
        """The heads on file of ``keys`` ((stream, partner id)): looked up by the whole primary key, stream by
        stream, so a page costs index probes, not a scan of every head of the adapter."""
        found: dict[tuple[str, str], _Head] = {}
        by_stream: dict[str, list[str]] = {}
        for stream, pid in keys:
            by_stream.setdefault(stream, []).append(pid)
        for stream, pids in sorted(by_stream.items()):
            pids.sort()
            for pid, rid, raw, status in self.sql.record_heads(tx, adapter, stream, pids):
                found[(stream, pid)] = _Head(rid, raw, status)
        return found

    def _overlap(self, tx: T, rule: str, match_key: str, role: str, exclude: str) -> list[_Held]:
        rows = self.sql.run(
            tx,
            "SELECT record_id, amount FROM overlap_keys WHERE rule=? AND match_key=? AND role=? ORDER BY record_id",
            (rule, match_key, role),
        ).fetchall()
        return [_Held(str(rid), float(amount)) for rid, amount in rows if rid != exclude]

    def _keeps(self, tx: T, rule: str, match_keys: Sequence[str], exclude: str) -> list[_Held]:
        """The keep records of a rule on any of ``match_keys`` (a subject's pseudonyms under the current and the
        earlier keys: each keep record once), by record id."""
        if len(match_keys) == 1:
            return self._overlap(tx, rule, match_keys[0], "keep", exclude)
        found = {k.record_id: k for key in match_keys for k in self._overlap(tx, rule, key, "keep", exclude)}
        return [found[rid] for rid in sorted(found)]

    def _same_record(self, tx: T, head: _Head, r: NewRecord) -> bool:
        """Whether ``r`` credits exactly what the item's current record does (e.g. only a partner timestamp
        changed): compared without the ids, the raw hash and what the hub itself added (deductions, supersedes)."""
        if head.status != "active":
            return False
        found = self._row(tx, head.record_id)
        return found is not None and _content(orjson.loads(found[2])) == _content(orjson.loads(r.body))

    def _row(self, tx: T, record_id: str) -> tuple[str, str, bytes] | None:
        row = self.sql.run(tx, "SELECT adapter, stream, body FROM outbox WHERE record_id=?", (record_id,)).fetchone()
        if row is None:
            return None
        body = row[2]
        return str(row[0]), str(row[1]), body.encode() if isinstance(body, str) else bytes(body)


def _content(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop("record_id", None)
    doc.pop("supersedes", None)
    doc.get("source", {}).pop("raw_sha256", None)
    q = doc.get("quantification", {})
    for derived in ("deductions", "formula", "reduction_kgco2e"):  # what netting changes; the rest determines them
        q.pop(derived, None)
    return doc


def _rewritten(r: NewRecord, new_id: str, supersedes: str) -> NewRecord:
    """``r`` under another record id (a correction: naming the record it supersedes)."""
    doc = orjson.loads(r.body)
    doc["record_id"] = new_id
    if supersedes:
        doc["supersedes"] = supersedes
    return r._replace(record_id=new_id, body=orjson.dumps(doc))


def _netted(r: NewRecord, keeps: Sequence[_Held], rule: str) -> NewRecord:
    """``r`` with the keep records' savings deducted (recomputable from the record: see :func:`netted_formula`)."""
    doc = orjson.loads(r.body)
    q = doc["quantification"]
    if "deductions" not in q:
        q["formula"] = netted_formula(q["formula"], "baseline" in q)
    unit = doc["activity"]["unit"]
    q["deductions"] = [
        {"record_id": k.record_id, "quantity": k.amount, "unit": unit, "rule": rule}
        for k in sorted(keeps, key=lambda k: k.record_id)
    ]
    q["reduction_kgco2e"] = recompute(doc)
    return r._replace(reduction_kgco2e=q["reduction_kgco2e"], body=orjson.dumps(doc))


def _unnetted(r: NewRecord) -> NewRecord:
    """``r`` with no deductions left: the formula as the methodology wrote it, the reduction recomputed."""
    doc = orjson.loads(r.body)
    q = doc["quantification"]
    if q.pop("deductions", None) is not None:
        q["formula"] = ast.unparse(_Undeduct().visit(ast.parse(q["formula"], mode="eval")))
    q["reduction_kgco2e"] = recompute(doc)
    return r._replace(reduction_kgco2e=q["reduction_kgco2e"], body=orjson.dumps(doc))


class _Undeduct(ast.NodeTransformer):
    """``x - deducted`` back to ``x`` (the inverse of :class:`_Deduct`)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Sub)
            and isinstance(node.right, ast.Name)
            and node.right.id == "deducted"
            and isinstance(node.left, ast.Name)
        ):
            return node.left
        return node


class _Deduct(ast.NodeTransformer):
    def __init__(self, name: str) -> None:
        self.name = name

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id != self.name:
            return node
        return ast.BinOp(ast.Name(self.name, ast.Load()), ast.Sub(), ast.Name("deducted", ast.Load()))


def netted_formula(formula: str, has_baseline: bool) -> str:
    """The formula with ``deducted`` taken off the saving: ``baseline`` becomes ``(baseline - deducted)`` (or,
    without a baseline, ``activity`` becomes ``(activity - deducted)``)::

        max(baseline - activity, 0) * ef_grid  ->  max(baseline - deducted - activity, 0) * ef_grid
    """
    tree = _Deduct("baseline" if has_baseline else "activity").visit(ast.parse(formula, mode="eval"))
    return ast.unparse(ast.fix_missing_locations(tree))
