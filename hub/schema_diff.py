"""Schema evolution: the version in a schema's ``$id`` and what a change between two versions breaks.

Versioning rule (docs/schemas.md): a schema's ``$id`` ends in ``/v<MAJOR>.json``
(``https://schemas.tanpuhui.org/partners/transit-card/trip/v1.json``). A change that a document valid before may
fail, or that a consumer of valid documents may not expect, is *breaking* and gets a new major (``v2.json``, a new
``$id``); any other change keeps the ``$id``, so the ``$id`` a partner pinned stays valid for what it validated.

:func:`diff` compares two schema documents property by property (nested objects and array items included) and
classifies each change:

- breaking: a property removed, a property newly required, a type narrowed (a type dropped), an enum value dropped,
  a ``const`` changed, a ``pattern`` or ``format`` added or changed, a length/item/value bound added or tightened
  (``maximum`` lowered, ``minimum`` raised), ``additionalProperties`` turned false;
- not breaking: a property added as optional, a requirement dropped, a type widened, an enum value added, a bound
  loosened or removed, a pattern removed, a description, title or example changed.

The rules are structural: a rewritten ``pattern`` is breaking even when it accepts more, because whether one
regular expression accepts a superset of another is not decidable here; say so in a changelog and bump anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "diff", "schema_version"]

_VERSION = re.compile(r"/v(\d+)\.json$")

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "const")
_NOTES = ("description", "title", "examples", "x-invalid-examples", "$comment", "default")


def schema_version(document: Mapping[str, Any]) -> str | None:
    """The major version in ``$id`` (``"1"`` for ``.../v1.json``), or None when the ``$id`` carries none."""
    match = _VERSION.search(str(document.get("$id", "")))
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two versions of a schema."""

    pointer: str
    """JSON pointer into the schema (``/properties/deal_type``); empty for the root."""
    breaking: bool
    text: str

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'ok      '} {self.pointer or '/'}: {self.text}"


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change from ``old`` to ``new``, breaking ones flagged (see the module docstring for the rules)."""
    changes = list(_node(old, new, ""))
    old_version, new_version = schema_version(old), schema_version(new)
    if old.get("$id") != new.get("$id"):
        changes.append(Change("/$id", False, f"$id {old.get('$id')!r} -> {new.get('$id')!r}"))
    elif any(c.breaking for c in changes) and old_version is not None and old_version == new_version:
        changes.append(
            Change(
                "/$id",
                True,
                f"breaking changes keep the $id of v{old_version}: publish them as v{int(old_version) + 1}",
            )
        )
    return changes


def _types(node: Mapping[str, Any]) -> set[str] | None:
    kind = node.get("type")
    if kind is None:
        return None
    kinds = {kind} if isinstance(kind, str) else set(kind)
    if "number" in kinds:
        kinds.add("integer")  # integer is a subset of number: number -> integer narrows, integer -> number widens
    return kinds


def _node(old: Mapping[str, Any], new: Mapping[str, Any], at: str) -> Iterator[Change]:
    yield from _type_changes(old, new, at)
    yield from _bound_changes(old, new, at)
    yield from _object_changes(old, new, at)
    for key in ("items", "additionalItems"):
        if isinstance(old.get(key), Mapping) and isinstance(new.get(key), Mapping):
            yield from _node(old[key], new[key], f"{at}/{key}")
    for key in _NOTES:
        if (key in old and key in new and old[key] != new[key]) or (key in old) != (key in new):
            yield Change(at, False, f"{key} changed")


def _type_changes(old: Mapping[str, Any], new: Mapping[str, Any], at: str) -> Iterator[Change]:
    before, after = _types(old), _types(new)
    if before != after:
        if after is not None and (before is None or not after >= before):
            refused = "any" if before is None else ", ".join(sorted(before - after))
            yield Change(at, True, f"type narrowed: {old.get('type', 'any')} -> {new['type']} ({refused} refused)")
        else:
            yield Change(at, False, f"type widened: {old.get('type')} -> {new.get('type', 'any')}")
    if "enum" in new:
        if "enum" not in old:
            yield Change(at, True, f"enum added: only {new['enum']} accepted")
        else:
            dropped = [v for v in old["enum"] if v not in new["enum"]]
            added = [v for v in new["enum"] if v not in old["enum"]]
            if dropped:
                yield Change(at, True, f"enum values removed: {dropped}")
            if added:
                yield Change(at, False, f"enum values added: {added}")
    elif "enum" in old:
        yield Change(at, False, "enum removed: any value of the type accepted")


def _bound_changes(old: Mapping[str, Any], new: Mapping[str, Any], at: str) -> Iterator[Change]:
    for key in _EXACT:
        if key in new and (key not in old or old[key] != new[key]):
            was = f"{old[key]!r}" if key in old else "none"
            yield Change(at, True, f"{key} {'added' if key not in old else 'changed'}: {was} -> {new[key]!r}")
        elif key in old and key not in new:
            yield Change(at, False, f"{key} removed")
    for key in (*_LOWER_BOUNDS, *_UPPER_BOUNDS):
        if (key not in old and key not in new) or old.get(key) == new.get(key):
            continue
        lower = key in _LOWER_BOUNDS
        if key not in new:
            yield Change(at, False, f"{key} removed ({old[key]})")
        elif key not in old:
            yield Change(at, True, f"{key} added ({new[key]})")
        else:
            tighter = new[key] > old[key] if lower else new[key] < old[key]
            verb = ("raised" if lower else "lowered") if tighter else ("lowered" if lower else "raised")
            yield Change(at, tighter, f"{key} {verb}: {old[key]} -> {new[key]}")


def _object_changes(old: Mapping[str, Any], new: Mapping[str, Any], at: str) -> Iterator[Change]:
    old_props: Mapping[str, Any] = old.get("properties") or {}
    new_props: Mapping[str, Any] = new.get("properties") or {}
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    for name in new_required - old_required:
        yield Change(f"{at}/properties/{name}", True, "newly required")
    for name in old_required - new_required:
        yield Change(f"{at}/properties/{name}", False, "no longer required")
    closed = new.get("additionalProperties") is False
    for name, sub in old_props.items():
        here = f"{at}/properties/{name}"
        if name not in new_props:
            # Documents that sent it now fail where other properties are refused; elsewhere the field is ignored.
            yield Change(here, True, "property removed")
        elif isinstance(sub, Mapping) and isinstance(new_props[name], Mapping):
            yield from _node(sub, new_props[name], here)
    for name in new_props.keys() - old_props.keys():
        if name not in new_required:
            yield Change(f"{at}/properties/{name}", False, "optional property added")
    if closed and old.get("additionalProperties") is not False:
        yield Change(at, True, "additionalProperties turned false: properties not listed are refused")
    elif old.get("additionalProperties") is False and not closed:
        yield Change(at, False, "additionalProperties no longer false")
