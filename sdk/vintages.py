"""Factor vintages: which value of a factor published per data year applies to an activity.

The rule: a vintage's ``valid_from``..``valid_to`` (inclusive; either may be open) are the *activity* dates it
values, and the vintages of one factor name must not overlap. An activity's date (its period start, in the offset
the partner gave) picks the one vintage whose window holds it; a date no vintage holds is :class:`NoFactorVintage`,
an :class:`~tanpuhui.sdk.ItemRejected` (the item is quarantined with the factor, the date and the vintages there
are), never another year's value. How the shipped grid vintages get their windows: ``tanpuhui.sdk.factors``.

:func:`vintage_problems` checks a record afterwards: every factor it applied with a window covers the record's
``factors_as_of``, which is the date of its period start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from .errors import ItemRejected, MethodologyError, Problem

if TYPE_CHECKING:
    from .methodology import Factor

__all__ = ["FactorVintages", "NoFactorVintage", "day_text", "describe_vintage", "vintage_problems"]

_OPEN_END = "9999-12-31"


class NoFactorVintage(ItemRejected, MethodologyError):
    """No vintage of a factor covers the activity's date: the item is quarantined (problem keyword
    ``factor_vintage``) until a vintage for that date is configured, then replayed."""

    def __init__(self, methodology_key: str, name: str, day: str, vintages: Sequence[Factor]) -> None:
        self.factor = name
        self.day = day
        method_id = methodology_key.split("@", 1)[0]
        listed = "; ".join(describe_vintage(f) for f in vintages) or "none"
        message = (
            f"no vintage of factor {name} ({methodology_key}) covers the activity date {day}; vintages: {listed}. "
            f'Add one for that date under [[methodologies."{method_id}".vintages.{name}]] in hub.toml, then replay '
            "this entry"
        )
        super().__init__([Problem("", message, "factor_vintage")])


def describe_vintage(factor: Factor) -> str:
    """``data year 2022, 2024-01-01..2024-12-31: 0.6782 kgCO2/kWh``."""
    year = f"data year {factor.data_year}, " if factor.data_year is not None else ""
    start = factor.valid_from.isoformat() if factor.valid_from else "(open)"
    end = factor.valid_to.isoformat() if factor.valid_to else "(open)"
    label = " (single or secondary source)" if factor.single_source else ""
    return f"{year}{start}..{end}: {factor.value:g} {factor.unit}{label}"


def day_text(on: date | str) -> str:
    """``YYYY-MM-DD`` of a date, or of an RFC 3339 date-time's text (its own offset's day)."""
    return on.isoformat()[:10] if isinstance(on, date) else on[:10]


def _window(factor: Factor) -> tuple[str, str]:
    start = factor.valid_from.isoformat() if factor.valid_from else ""
    return start, factor.valid_to.isoformat() if factor.valid_to else _OPEN_END


class FactorVintages:
    """A methodology's factors grouped by name: one value for every date, or dated vintages."""

    __slots__ = ("_by_name", "dated", "key")

    def __init__(self, methodology_key: str, factors: Sequence[Factor]) -> None:
        self.key = methodology_key
        by_name: dict[str, list[Factor]] = {}
        for factor in factors:
            by_name.setdefault(factor.name, []).append(factor)
        dated: list[str] = []
        for name, group in by_name.items():
            if len(group) == 1 and group[0].valid_from is None and group[0].valid_to is None:
                continue
            for f in group:
                if f.valid_from is None and f.valid_to is None:
                    raise MethodologyError(
                        f"methodology {methodology_key}: factor {name} has several values, one of them "
                        f"({f.value:g} {f.unit}) without valid_from/valid_to; every vintage needs its window"
                    )
                if f.valid_from and f.valid_to and f.valid_to < f.valid_from:
                    raise MethodologyError(
                        f"methodology {methodology_key}: factor {name} vintage {describe_vintage(f)} ends before "
                        "it starts"
                    )
            group.sort(key=_window)
            for before, after in pairwise(group):
                if _window(before)[1] >= _window(after)[0]:
                    raise MethodologyError(
                        f"methodology {methodology_key}: factor {name} vintages overlap: "
                        f"{describe_vintage(before)} and {describe_vintage(after)}"
                    )
            dated.append(name)
        self._by_name = by_name
        self.dated: tuple[str, ...] = tuple(dated)

    def choose(self, day: str | None) -> tuple[Factor, ...]:
        """One factor per name for an activity on ``day`` (None: only when no factor is dated)."""
        if day is not None:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise MethodologyError(f"methodology {self.key}: {day!r} is not a date (YYYY-MM-DD)") from None
        return tuple(self._covering(name, group, day) for name, group in self._by_name.items())

    def pick(self, name: str, day: str | None) -> Factor:
        """The vintage of ``name`` on ``day``; without a day, the latest vintage."""
        group = self._by_name[name]
        if day is None:
            return group[-1]
        return self._covering(name, group, day)

    def _covering(self, name: str, group: list[Factor], day: str | None) -> Factor:
        if name not in self.dated:
            return group[0]
        if day is None:
            raise MethodologyError(f"methodology {self.key}: factor {name} comes in vintages; a date is needed")
        for factor in group:
            start, end = _window(factor)
            if start <= day <= end:
                return factor
        raise NoFactorVintage(self.key, name, day, group)


def vintage_problems(record: Mapping[str, Any]) -> list[str]:
    """What is wrong with a record's factor vintages (empty: nothing): a factor applied with a validity window
    must cover ``quantification.factors_as_of``, and that must be the day of ``period.start``."""
    q = record["quantification"]
    problems: list[str] = []
    as_of = q.get("factors_as_of")
    dated = [f for f in q["factors"] if "valid_from" in f or "valid_to" in f]
    if not dated:
        return problems
    start = str(record["period"]["start"])[:10]
    if as_of is None:
        return [f"factors {', '.join(f['name'] for f in dated)} have validity windows but no factors_as_of"]
    if as_of != start:
        problems.append(f"factors_as_of {as_of} is not the day the period starts ({start})")
    for f in dated:
        if not (f.get("valid_from", "") <= as_of <= f.get("valid_to", _OPEN_END)):
            problems.append(
                f"factor {f['name']} valid {f.get('valid_from', '(open)')}..{f.get('valid_to', '(open)')} does not "
                f"cover {as_of}"
            )
    return problems
