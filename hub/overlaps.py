"""No double credit: the ``[[hub.overlap]]`` rules and the keys by which a record takes part in them.

Two records of one subject may credit the same saving: a State Grid demand-response result (an event window of a
few hours, credited against the partner's event baseline) lies inside the same household's same-day
peak-saving record (the whole day, against its own trailing average), so the event's kWh would be credited twice.
A rule names the two scenarios: ``keep`` is credited in full, ``other`` gives way, either netted (the ``keep``
records' saving is deducted from it: ``quantification.deductions`` names each of them) or withheld. Records pair
when they have the same subject pseudonym (under the current key, or under an earlier key still configured: across
a key rotation) and their periods start on the same calendar day in the rule's ``timezone``. The store applies a
rule in the commit whichever record arrives first (:mod:`.store.revisions`): arriving second, the ``other`` record
is netted or held; arriving first, it is corrected or voided when its ``keep`` record comes. docs/verification.md
("No double credit") describes the rules and how to change them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .store.base import OverlapKey

__all__ = ["DEFAULT_OVERLAPS", "OverlapIndex", "OverlapRule", "saving_of", "utc_offset"]

_SCENARIO = r"^[a-z][a-z0-9_]{1,63}$"
_OFFSET = re.compile(r"^([+-])([0-9]{2}):([0-9]{2})$")


class OverlapRule(BaseModel):
    """One ``[[hub.overlap]]`` rule (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$", description="named in the records it nets or withholds")
    keep: str = Field(pattern=_SCENARIO, description="the scenario credited in full")
    other: str = Field(pattern=_SCENARIO, description="the scenario that gives way on the same subject and day")
    action: Literal["net", "withhold"] = Field(
        "net", description="net: deduct the keep record's saving from the other; withhold: credit the other not at all"
    )
    timezone: str = Field("+08:00", description="UTC offset of the calendar day records pair on")

    @field_validator("timezone")
    @classmethod
    def _offset(cls, value: str) -> str:
        if not _OFFSET.match(value):
            raise ValueError(f"expected a UTC offset like +08:00, got {value!r}")
        return value

    @model_validator(mode="after")
    def _two_scenarios(self) -> OverlapRule:
        if self.keep == self.other:
            raise ValueError(f"keep and other are both {self.keep!r}; a rule pairs two different scenarios")
        return self

    def tz(self) -> dt.timezone:
        tz = utc_offset(self.timezone)
        assert tz is not None  # validated
        return tz


def utc_offset(text: str) -> dt.timezone | None:
    """The time zone of a UTC offset like ``+08:00``; None when ``text`` is not one."""
    match = _OFFSET.match(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return dt.timezone(-delta if sign == "-" else delta)


DEFAULT_OVERLAPS: tuple[OverlapRule, ...] = (
    OverlapRule(
        name="demand_response_in_peak_saving",
        keep="demand_response",
        other="peak_electricity_saving",
        action="net",
        timezone="+08:00",
    ),
)
"""What applies when hub.toml has no ``[[hub.overlap]]`` (``overlap = []`` turns every rule off)."""


def saving_of(doc: Mapping[str, Any]) -> float:
    """The saving a record credits, in its activity unit: baseline - activity, or the activity without one."""
    quantity = float(doc["activity"]["quantity"])
    baseline = doc["quantification"].get("baseline")
    if baseline is None:
        return quantity
    return max(round(float(baseline["quantity"]) - quantity, 6), 0.0)


class OverlapIndex:
    """The rules by scenario: which keys a record document gets (none for most records: a dict lookup)."""

    def __init__(self, rules: Iterable[OverlapRule]) -> None:
        self._by_scenario: dict[str, list[tuple[OverlapRule, str, dt.timezone]]] = {}
        for rule in rules:
            other_role = "give" if rule.action == "net" else "withhold"
            for scenario, role in ((rule.keep, "keep"), (rule.other, other_role)):
                self._by_scenario.setdefault(scenario, []).append((rule, role, rule.tz()))
        self.scenarios = frozenset(self._by_scenario)
        """The scenarios some rule names: a record of another gets no keys (:meth:`keys` is ``()``)."""

    def keys(self, doc: Mapping[str, Any], seconds: int, aliases: Sequence[str] = ()) -> tuple[OverlapKey, ...]:
        """The record's keys: one per rule naming its scenario and per pseudonym of its subject, the current one
        and ``aliases``, those under the earlier keys still configured (so a pair straddling a key rotation still
        pairs: the record before it has the old pseudonym, the record after it has it as an alias)."""
        found = self._by_scenario.get(doc["scenario"])
        if not found:
            return ()
        subjects = (doc["subject"]["pseudonym"], *aliases)
        amount = saving_of(doc)
        keys: list[OverlapKey] = []
        at = datetime.fromtimestamp(seconds, UTC)
        for rule, role, tz in found:
            day = at.astimezone(tz).date().isoformat()
            keys.extend(OverlapKey(rule.name, f"{subject}:{day}", role, rule.action, amount) for subject in subjects)
        return tuple(keys)
