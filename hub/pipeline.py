"""The pipeline: raw page -> validate -> normalize -> validate record -> the page's writes.

:meth:`Pipeline.process` writes nothing to the store and reads from it only the plausibility day counts of the
page's keys (:mod:`.plausibility`); it returns a :class:`ProcessedPage` whose :meth:`~ProcessedPage.write` is the
:class:`~tanpuhui.hub.store.base.PageWrite` a driver commits (outbox rows, quarantine entries, the stream's
checkpoint and the page's day counts in ONE transaction). Every path (pull, push, quarantine replay) goes through
it, so a rule is written once. Invalid items never block the valid items of their page; an adapter bug on one item
quarantines that item, not the page.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from tanpuhui.sdk import (
    ItemRejected,
    Problem,
    ReductionRecord,
    StreamContext,
    TanpuhuiError,
    mask_identifiers,
    neighbour_fingerprint_at,
    period_start_seconds,
    redact,
)

from .audit import AuditEvent
from .encoding import dumps_any, safe_text
from .overlaps import OverlapIndex
from .plausibility import LEGACY_STATE_KEY, DayCounts, Finding, Plausibility
from .runtime import BoundStream, Runtime
from .store.base import Checkpoint, CommitResult, NewQuarantine, NewReceipt, NewRecord, NewVoid, PageWrite

__all__ = ["PageObserver", "PageResult", "Pipeline", "ProcessedPage"]

log = logging.getLogger("tanpuhui.pipeline")

_NO_LONGER_CREDITS = "the partner re-sent the item and it no longer credits anything"
"""The reason of the void of an item of a ``void_when_empty`` stream that was re-sent and yields no record."""

_PARTNER_DATA_ERRORS = (UnicodeError, RecursionError, OverflowError)
"""What ``normalize`` raises on hostile partner data rather than on a bug of its own (no stack trace logged)."""


@dataclass
class PageResult:
    """What one page (or one pushed batch) did."""

    adapter: str
    stream: str
    items: int = 0
    records: int = 0
    valid_items: int = 0
    inserted: int = 0
    duplicates: int = 0
    held: int = 0
    quarantined: int = 0
    """Items quarantined as new entries."""
    quarantine_repeats: int = 0
    """Items quarantined before (a re-pull, a retry): their entries counted a repeat, no new entry."""
    kg_by_scenario: Counter[str] = field(default_factory=Counter)
    inserted_by_scenario: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    """Top-level fields the stream's schema does not name -> items carrying them (allowed; reported)."""
    plausibility: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(rule, action) -> records a plausibility rule fired on (action: hold, flag, released)."""


@dataclass(slots=True)
class ProcessedPage:
    """A page validated and normalized, not yet committed."""

    stream: BoundStream
    result: PageResult
    records: list[NewRecord] = field(default_factory=list)
    quarantined: list[NewQuarantine] = field(default_factory=list)
    rejected: dict[int, tuple[str, list[Problem]]] = field(default_factory=dict)
    """Item index -> (stage, problems) for the page's items that were quarantined."""
    drift: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Unknown top-level field -> (valid items carrying it, the partner id of one of them)."""
    voids: list[NewVoid] = field(default_factory=list)
    """Items the partner withdrew (``ctx.withdraw``): the store voids their records."""
    day_counts: DayCounts | None = None
    """The plausibility day counts the page was checked against, with the records it counted first."""

    def write(
        self,
        checkpoint: Checkpoint | None,
        audit: AuditEvent,
        *,
        receipt: NewReceipt | None = None,
        lease_owner: str | None = None,
        quarantine: bool = True,
    ) -> PageWrite:
        """The page's writes for the store (``quarantine=False``: without its quarantine entries)."""
        bound = self.stream
        return PageWrite(
            bound.adapter.name,
            bound.stream.name,
            self.records,
            self.quarantined if quarantine else [],
            checkpoint,
            receipt,
            lease_owner=lease_owner,
            audit=audit,
            drift=self.drift,
            voids=self.voids,
            day_counts=self.day_counts.added if self.day_counts is not None else (),
        )

    def committed(self, committed: CommitResult) -> PageResult:
        """The page's result, completed with what the commit did."""
        if self.day_counts is not None:
            self.day_counts.committed()
        result = self.result
        result.records = len(self.records)
        result.inserted = committed.inserted
        result.duplicates = committed.duplicates
        result.held = committed.held
        result.quarantined = committed.quarantined
        result.quarantine_repeats = committed.quarantine_repeats
        ids = committed.inserted_ids
        kg: dict[str, float] = {}
        counts: dict[str, int] = {}
        for r in self.records:
            if ids is None or r.record_id in ids:
                scenario = r.scenario
                kg[scenario] = kg.get(scenario, 0.0) + r.reduction_kgco2e
                counts[scenario] = counts.get(scenario, 0) + 1
        result.kg_by_scenario.update(kg)  # a Counter of kg: floats
        result.inserted_by_scenario.update(counts)
        for name, (count, _) in self.drift.items():
            result.drift[name] += count
        return result


class PageObserver(Protocol):
    """Sees every page the pipeline processes (e.g. the conformance suite keeping the raw items it checks)."""

    def page_processed(self, stream: BoundStream, items: Sequence[Any], page: ProcessedPage) -> None: ...


class Pipeline:
    """Validate, normalize and validate again: one page in, its writes out (see the module docstring)."""

    def __init__(self, runtime: Runtime, observers: Iterable[PageObserver] = ()) -> None:
        self.runtime = runtime
        self.observers = list(observers)
        self._window = runtime.config.hub.fingerprint_window_minutes
        self._overlaps = OverlapIndex(runtime.config.hub.overlap_rules())
        self._overlap_scenarios = self._overlaps.scenarios
        self.plausibility = Plausibility(runtime.config.plausibility)

    def process(
        self,
        bound: BoundStream,
        ctx: StreamContext,
        items: Sequence[Any],
        *,
        final: bool = False,
        flush: bool = True,
        release: bool = False,
    ) -> ProcessedPage:
        """Validate and normalize a page (nothing is stored); ``rejected`` says which items were quarantined.

        ``final``: the run reached the partner's end (the stream may give up on pending state). ``flush``: let the
        stream emit what its pending state completes (off for a quarantine replay, which re-runs single items).
        ``release``: records a plausibility rule would hold go on, the release written into them (an operator's
        ``quarantine replay --release``).
        """
        stream = bound.stream
        adapter = bound.adapter.name
        processed = ProcessedPage(bound, PageResult(adapter, stream.name, items=len(items)))
        result = processed.result
        records = processed.records
        quarantined = processed.quarantined
        rejected = processed.rejected
        raw_valid = bound.raw_schema.is_valid
        record_valid = bound.record_schema.is_valid
        id_field = stream.id_field
        known = bound.known_fields
        drift = processed.drift
        plausibility = self.plausibility
        plausible = plausibility.check
        ctx.state.pop(LEGACY_STATE_KEY, None)  # counts an earlier version kept in the state: not carried on
        # Valid record documents, each with its item and the item's index (-1: flushed), in the page's order:
        # checked against the plausibility rules and made records once the page's day counts are read.
        checked: list[dict[str, Any]] = []
        checked_items: list[Any] = []
        checked_indexes: list[int] = []

        def reject(index: int, stage: str, item: Any, problems: Sequence[Problem]) -> None:
            problems = [_safe_problem(p) for p in problems]
            quarantined.append(self._quarantine(stage, item, id_field, problems))
            if index >= 0:
                rejected.setdefault(index, (stage, []))[1].extend(problems)

        # void_when_empty: partner id -> raw hash of an item of it that yielded nothing (the last one); an item of
        # that id yielding a record later in the page takes its place (the last version counts). An item quarantined
        # is bad data, not a withdrawal: it voids nothing.
        empty: dict[str, str] = {}
        void_when_empty = stream.void_when_empty

        def accept(index: int, out: Iterable[Any], item: Any) -> None:
            for rec in out:
                try:
                    doc = rec.to_json_dict() if isinstance(rec, ReductionRecord) else rec
                    if empty:  # before the checks: a later version quarantined is bad data, not a withdrawal
                        source = doc.get("source") if isinstance(doc, dict) else None
                        if isinstance(source, dict):
                            empty.pop(str(source.get("partner_record_id", "")), None)
                    if not record_valid(doc):
                        reject(index, "record", item, bound.record_schema.problems(doc))
                        continue
                    checked.append(doc)
                    checked_items.append(item)
                    checked_indexes.append(index)
                except Exception as exc:  # e.g. a partner string that cannot be written as JSON: this record only
                    reject(index, "record", item, [_unprocessable("a record of this item cannot be written", exc)])

        for index, item in enumerate(items):
            try:
                if not raw_valid(item):
                    reject(index, "raw", item, bound.raw_schema.problems(item))
                    continue
                if known is not None and not known.issuperset(item):
                    for name in item.keys() - known:
                        name = safe_text(redact(str(name)))[:128]
                        count, example = drift.get(name, (0, ""))
                        drift[name] = (count + 1, example or _partner_id(item, id_field)[:128])
            except Exception as exc:  # what the partner sent defeats validation itself (e.g. nesting past limits)
                reject(index, "raw", item, [_unprocessable("the item cannot be validated", exc)])
                continue
            try:
                out = list(stream.normalize(item, ctx))
            except ItemRejected as exc:
                reject(index, "normalize", item, exc.problems)
                continue
            except TanpuhuiError as exc:
                reject(index, "normalize", item, [Problem("", redact(str(exc)))])
                continue
            except _PARTNER_DATA_ERRORS as exc:  # text that is not Unicode, values past every limit: the item's fault
                reject(index, "normalize", item, [_unprocessable("the item holds what cannot be processed", exc)])
                continue
            except Exception as exc:  # an adapter bug must not lose the item: keep it for replay after a fix
                log.exception("adapter %s stream %s: normalize raised", adapter, stream.name)
                problem = Problem("", redact(f"adapter error {type(exc).__name__}: {exc}"), "adapter")
                reject(index, "normalize", item, [problem])
                continue
            result.valid_items += 1
            if not out and void_when_empty:
                self._yielded_nothing(empty, item, id_field)
            accept(index, out, item)
        if flush:
            accept(-1, stream.flush(ctx, final), {})
        if checked:
            counts = plausibility.counts(
                ctx, checked, lambda keys: self.runtime.store.day_counts(adapter, stream.name, keys)
            )
            processed.day_counts = counts
            for index, item, doc, keys in zip(checked_indexes, checked_items, checked, counts.doc_keys, strict=True):
                try:
                    findings = plausible(doc, counts, keys)
                    if findings and not self._plausibility(findings, doc, release, result):
                        reject(index, "plausibility", item, [f.problem() for f in findings if f.action == "hold"])
                        continue
                    records.append(self._new_record(doc))
                except Exception as exc:  # e.g. a partner string that cannot be written as JSON: this record only
                    reject(index, "record", item, [_unprocessable("a record of this item cannot be written", exc)])
        for rejection in ctx.rejections:
            quarantined.append(
                self._quarantine("incomplete", rejection.raw, id_field, rejection.problems, rejection.partner_record_id)
            )
        ctx.rejections.clear()
        for withdrawn in ctx.withdrawals:
            pid = safe_text(withdrawn.partner_record_id)[:256]  # as the record carries it: the key to match
            processed.voids.append(NewVoid(pid, withdrawn.id_stream, safe_text(redact(withdrawn.reason))))
        ctx.withdrawals.clear()
        for pid, raw_sha256 in empty.items():
            processed.voids.append(NewVoid(pid, stream.name, _NO_LONGER_CREDITS, raw_sha256))
        for observer in self.observers:
            observer.page_processed(bound, items, processed)
        return processed

    @staticmethod
    def _yielded_nothing(empty: dict[str, str], item: Any, id_field: str) -> None:
        """Note an item of a ``void_when_empty`` stream that yielded no record: the partner withdrew its credit."""
        raw = item.get(id_field) if isinstance(item, dict) else None
        if isinstance(raw, str) and raw:
            pid = mask_identifiers(raw)  # as ctx.record writes it into source.partner_record_id: the head's key
            empty.pop(pid, None)  # insertion order: the voids follow the page
            empty[pid] = hashlib.sha256(dumps_any(item, orjson.OPT_SORT_KEYS)).hexdigest()

    @staticmethod
    def _plausibility(findings: Sequence[Finding], doc: dict[str, Any], release: bool, result: PageResult) -> bool:
        """Count the findings; False: the record is held. Else they go into the record (flags, releases)."""
        held = not release and any(f.action == "hold" for f in findings)
        for f in findings:
            result.plausibility[f.rule, "released" if release and f.action == "hold" else f.action] += 1
        if held:
            return False
        doc["plausibility"] = [f.as_record("released" if f.action == "hold" else None) for f in findings]
        return True

    def _new_record(self, doc: dict[str, Any]) -> NewRecord:
        fingerprint = doc["fingerprint"]
        seconds = period_start_seconds(doc)
        window = self._window
        neighbour = neighbour_fingerprint_at(fingerprint, seconds, window)
        kg = doc["quantification"]["reduction_kgco2e"]
        source = doc["source"]
        # Claim keys under the pseudonym keys before a rotation (ctx.record sets them while earlier keys are kept).
        earlier = getattr(doc, "aliases", ())
        aliases = (
            tuple(k for a in earlier for k in (a, neighbour_fingerprint_at(a, seconds, window))) if earlier else ()
        )
        scenario = doc["scenario"]
        return NewRecord(
            doc["record_id"],
            fingerprint,
            scenario,
            kg,
            orjson.dumps(doc),
            neighbour,
            source["partner_record_id"],
            getattr(doc, "id_stream", "") or source["stream"],
            source["raw_sha256"],
            self._overlaps.keys(doc, seconds, getattr(doc, "subject_aliases", ()))
            if scenario in self._overlap_scenarios
            else (),
            aliases,
        )

    def _quarantine(
        self,
        stage: str,
        item: Any,
        id_field: str,
        problems: Sequence[Problem],
        partner_record_id: str = "",
    ) -> NewQuarantine:
        pid = safe_text(partner_record_id) or _partner_id(item, id_field)
        keys = self.runtime.pseudonymiser
        raw = dumps_any(item)
        # The same item again (a re-pull, a partner's retry) is a repeat of its entry, not a new one.
        digest = keys.digest(dumps_any(item, orjson.OPT_SORT_KEYS) if isinstance(item, dict) else raw)
        return NewQuarantine(stage, pid[:256], keys.seal(raw), list(problems), digest)


def _safe_problem(problem: Problem) -> Problem:
    # a problem reaches the quarantine, the webhook receipt and the replay answer: partner text in it is masked
    pointer, message = safe_text(redact(problem.pointer)), safe_text(redact(problem.message))
    if pointer is problem.pointer and message is problem.message:
        return problem
    return Problem(pointer, message, problem.keyword)


def _partner_id(item: Any, id_field: str) -> str:
    """The partner's id of an item, redacted and safe to store ("" when it has none)."""
    raw = item.get(id_field, "") if isinstance(item, dict) else ""
    return safe_text(redact(raw if isinstance(raw, str) else str(raw)))


def _unprocessable(what: str, exc: Exception) -> Problem:
    return Problem("", safe_text(redact(f"{what}: {type(exc).__name__}: {exc}"))[:300], "unprocessable")
