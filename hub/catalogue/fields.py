"""The fields of a JSON Schema as a partner reads them: one row per property, constraints said in words.

The walk follows ``properties`` into nested objects and into the objects of arrays (``items``), and reads a local
``$ref`` (``#/$defs/...``) for the type and constraints of a property that only points there. The same rows feed the
catalogue's field tables and the test that every property is described.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "constraints_in_words", "fields_of", "type_in_words"]

_WORDS = {
    "minLength": "at least {} character",
    "maxLength": "at most {} character",
    "minimum": "≥ {}",
    "maximum": "≤ {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "minItems": "at least {} item",
    "maxItems": "at most {} item",
    "pattern": "matches the regular expression {}",
    "format": "format {}",
    "contentEncoding": "encoded as {}",
}
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_FORMATS = {
    "date-time": "RFC 3339 date-time with offset",
    "date": "calendar date YYYY-MM-DD",
    "email": "e-mail address",
    "uri": "URI",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One property of a schema, ready for a field table."""

    pointer: str
    """JSON pointer of the property's subschema in the schema (``/properties/source/properties/adapter``)."""
    name: str
    """Dotted path as a document holds it: ``source.adapter``, ``lines[].stops[].km``."""
    type: str
    required: bool
    constraints: list[str]
    personal_data: str | None
    """The ``x-personal-data`` kind (``mobile``, ``resident_id``, ...) or None."""
    description: str | None
    depth: int


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """The subschema with a local ``$ref`` merged under it (the node's own keywords win)."""
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, Mapping) else {}
    return {**target, **node} if isinstance(target, Mapping) else node


def type_in_words(node: Mapping[str, Any]) -> str:
    """``string``, ``integer or null``, ``one of "a", "b"``, ``constant "1.0"``, ``array of object``."""
    if "const" in node:
        return f"constant {_literal(node['const'])}"
    if "enum" in node:
        return "one of " + ", ".join(_literal(v) for v in node["enum"])
    kind = node.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []
    words = []
    for k in kinds:
        if k == "array" and isinstance(node.get("items"), Mapping):
            words.append(f"array of {type_in_words(node['items']) or 'any'}")
        else:
            words.append(str(k))
    return " or ".join(words) if words else "any"


def _literal(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else "null" if value is None else str(value).lower()


def constraints_in_words(node: Mapping[str, Any]) -> list[str]:
    """The validation keywords of one subschema, each said in words (not the type, not nested properties)."""
    out = []
    for key, template in _WORDS.items():
        if key in node:
            value = node[key]
            if key == "format":
                value = _FORMATS.get(str(value), str(value))
            elif key == "pattern":
                value = f"`{value}`"
            words = template.format(value)
            if key in _COUNTS and value != 1:
                words += "s"
            out.append(words)
    if node.get("additionalProperties") is False:
        out.append("no other properties")
    return out


def fields_of(schema: Mapping[str, Any]) -> list[Field]:
    """Every property of ``schema``, depth first in document order."""
    return list(_walk(schema, schema, "", "", 0))


def _walk(root: Mapping[str, Any], node: Mapping[str, Any], pointer: str, prefix: str, depth: int) -> Iterator[Field]:
    props = node.get("properties")
    if not isinstance(props, Mapping):
        return
    required = set(node.get("required", ()))
    for name, raw in props.items():
        if not isinstance(raw, Mapping):
            continue
        sub = _resolve(root, raw)
        here = f"{pointer}/properties/{name.replace('~', '~0').replace('/', '~1')}"
        path = f"{prefix}{name}"
        personal = sub.get("x-personal-data")
        yield Field(
            pointer=here,
            name=path,
            type=type_in_words(sub),
            required=name in required,
            constraints=constraints_in_words(sub),
            personal_data=str(personal) if personal is not None else None,
            description=str(raw["description"]) if "description" in raw else None,
            depth=depth,
        )
        yield from _walk(root, sub, here, f"{path}.", depth + 1)
        items = sub.get("items")
        if isinstance(items, Mapping):
            yield from _walk(root, _resolve(root, items), f"{here}/items", f"{path}[].", depth + 1)
