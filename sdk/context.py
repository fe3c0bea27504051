"""The context the hub hands to a stream: pseudonymisation, methodologies, record building, pending state."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

from .errors import ItemRejected, MethodologyError, Problem
from .methodology import Methodology
from .privacy import IdentifierKind, Pseudonymiser, mask_identifiers
from .records import RecordDoc, fingerprint_at, record_id_at

__all__ = ["Rejection", "StreamContext", "Withdrawal"]

MethodologyLookup = Callable[[str], Methodology]

_INSTANT_CACHE = 4096
_sha256 = hashlib.sha256
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS


class Rejection:
    """An item a stream gave up on outside ``normalize`` (e.g. a tap-in that never got its tap-out)."""

    __slots__ = ("partner_record_id", "problems", "raw")

    def __init__(self, raw: Mapping[str, Any], problems: Iterable[Problem], partner_record_id: str = "") -> None:
        self.raw = dict(raw)
        self.problems = list(problems)
        self.partner_record_id = partner_record_id


class Withdrawal:
    """An item the partner withdrew (:meth:`StreamContext.withdraw`): the hub voids the record it forwarded for it."""

    __slots__ = ("id_stream", "partner_record_id", "reason")

    def __init__(self, partner_record_id: str, reason: str, id_stream: str) -> None:
        self.partner_record_id = partner_record_id
        self.reason = reason
        self.id_stream = id_stream


_ALIAS_CACHE = 16_384


class StreamContext:
    """Services for one stream of one adapter during a run.

    ``state`` is the stream's durable scratch space (JSON-serialisable, no clear-text personal data): the hub
    saves it with the cursor in the same transaction as the page's records.
    """

    def __init__(
        self,
        *,
        adapter: str,
        adapter_version: str,
        stream: str,
        pseudonymiser: Pseudonymiser,
        methodologies: MethodologyLookup,
        state: dict[str, Any] | None = None,
        fingerprint_window_minutes: int = 10,
        logger: logging.Logger | None = None,
    ) -> None:
        self.adapter = adapter
        self.adapter_version = adapter_version
        self.stream = stream
        self.state: dict[str, Any] = state if state is not None else {}
        self.rejections: list[Rejection] = []
        self.withdrawals: list[Withdrawal] = []
        self.log = logger or logging.getLogger(f"tanpuhui.adapters.{adapter}")
        self._pseudonymiser = pseudonymiser
        self._methodologies = methodologies
        self._window = fingerprint_window_minutes
        self._cache: dict[str, Methodology] = {}
        self._instants: dict[int, tuple[datetime, tuple[int, int, str]]] = {}
        self._masks: dict[str, str] = {}
        self._clean: set[str] = set()
        """The partner strings in :attr:`_masks` that :func:`mask_identifiers` leaves as they are (nearly all)."""
        self._earlier = pseudonymiser.earlier_versions
        self._aliases: dict[str, tuple[str, ...]] = {}
        """Pseudonym under the current key -> the same identifier's under the earlier keys (after a rotation)."""

    @property
    def key_version(self) -> str:
        """The version of the pseudonym key the stream's subjects are pseudonymised with (``v1``, ...)."""
        return self._pseudonymiser.key_version

    def pseudonym(self, kind: IdentifierKind, value: str) -> str:
        """Keyed pseudonym of an identifier (validated and normalised first for resident IDs and mobiles)."""
        found = self._pseudonymiser.pseudonym(kind, value)
        if self._earlier and found not in self._aliases:
            # After a key rotation: remember the pseudonyms under the earlier keys, so that the records of this
            # subject also carry their behaviour fingerprints under those keys (claims across a rotation).
            if len(self._aliases) >= _ALIAS_CACHE:
                self._aliases.clear()
            self._aliases[found] = tuple(self._pseudonymiser.pseudonym(kind, value, v) for v in self._earlier)
        return found

    def earlier_pseudonyms(self, kind: IdentifierKind, value: str) -> tuple[str, ...]:
        """The identifier's pseudonyms under the earlier keys still configured, in their configured order (none
        without a key rotation): a stream that keys its ``ctx.state`` by pseudonym finds there what it kept before
        the rotation."""
        current = self.pseudonym(kind, value)
        return self._aliases.get(current) or tuple(self._pseudonymiser.pseudonym(kind, value, v) for v in self._earlier)

    def subject(self, kind: IdentifierKind, value: str, *, enterprise: bool = False) -> dict[str, str]:
        """The record's ``subject``: pseudonym + key version; never the identifier itself."""
        return {
            "kind": "enterprise" if enterprise else "person",
            "pseudonym": self.pseudonym(kind, value),
            "key_version": self._pseudonymiser.key_version,
        }

    def methodology(self, methodology_id: str) -> Methodology:
        """The methodology in force for this hub (latest registered version, with configured factor overrides)."""
        found = self._cache.get(methodology_id)
        if found is None:
            found = self._cache[methodology_id] = self._methodologies(methodology_id)
        return found

    def reject(self, raw: Mapping[str, Any], problems: Iterable[Problem], partner_record_id: str = "") -> None:
        """Quarantine an item outside ``normalize`` (from ``flush``)."""
        self.rejections.append(Rejection(raw, problems, partner_record_id))

    def withdraw(self, partner_record_id: str, reason: str, *, id_stream: str | None = None) -> None:
        """The partner withdrew an item (cancelled, retracted): the hub voids the record it holds for the item's
        ``partner_record_id`` (a ``voided`` event downstream naming that record); nothing happens when it holds
        none. ``id_stream``: as for :meth:`record`, when the item's records derive their id from another stream."""
        self.withdrawals.append(Withdrawal(partner_record_id, reason[:300], id_stream or self.stream))

    def record(
        self,
        *,
        raw: Mapping[str, Any],
        partner_record_id: str,
        subject: Mapping[str, str],
        scenario: str,
        start: datetime,
        end: datetime | None = None,
        region: str,
        activity: float,
        unit: str | None = None,
        methodology: str | Methodology,
        baseline: float | None = None,
        baseline_method: str = "",
        details: Mapping[str, str | int | float | bool | None] | None = None,
        origin: Mapping[str, str] | None = None,
        quantification: Mapping[str, Any] | None = None,
        id_stream: str | None = None,
    ) -> dict[str, Any]:
        """Build a record document: ids, source reference, quantification and fingerprint filled in.

        ``quantification`` overrides the computed one (a YRD record quantified by its origin platform).
        ``id_stream``: the stream name the record id is derived from, when not this one (a record that arrives
        pushed or pulled keeps one id whichever way it comes: the YRD push stream uses its pull stream's name).
        """
        if isinstance(methodology, str):
            method = self._cache.get(methodology) or self.methodology(methodology)
        else:
            method = methodology
        instant = self._instants.get(id(start))  # the cache of _instant read inline: it nearly always holds it
        ms, seconds, start_text = instant[1] if instant is not None and instant[0] is start else self._instant(start)
        if baseline_method:
            baseline_method = self._masked(baseline_method)  # partner free text: no identifier goes downstream
        if quantification is None:
            if unit is not None and unit != method.activity_unit:
                raise MethodologyError(
                    f"{self.adapter}:{self.stream}: activity in {unit!r} but {method.key} expects {method.activity_unit!r}"
                )
            # a fresh dict; factor vintages are picked for the day the period starts (in the partner's offset)
            quantified = method.quantification(activity, baseline, baseline_method, on=start_text)
        else:
            quantified = dict(quantification)
            factors = quantified.get("factors")
            if isinstance(factors, list):  # an origin platform's figure cited with the platform's own words
                quantified["factors"] = [_masked_factor(f) for f in factors]
        end_text = start_text if end is None or end is start else end.isoformat()
        key_stream = id_stream or self.stream
        measured: dict[str, Any] = {"quantity": activity, "unit": unit or method.activity_unit}
        doc = RecordDoc(
            {
                "record_id": record_id_at(ms, self.adapter, key_stream, partner_record_id),
                "schema_version": "1.0",
                "source": {
                    "adapter": self.adapter,
                    "adapter_version": self.adapter_version,
                    "stream": self.stream,
                    "partner_record_id": mask_identifiers(partner_record_id),
                    "raw_sha256": _raw_sha256(raw),
                },
                "subject": dict(subject),
                "scenario": scenario,
                "period": {"start": start_text, "end": end_text},
                "region": region,
                "activity": measured,
                "quantification": quantified,
                "fingerprint": fingerprint_at(subject["pseudonym"], scenario, seconds, self._window),
            }
        )
        doc.start_seconds, doc.start_text = seconds, start_text
        doc.id_stream = key_stream
        doc.aliases = doc.subject_aliases = ()  # set, so that a reader's getattr(doc, ..., ()) does not raise inside
        if self._earlier:
            earlier = self._aliases.get(subject["pseudonym"])
            if earlier:
                doc.subject_aliases = earlier
                doc.aliases = tuple(fingerprint_at(p, scenario, seconds, self._window) for p in earlier)
        if details:
            measured["details"] = self._masked_values(details)
        if origin:
            doc["origin"] = self._masked_values(origin)
        return doc

    def _masked_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``values`` with each string :meth:`_masked` (its cache read inline: a details dict's strings
        are nearly always remembered, and a method call per value cost more than the lookup).

        When every value is a string remembered as having nothing to mask (a stop, a line, a network version: the
        usual case), the copy is made at once: one set lookup per value, in C, instead of a loop in Python.
        """
        if type(values) is dict:
            try:
                if self._clean.issuperset(values.values()):
                    return dict(values)
            except TypeError:  # an unhashable value (a list): the loop below copies it as it is
                pass
        masks = self._masks
        out: dict[str, Any] = {}
        for k, v in values.items():
            if type(v) is str:
                found = masks.get(v)
                out[k] = found if found is not None else self._masked(v)
            else:
                out[k] = v
        return out

    def _masked(self, text: str) -> str:
        """:func:`mask_identifiers` of a partner string, remembered: details, origins and baseline methods repeat
        (a stop, a line, a platform) far more than they differ."""
        found = self._masks.get(text)
        if found is None:
            found = mask_identifiers(text)
            if len(self._masks) >= _INSTANT_CACHE:
                self._masks.clear()
                self._clean.clear()
            self._masks[text] = found
            if found is text and type(text) is str:
                self._clean.add(text)
        return found

    def _instant(self, when: datetime) -> tuple[int, int, str]:
        """(unix ms, unix s, RFC 3339 text) of a datetime; remembered per datetime object.

        Adapters often hand the same datetime object over again (a tap-in's time is a journey's start; taps of the
        same second share one parsed object): ``timestamp()`` and ``isoformat()`` cost ~1 µs each. Keyed by identity
        (the object is kept alive with its entry, so an id is never reused while cached): two equal datetimes in
        different offsets must still get their own text.
        """
        found = self._instants.get(id(when))
        if found is not None and found[0] is when:
            return found[1]
        ts = when.timestamp()
        value = (int(ts * 1000), int(ts), when.isoformat())
        if len(self._instants) >= _INSTANT_CACHE:
            self._instants.clear()
        self._instants[id(when)] = (when, value)
        return value


def _masked_factor(factor: Any) -> Any:
    if isinstance(factor, Mapping) and isinstance(factor.get("source"), str):
        return {**factor, "source": mask_identifiers(factor["source"])}
    return factor


def _raw_sha256(raw: Mapping[str, Any]) -> str:
    """SHA-256 of the raw item's canonical JSON; an item that has none (nested deeper than JSON writers go,
    integers past 64 bits, lone surrogates) is rejected on its own, as the partner's fault."""
    try:
        return _sha256(_dumps(raw, option=_SORT_KEYS)).hexdigest()
    except TypeError as exc:
        raise ItemRejected([Problem("", f"the item cannot be written as canonical JSON to be hashed: {exc}")]) from None
