"""Plausibility rules: records that are possible but unlikely are flagged or held before they are credited.

Each rule has a name, a kind, the scenarios it looks at, a limit and an action (``hub.toml``, ``[plausibility]``):

=============================  ===========================================================================
kind                           fires when
=============================  ===========================================================================
``max_activity``               the activity quantity is above ``limit`` (a trip's pkm, a day's PV kWh ...)
``max_speed_kmh``              activity / the period's hours is above ``limit`` (tap-in to tap-out speed)
``max_per_day``                the same subject has more than ``limit`` records of the rule's scenarios on one
                               day (the period start's own day), counted per adapter stream
``max_activity_vs_baseline``   the activity is above ``limit`` x the record's baseline (a household's kWh far
                               above its own history)
``max_reduction_kg``           the reduction is above ``limit`` kgCO2e
=============================  ===========================================================================

``hold``: the item is quarantined at stage ``plausibility`` with the rule named in the problem (keyword
``plausibility``); ``tanpuhui quarantine replay`` checks it again against the thresholds of the day, and
``tanpuhui quarantine replay --release`` credits it anyway, the release written into the record. ``flag``: the record
goes on with the finding in its ``plausibility`` list. ``off``: the rule is not run. Shipped rules can be retuned
by name (``[plausibility.rules.metro_speed] limit = 120``); new ones need ``kind``, ``scenarios`` and ``limit``.

Daily counts live in the store (``plausibility_counts``: per stream, rule, day and subject, one row per distinct
record with its place), read for the page's (rule, day, subject) keys in one query before the page is checked and
written in the page's own transaction, so they survive restarts and a page that fails to commit counts nothing;
a page's latest day (at most today) and the day before are kept, older days pruned. They count distinct records (by record id):
an item sent again keeps its place, so a re-sent record within the cap is never held. Every record checked counts,
held ones too (an item held as the 17th stays the 17th on replay). Pages of one stream processed before the
earlier ones commit (a group of pushed requests) see the earlier pages' counts. Counts kept in the stream state
by earlier versions (``_plausibility``) are ignored, and dropped from it with the next page.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, Literal
from weakref import WeakKeyDictionary

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tanpuhui.sdk import ConfigError, Problem, StreamContext

from .store.base import DayCount

__all__ = [
    "DEFAULT_RULES",
    "LEGACY_STATE_KEY",
    "DayCounts",
    "Finding",
    "Plausibility",
    "PlausibilitySettings",
    "RuleSettings",
    "plausibility_settings",
]

Kind = Literal["max_activity", "max_speed_kmh", "max_per_day", "max_activity_vs_baseline", "max_reduction_kg"]
Action = Literal["hold", "flag", "off"]

_Check = Callable[[Mapping[str, Any], float, str, "DayCounts | None"], "tuple[str, str] | None"]


class RuleSettings(BaseModel):
    """One ``[plausibility.rules.<name>]`` table."""

    model_config = ConfigDict(extra="forbid")
    kind: Kind
    scenarios: list[str] = Field(min_length=1)
    limit: float = Field(gt=0)
    action: Action = "hold"
    description: str = ""


class PlausibilitySettings(BaseModel):
    """The ``[plausibility]`` table: ``enabled`` and the rules by name (the shipped ones merged with yours)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    rules: dict[str, RuleSettings] = Field(default_factory=dict)


DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "metro_speed": {
        "kind": "max_speed_kmh",
        "scenarios": ["metro"],
        "limit": 100,
        "description": "tap-in to tap-out faster than a metro train runs (design speeds 80-100 km/h)",
    },
    "metro_trip_length": {
        "kind": "max_activity",
        "scenarios": ["metro"],
        "limit": 80,
        "description": "a metro trip longer than any line pair of the network",
    },
    "bus_trip_length": {
        "kind": "max_activity",
        "scenarios": ["bus"],
        "limit": 60,
        "description": "a bus trip longer than urban bus lines run",
    },
    "transit_trips_per_day": {
        "kind": "max_per_day",
        "scenarios": ["metro", "bus"],
        "limit": 16,
        "description": "more metro and bus trips of one person in a day than a commuter makes",
    },
    "household_use_vs_history": {
        "kind": "max_activity_vs_baseline",
        "scenarios": ["peak_electricity_saving", "demand_response", "peak_water_saving", "peak_gas_saving"],
        "limit": 5,
        "action": "flag",
        "description": "a household's use far above its own baseline (meter fault or a new occupant)",
    },
    "rooftop_pv_daily_kwh": {
        "kind": "max_activity",
        "scenarios": ["rooftop_pv"],
        "limit": 200,
        "description": "more kWh in a day than a household rooftop system generates",
    },
    "appliance_units": {
        "kind": "max_activity",
        "scenarios": ["green_appliance"],
        "limit": 5,
        "description": "more units of one appliance in one purchase than a household buys",
    },
}
"""The shipped rules (limits are engineering judgement, not published figures: tune them in hub.toml)."""

LEGACY_STATE_KEY = "_plausibility"
"""Where versions before schema 8 kept the daily counts in a stream's state: dropped from it when the stream's next
page is processed (its counts are not carried over)."""

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def plausibility_settings(table: Any, source: str) -> PlausibilitySettings:
    """The ``[plausibility]`` table validated, the shipped rules merged in; errors name the key."""
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [plausibility] must be a table")
    rules_in = table.get("rules", {})
    if not isinstance(rules_in, Mapping):
        raise ConfigError(f"{source}: plausibility.rules must be a table of rules by name")
    merged: dict[str, Any] = {name: dict(rule) for name, rule in DEFAULT_RULES.items()}
    for name, rule in rules_in.items():
        if not (name[:1].isalpha() and set(name) <= _NAME_OK and len(name) <= 64):
            raise ConfigError(f"{source}: plausibility.rules.{name}: a rule name is lower-case letters, digits and _")
        if not isinstance(rule, Mapping):
            raise ConfigError(f"{source}: plausibility.rules.{name} must be a table")
        if name not in merged:
            missing = [k for k in ("kind", "scenarios", "limit") if k not in rule]
            if missing:
                raise ConfigError(
                    f"{source}: plausibility.rules.{name} is not a shipped rule ({', '.join(DEFAULT_RULES)}), so it "
                    f"needs {', '.join(missing)}"
                )
        merged[name] = {**merged.get(name, {}), **rule}
    try:
        return PlausibilitySettings.model_validate({**table, "rules": merged})
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in ("plausibility", *err["loc"]))
            parts.append(f"{loc}: {err['msg']}")
        raise ConfigError(f"{source}: {'; '.join(parts)}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired on one record."""

    rule: str
    action: str
    message: str
    pointer: str

    def problem(self) -> Problem:
        return Problem(self.pointer, f"plausibility rule {self.rule}: {self.message}", "plausibility")

    def as_record(self, action: str | None = None) -> dict[str, str]:
        return {"rule": self.rule, "action": action or self.action, "message": self.message}


class Plausibility:
    """The configured rules, indexed by scenario (``check`` runs in the pipeline for every valid record)."""

    def __init__(self, settings: PlausibilitySettings) -> None:
        self.settings = settings
        by_scenario: dict[str, list[tuple[str, RuleSettings]]] = {}
        if settings.enabled:
            for name, rule in settings.rules.items():
                if rule.action != "off":
                    for scenario in rule.scenarios:
                        by_scenario.setdefault(scenario, []).append((name, rule))
        self._by_scenario = by_scenario
        # What check() needs of each rule, looked up once (it runs for every record).
        self._checks: dict[str, tuple[tuple[_Check, float, str, str], ...]] = {
            scenario: tuple((_KINDS[rule.kind], rule.limit, name, rule.action) for name, rule in rules)
            for scenario, rules in by_scenario.items()
        }
        self._per_day = {
            scenario: names
            for scenario, rules in by_scenario.items()
            if (names := tuple(name for name, rule in rules if rule.kind == "max_per_day"))
        }
        self._pending: WeakKeyDictionary[StreamContext, _Pending] = WeakKeyDictionary()

    def day_keys(self, docs: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
        """The (rule, day, subject) keys the ``max_per_day`` rules count ``docs`` under."""
        return set(chain.from_iterable(self._doc_keys(docs)))

    def _doc_keys(self, docs: Iterable[Mapping[str, Any]]) -> list[tuple[tuple[str, str, str], ...]]:
        """Each document's (rule, day, subject) keys, in the order of its ``max_per_day`` rules (``()``: none)."""
        per_day = self._per_day
        if not per_day:
            return [() for _ in docs]
        out: list[tuple[tuple[str, str, str], ...]] = []
        append = out.append
        get = per_day.get
        for doc in docs:
            names = get(doc["scenario"])
            if names is None:
                append(())
                continue
            day, subject = _day_subject(doc)
            if len(names) == 1:
                append(((names[0], day, subject),))
            else:
                append(tuple((name, day, subject) for name in names))
        return out

    def counts(
        self,
        ctx: StreamContext,
        docs: Collection[Mapping[str, Any]],
        committed: Callable[[set[tuple[str, str, str]]], list[DayCount]],
    ) -> DayCounts:
        """The day counts a page's ``docs`` are checked against: ``committed`` (the store's, read once for the
        page's keys) and those of the stream's pages processed on ``ctx`` and not committed yet.

        The counts remember each document's keys (:meth:`check` does not work them out again for it)."""
        doc_keys = self._doc_keys(docs)
        keys = set(chain.from_iterable(doc_keys))
        counts = DayCounts(committed(keys) if keys else [], self._pending.setdefault(ctx, []), keys)
        counts.doc_keys = doc_keys
        return counts

    def check(
        self,
        doc: Mapping[str, Any],
        counts: DayCounts | None = None,
        keys: tuple[tuple[str, str, str], ...] | None = None,
    ) -> list[Finding]:
        """The rules that fire on a record document; ``max_per_day`` counts it in ``counts``. ``keys``: the
        document's keys as :meth:`counts` worked them out (``counts.doc_keys``, in the page's order), else made
        here."""
        checks = self._checks.get(doc["scenario"])
        if not checks:
            return []
        found: list[Finding] = []
        per_day = 0
        for kind, limit, name, action in checks:
            if kind is _max_per_day:  # with the key counts() worked out for the document, when it did
                message = _max_per_day(doc, limit, name, counts, keys[per_day] if keys else None)
                per_day += 1
            else:
                message = kind(doc, limit, name, counts)
            if message is not None:
                text, pointer = message
                found.append(Finding(name, action, text, pointer))
        return found


def _max_activity(doc: Mapping[str, Any], limit: float, name: str, counts: DayCounts | None) -> tuple[str, str] | None:
    activity = doc["activity"]
    if activity["quantity"] > limit:
        unit = activity["unit"]
        return f"{activity['quantity']:g} {unit} is above the limit of {limit:g} {unit}", "/activity/quantity"
    return None


def _max_speed(doc: Mapping[str, Any], limit: float, name: str, counts: DayCounts | None) -> tuple[str, str] | None:
    period = doc["period"]
    if period["start"] == period["end"]:
        return None
    hours = (datetime.fromisoformat(period["end"]) - datetime.fromisoformat(period["start"])).total_seconds() / 3600
    quantity = doc["activity"]["quantity"]
    if hours <= 0:
        return f"{quantity:g} {doc['activity']['unit']} in a period that ends before it starts", "/period"
    speed = quantity / hours
    if speed > limit:
        return (
            f"{quantity:g} {doc['activity']['unit']} in {hours * 60:.1f} min is {speed:.1f} km/h, above the limit "
            f"of {limit:g} km/h",
            "/period",
        )
    return None


_Seen = dict[tuple[str, str, str], dict[str, int]]
"""(rule, day, subject) -> record id -> its place in the subject's day."""

_Pending = list[list[DayCount]]
"""The records counted first by a stream's pages processed on one context and not committed yet (each page's
:attr:`DayCounts.added`, in the order the pages were processed)."""


def _day_subject(doc: Mapping[str, Any]) -> tuple[str, str]:
    """The day (the period start's own) and the subject (a pseudonym prefix) a record is counted under."""
    return str(doc["period"]["start"])[:10], doc["subject"]["pseudonym"][:16]


class DayCounts:
    """The ``max_per_day`` counts one page is checked against, and the records it counts for the first time
    (``added``: the page's :attr:`~tanpuhui.hub.store.base.PageWrite.day_counts`).

    ``uncommitted``: the records counted first by the pages processed before this one and not committed yet
    (:data:`_Pending`; only those under ``keys`` count here): this page's join them until :meth:`committed`."""

    def __init__(
        self, committed: Iterable[DayCount], uncommitted: _Pending, keys: Collection[tuple[str, str, str]]
    ) -> None:
        seen: _Seen = {}
        for c in committed:
            seen.setdefault((c.rule, c.day, c.subject), {})[c.record_id] = c.n
        for page in uncommitted:
            for c in page:
                key = (c.rule, c.day, c.subject)
                if key in keys:
                    seen.setdefault(key, {})[c.record_id] = c.n
        self._seen = seen
        self._top: dict[tuple[str, str, str], int] = {}
        """key -> the highest place in ``_seen[key]``, once a second record was placed under it (the first is 1)."""
        self.added: list[DayCount] = []
        self.doc_keys: list[tuple[tuple[str, str, str], ...]] = []
        """Each document's keys (:meth:`Plausibility.counts`), in the page's order."""
        self._pending = uncommitted
        uncommitted.append(self.added)  # pending until committed()

    def place(self, rule: str, day: str, subject: str, record_id: str) -> int:
        """The record's place among the subject's distinct records of the day (a record counted before keeps its)."""
        return self.place_key((rule, day, subject), record_id)

    def place_key(self, key: tuple[str, str, str], record_id: str) -> int:
        """:meth:`place` by the (rule, day, subject) key."""
        places = self._seen.get(key)
        if places is None:  # the subject's first record of the day
            self._seen[key] = {record_id: 1}
            n = 1
        else:
            known = places.get(record_id)
            if known is not None:
                return known
            top = self._top.get(key)
            n = places[record_id] = self._top[key] = (max(places.values()) if top is None else top) + 1
        self.added.append(DayCount(key[0], key[1], key[2], record_id, n))
        return n

    def committed(self) -> None:
        """The page's counts are in the store now: later pages read them from there."""
        pending = self._pending
        for i, added in enumerate(pending):
            if added is self.added:
                del pending[i]
                break
        self.doc_keys = []


def _max_per_day(
    doc: Mapping[str, Any],
    limit: float,
    name: str,
    counts: DayCounts | None,
    key: tuple[str, str, str] | None = None,
) -> tuple[str, str] | None:
    """The record's place in its subject's day, above ``limit``; ``key``: its (rule, day, subject) when known."""
    if counts is None:
        raise ValueError(f"plausibility rule {name} counts records per day: check() needs the page's DayCounts")
    if key is None:
        key = (name, *_day_subject(doc))
    n = counts.place_key(key, doc["record_id"])
    if n > limit:
        return f"record {n} of this person on {key[1]}, above the limit of {limit:g} a day", "/subject"
    return None


def _max_vs_baseline(
    doc: Mapping[str, Any], limit: float, name: str, counts: DayCounts | None
) -> tuple[str, str] | None:
    baseline = doc["quantification"].get("baseline")
    if baseline is None or baseline["quantity"] <= 0:
        return None
    quantity = doc["activity"]["quantity"]
    ratio = quantity / baseline["quantity"]
    if ratio > limit:
        return (
            f"{quantity:g} {doc['activity']['unit']} is {ratio:.1f} x the baseline of {baseline['quantity']:g}, above "
            f"{limit:g} x",
            "/activity/quantity",
        )
    return None


def _max_reduction(doc: Mapping[str, Any], limit: float, name: str, counts: DayCounts | None) -> tuple[str, str] | None:
    kg = doc["quantification"]["reduction_kgco2e"]
    if kg > limit:
        return f"{kg:g} kgCO2e is above the limit of {limit:g} kgCO2e a record", "/quantification/reduction_kgco2e"
    return None


_KINDS = {
    "max_activity": _max_activity,
    "max_speed_kmh": _max_speed,
    "max_per_day": _max_per_day,
    "max_activity_vs_baseline": _max_vs_baseline,
    "max_reduction_kg": _max_reduction,
}
