"""Versioned, cited methodologies and the formula language they share.

A methodology is an id + semantic version + scenario + formula + factors. Each factor carries its value, unit,
source and validity; a factor with no official figure is a labelled, configurable default (``default=True``).
Formulas are plain arithmetic over ``activity``, ``baseline`` and the factor names (``+ - * /``, parentheses,
``min``, ``max``), compiled once. The record carries the formula and the factors used, so
:func:`recompute` gives the reduction back from the record alone.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from typing import Any

from .errors import MethodologyError
from .vintages import FactorVintages, NoFactorVintage, day_text

__all__ = ["Factor", "Formula", "Methodology", "NoFactorVintage", "Quantified", "recompute"]

_QUANTIFIED_CACHE = 16_384

_ALLOWED_FUNCS = {"min": min, "max": max}
_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.USub,
    ast.UAdd,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Call,
)


class Formula:
    """A compiled arithmetic expression. Unknown names and any other syntax are rejected at construction."""

    __slots__ = ("_code", "_fn", "names", "text")

    def __init__(self, text: str) -> None:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise MethodologyError(f"formula {text!r} is not valid arithmetic: {exc.msg}") from None
        names: set[str] = set()
        called: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise MethodologyError(f"formula {text!r}: {type(node).__name__} is not allowed")
            if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
                raise MethodologyError(f"formula {text!r}: only numeric constants are allowed")
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in _ALLOWED_FUNCS or node.keywords:
                    raise MethodologyError(f"formula {text!r}: only min(...) and max(...) may be called")
                # min(x) / max() would fail only when evaluated, with a TypeError.
                if len(node.args) < 2:
                    raise MethodologyError(f"formula {text!r}: {node.func.id}(...) needs at least two arguments")
                called.add(id(node.func))
            elif isinstance(node, ast.Name):
                if node.id in _ALLOWED_FUNCS and id(node) not in called:
                    raise MethodologyError(f"formula {text!r}: {node.id} may only be called")
                if node.id not in _ALLOWED_FUNCS:
                    names.add(node.id)
        self.text = text
        self.names = frozenset(names)
        self._code = compile(tree, f"<formula {text}>", "eval")
        # The same checked expression as a function of keyword arguments: ~10x cheaper than eval() per call.
        params = ", ".join(sorted(self.names))
        lambda_code = compile(f"lambda *, {params}: ({text})" if params else f"lambda: ({text})", "<formula>", "eval")
        self._fn: Callable[..., float] = eval(lambda_code, {"__builtins__": {}, **_ALLOWED_FUNCS})

    def evaluate(self, variables: Mapping[str, float]) -> float:
        """Evaluate with the given variables; a missing one is a :class:`MethodologyError`."""
        missing = self.names - variables.keys()
        if missing:
            raise MethodologyError(f"formula {self.text!r} needs {', '.join(sorted(missing))}")
        try:
            return float(self._fn(**{name: variables[name] for name in self.names}))
        except ZeroDivisionError:
            raise MethodologyError(f"formula {self.text!r} divided by zero") from None


@dataclass(frozen=True, slots=True)
class Factor:
    """One emission or conversion factor with its citation.

    ``default`` marks a value for which no official figure was found: it is shipped so the hub works out of the
    box, and operators are expected to override it in hub.toml.

    A factor published per data year is a *vintage*: ``valid_from``..``valid_to`` (inclusive) are the activity dates
    it values, ``data_year`` the year its figure describes. A methodology may hold several vintages of one factor
    name with disjoint windows; it picks the one whose window holds the activity's date (``tanpuhui.sdk.vintages``).
    ``single_source`` labels a figure seen in a single or secondary source, not confirmed from the publication.
    ``derived`` labels a value computed from the item itself (e.g. a partner's reduction / activity), not cited.
    """

    name: str
    value: float
    unit: str
    source: str
    default: bool = False
    valid_from: date | None = None
    valid_to: date | None = None
    data_year: int | None = None
    single_source: bool = False
    derived: bool = False

    def as_record(self) -> dict[str, Any]:
        """The factor as a record's ``quantification.factors`` entry (validity and labels only when set)."""
        data: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
            "default": self.default,
        }
        if self.valid_from is not None:
            data["valid_from"] = self.valid_from.isoformat()
        if self.valid_to is not None:
            data["valid_to"] = self.valid_to.isoformat()
        if self.data_year is not None:
            data["data_year"] = self.data_year
        if self.single_source:
            data["single_source"] = True
        if self.derived:
            data["derived"] = True
        return data


@dataclass(frozen=True, slots=True)
class Quantified:
    """What :meth:`Methodology.quantify` returns; ``as_record()`` is the record's ``quantification``."""

    methodology: Methodology
    reduction_kgco2e: float
    baseline: dict[str, Any] | None
    document: dict[str, Any] | None = None
    """The ``quantification`` document as computed (the factors actually applied, the vintage date)."""

    def as_record(self) -> dict[str, Any]:
        """The record's ``quantification`` object: methodology id and version, formula, factors (those applied, with
        the vintage date), the reduction and the baseline."""
        if self.document is not None:
            return dict(self.document)
        data: dict[str, Any] = {
            "methodology_id": self.methodology.id,
            "methodology_version": self.methodology.version,
            "formula": self.methodology.formula.text,
            "factors": self.methodology.factors_record,
            "reduction_kgco2e": self.reduction_kgco2e,
        }
        if self.baseline is not None:
            data["baseline"] = self.baseline
        return data


class _Variant:
    """The methodology bound to one choice of factor vintages: the formula's function, the factors as recorded,
    and the no-baseline quantifications by activity (bounded; the formula is pure)."""

    __slots__ = ("as_of", "bound", "factors", "quantified")

    def __init__(self, formula: Formula, factors: tuple[Factor, ...], as_of: str | None) -> None:
        variables = {f.name: f.value for f in factors if f.name in formula.names}
        self.bound: Callable[..., float] = partial(formula._fn, **variables)
        self.factors = [f.as_record() for f in factors]
        self.as_of = as_of
        self.quantified: dict[float, dict[str, Any]] = {}


@dataclass(frozen=True)
class Methodology:
    """A versioned quantification method for one scenario.

    ``formula`` evaluates to kgCO2e from ``activity`` (in ``activity_unit``), ``baseline`` (when
    ``needs_baseline``) and the factors. Negative results are floored at zero: a behaviour never costs points.
    ``factors`` may hold several vintages of one factor name (disjoint validity windows): a quantification then
    needs the activity's date (``on``) and applies the vintage valid on it, or raises :class:`NoFactorVintage`.
    """

    id: str
    version: str
    scenario: str
    title: str
    formula: Formula
    factors: tuple[Factor, ...]
    activity_unit: str
    references: tuple[str, ...] = ()
    needs_baseline: bool = False
    baseline_unit: str | None = None
    factors_record: list[dict[str, Any]] = field(init=False, repr=False, compare=False)
    """Every factor, every vintage (for listings); a record carries only the ones applied."""
    _vintages: FactorVintages = field(init=False, repr=False, compare=False)
    _static: _Variant | None = field(init=False, repr=False, compare=False)
    _by_day: dict[str, _Variant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {f.name for f in self.factors}
        allowed = names | {"activity"} | ({"baseline"} if self.needs_baseline else set())
        unknown = self.formula.names - allowed
        if unknown:
            raise MethodologyError(
                f"methodology {self.key}: formula uses {', '.join(sorted(unknown))}, which are not factors"
            )
        vintages = FactorVintages(self.key, self.factors)
        object.__setattr__(self, "_vintages", vintages)
        object.__setattr__(self, "factors_record", [f.as_record() for f in self.factors])
        static = None if vintages.dated else _Variant(self.formula, vintages.choose(None), None)
        object.__setattr__(self, "_static", static)
        object.__setattr__(self, "_by_day", {})

    @property
    def key(self) -> str:
        """``id@version``."""
        return f"{self.id}@{self.version}"

    @property
    def vintaged(self) -> bool:
        """Whether some factor comes in dated vintages (a quantification then needs the activity's date)."""
        return self._static is None

    def factor(self, name: str, on: date | str | None = None) -> Factor:
        """The factor ``name``: the vintage valid ``on`` the given date, or (no date) its latest vintage."""
        if not any(f.name == name for f in self.factors):
            raise MethodologyError(f"methodology {self.key} has no factor {name!r}")
        return self._vintages.pick(name, None if on is None else day_text(on))

    def with_factors(self, overrides: Mapping[str, float], source: str) -> Methodology:
        """A copy with some factor values replaced (from configuration), cited as ``source``.

        An overridden factor becomes one value for every date: its vintages, if any, are replaced.
        """
        unknown = set(overrides) - {f.name for f in self.factors}
        if unknown:
            raise MethodologyError(f"methodology {self.key} has no factor(s) {', '.join(sorted(unknown))}")
        factors: list[Factor] = []
        for f in self.factors:
            if f.name not in overrides:
                factors.append(f)
            elif not any(g.name == f.name for g in factors):
                factors.append(Factor(f.name, float(overrides[f.name]), f.unit, source))
        return replace(self, factors=tuple(factors))

    def with_vintages(self, vintages: Sequence[Factor]) -> Methodology:
        """A copy with more vintages (e.g. a data year configured in hub.toml); windows must not overlap."""
        unknown = {f.name for f in vintages} - {f.name for f in self.factors}
        if unknown:
            raise MethodologyError(f"methodology {self.key} has no factor(s) {', '.join(sorted(unknown))}")
        return replace(self, factors=(*self.factors, *vintages))

    def quantify(
        self,
        activity: float,
        baseline: float | None = None,
        baseline_method: str = "",
        *,
        on: date | str | None = None,
    ) -> Quantified:
        """Compute the reduction for one activity quantity (and baseline, when the method needs one) on a date."""
        doc = self.quantification(activity, baseline, baseline_method, on=on)
        return Quantified(self, doc["reduction_kgco2e"], doc.get("baseline"), doc)

    def quantification(
        self,
        activity: float,
        baseline: float | None = None,
        baseline_method: str = "",
        *,
        on: date | str | None = None,
    ) -> dict[str, Any]:
        """The record's ``quantification`` document for one activity (the hot-path form of :meth:`quantify`).

        ``on``: the activity's date (``date`` or ``YYYY-MM-DD...``), needed when a factor comes in vintages.
        A new dict on every call (the caller may keep or change it); ``factors`` is shared and must not be changed.
        """
        variant = self._static or self._variant(on)
        if baseline is None:
            if self.needs_baseline:
                raise MethodologyError(f"methodology {self.key} needs a baseline")
            cache = variant.quantified
            cached = cache.get(activity)
            if cached is None:
                cached = self._quantify(variant, activity, None, "")
                if len(cache) >= _QUANTIFIED_CACHE:
                    cache.clear()
                cache[activity] = cached
            return cached.copy()
        return self._quantify(variant, activity, baseline, baseline_method)

    def _variant(self, on: date | str | None) -> _Variant:
        if on is None:
            raise MethodologyError(
                f"methodology {self.key}: factor(s) {', '.join(self._vintages.dated)} come in vintages; "
                "the activity's date is needed to pick one"
            )
        day = day_text(on)
        found = self._by_day.get(day)
        if found is None:
            found = _Variant(self.formula, self._vintages.choose(day), day)
            if len(self._by_day) >= _QUANTIFIED_CACHE:
                self._by_day.clear()
            self._by_day[day] = found
        return found

    def _quantify(
        self, variant: _Variant, activity: float, baseline: float | None, baseline_method: str
    ) -> dict[str, Any]:
        args: dict[str, float] = {}
        if "activity" in self.formula.names:
            args["activity"] = activity
        baseline_doc = None
        if baseline is not None:
            if "baseline" in self.formula.names:
                args["baseline"] = baseline
            baseline_doc = {
                "quantity": baseline,
                "unit": self.baseline_unit or self.activity_unit,
                "method": baseline_method or "unspecified",
            }
        try:
            value = max(0.0, round(float(variant.bound(**args)), 6))
        except ZeroDivisionError:
            raise MethodologyError(f"methodology {self.key}: formula {self.formula.text!r} divided by zero") from None
        doc: dict[str, Any] = {
            "methodology_id": self.id,
            "methodology_version": self.version,
            "formula": self.formula.text,
            "factors": variant.factors,
            "reduction_kgco2e": value,
        }
        if variant.as_of is not None:
            doc["factors_as_of"] = variant.as_of
        if baseline_doc is not None:
            doc["baseline"] = baseline_doc
        return doc

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description for listings (every vintage of every factor, with its validity)."""
        return {
            "id": self.id,
            "version": self.version,
            "scenario": self.scenario,
            "title": self.title,
            "formula": self.formula.text,
            "activity_unit": self.activity_unit,
            "factors": [
                {"valid_from": None, "valid_to": None, "data_year": None, **f.as_record()} for f in self.factors
            ],
            "references": list(self.references),
        }


def recompute(record: Mapping[str, Any]) -> float:
    """Recompute a record's ``reduction_kgco2e`` from its own fields (formula, factors, activity, baseline and the
    ``deductions`` an overlap rule took off, as ``deducted``)."""
    q = record["quantification"]
    variables: dict[str, float] = {f["name"]: float(f["value"]) for f in q["factors"]}
    variables["activity"] = float(record["activity"]["quantity"])
    if "baseline" in q:
        variables["baseline"] = float(q["baseline"]["quantity"])
    if "deductions" in q:  # netted by an overlap rule: the formula uses their sum as ``deducted``
        variables["deducted"] = sum(float(d["quantity"]) for d in q["deductions"])
    return max(0.0, round(Formula(q["formula"]).evaluate(variables), 6))
