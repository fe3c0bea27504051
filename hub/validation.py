"""Schema registry and validation reports.

Validators are compiled once (jsonschema-rs, formats on) and reused; the same code produces the error reports of
the pipeline (quarantine), ``tanpuhui validate`` and the sidecar's validate endpoint. Each problem is a JSON
pointer into the document plus a message, with anything shaped like a resident ID or mobile number masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson

from tanpuhui.schemas import builtin_names, load_builtin
from tanpuhui.sdk import Problem, SchemaError, redact

__all__ = ["CompiledSchema", "DocumentReport", "SchemaRegistry", "json_pointer", "read_documents"]

RECORD_SCHEMA = "reduction-record"
_MAX_MESSAGE = 300


def json_pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 pointer from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class CompiledSchema:
    """One schema, compiled once."""

    __slots__ = ("_validator", "document", "is_valid", "name", "personal_fields")

    def __init__(self, name: str, document: Mapping[str, Any]) -> None:
        self.name = name
        self.document = document
        try:
            jsonschema_rs.meta.validate(dict(document))
            self._validator = jsonschema_rs.validator_for(dict(document), validate_formats=True)
        except Exception as exc:  # jsonschema_rs raises ValidationError / ValueError for bad schemas
            raise SchemaError(f"schema {name!r} is not a valid JSON Schema: {exc}") from None
        self.is_valid = self._validator.is_valid
        props = document.get("properties", {})
        self.personal_fields: dict[str, str] = {
            k: str(v["x-personal-data"]) for k, v in props.items() if isinstance(v, dict) and "x-personal-data" in v
        }

    def problems(self, instance: Any) -> list[Problem]:
        """Every error as (pointer, message, keyword); empty when valid."""
        out = []
        for err in self._validator.iter_errors(instance):
            message = err.message
            if len(message) > _MAX_MESSAGE:
                message = message[:_MAX_MESSAGE] + "…"
            keyword = str(err.schema_path[-1]) if err.schema_path else ""
            out.append(Problem(json_pointer(err.instance_path), redact(message), keyword))
        return out


class SchemaRegistry:
    """Built-in schemas plus every registered adapter's partner schemas, by name."""

    def __init__(self, adapter_schemas: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._docs: dict[str, Mapping[str, Any]] = {n: load_builtin(n) for n in builtin_names()}
        for name, doc in (adapter_schemas or {}).items():
            self._docs.setdefault(name, doc)
        self._compiled: dict[str, CompiledSchema] = {}

    def names(self) -> list[str]:
        return sorted(self._docs)

    def document(self, name: str) -> Mapping[str, Any]:
        try:
            return self._docs[name]
        except KeyError:
            raise SchemaError(f"unknown schema {name!r}; known: {', '.join(self.names())}") from None

    def get(self, name: str) -> CompiledSchema:
        compiled = self._compiled.get(name)
        if compiled is None:
            compiled = self._compiled[name] = CompiledSchema(name, self.document(name))
        return compiled


@dataclass(frozen=True, slots=True)
class DocumentReport:
    """Validation result of one document of an input (``index`` within the file, ``line`` for JSON Lines)."""

    index: int
    line: int | None
    problems: list[Problem]

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index,
            "valid": self.valid,
            "errors": [p.as_dict() for p in self.problems],
        }
        if self.line is not None:
            data["line"] = self.line
        return data


def read_documents(data: bytes, source: str) -> Iterator[tuple[int, int | None, Any]]:
    """Yield ``(index, line, document)`` from a JSON document, a JSON array, or JSON Lines.

    A line that is not JSON yields a :class:`Problem` instead of a document (so the rest are still checked).
    """
    text = data.lstrip()
    if not text:
        raise SchemaError(f"{source}: empty input; expected a JSON document, a JSON array or JSON Lines")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = _NOT_JSON
    if doc is not _NOT_JSON:
        if isinstance(doc, list):
            for i, item in enumerate(doc):
                yield i, None, item
        else:
            yield 0, None, doc
        return
    index = 0
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield index, lineno, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield index, lineno, Problem("", f"line {lineno} is not JSON: {exc}", "json")
        index += 1


_NOT_JSON = object()
