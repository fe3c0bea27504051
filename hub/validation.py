"""Schema registry and validation reports.

Validators are compiled once (jsonschema-rs, formats on) and reused; the same code produces the error reports of
the pipeline (quarantine), ``tanpuhui validate`` and the sidecar's validate endpoint. Each problem is a JSON
pointer into the document plus a message, with anything shaped like a resident ID or mobile number masked.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import jsonschema_rs
import orjson

from tanpuhui.schemas import builtin_names, load_builtin
from tanpuhui.sdk import Problem, SchemaError, redact

__all__ = [
    "MAX_ELEMENT_BYTES",
    "CompiledSchema",
    "DocumentReport",
    "SchemaRegistry",
    "iter_documents",
    "json_pointer",
    "read_documents",
    "report_documents",
]

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
    """:func:`iter_documents` of bytes in memory (a request body)."""
    return iter_documents(io.BytesIO(data), source)


def iter_documents(stream: BinaryIO, source: str) -> Iterator[tuple[int, int | None, Any]]:
    """Yield ``(index, line, document)`` from a JSON document, a JSON array, or JSON Lines, read as it goes.

    JSON Lines are read a line at a time and a JSON array an element at a time, so memory holds one document
    whatever the input's size; only a single JSON document written over several lines is read whole (it is
    validated whole anyway). A line that is not JSON yields a :class:`Problem` instead of a document (so the rest
    are still checked); in an array, an element that is not JSON ends the array (nothing after it can be found).
    """
    source_input = _Input(stream)
    first = source_input.peek()
    if first is None:
        raise SchemaError(f"{source}: empty input; expected a JSON document, a JSON array or JSON Lines")
    if first == ord("["):
        yield from _array_items(source_input)
    else:
        yield from _lines(source_input)


def report_documents(
    documents: Iterable[tuple[int, int | None, Any]], schema: CompiledSchema
) -> Iterator[DocumentReport]:
    """One report per document (of :func:`iter_documents`), as they come."""
    for index, line, doc in documents:
        if isinstance(doc, Problem):
            yield DocumentReport(index, line, [doc])
        else:
            yield DocumentReport(index, line, [] if schema.is_valid(doc) else schema.problems(doc))


MAX_ELEMENT_BYTES = 64 * 1024 * 1024
"""The largest element of a JSON array read as a stream (a record is a few KB)."""
_CHUNK = 1024 * 1024


class _Input:
    """A binary stream with what was read ahead to find its first significant byte put back in front."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.pending = b""

    def peek(self) -> int | None:
        """The first byte that is not white space (nothing is consumed), None for an empty input."""
        while True:
            stripped = self.pending.lstrip()
            if stripped:
                return stripped[0]
            chunk = self.stream.read(64 * 1024)
            if not chunk:
                return None
            self.pending += chunk

    def read(self, size: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending[:size], self.pending[size:]
            return out
        return self.stream.read(size)

    def readline(self) -> bytes:
        if self.pending:
            end = self.pending.find(b"\n")
            if end >= 0:
                line, self.pending = self.pending[: end + 1], self.pending[end + 1 :]
                return line
            line, self.pending = self.pending, b""
            return line + self.stream.readline()
        return self.stream.readline()

    def lines(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _lines(source_input: _Input) -> Iterator[tuple[int, int | None, Any]]:
    """JSON Lines, or one JSON document (on one line, or over several)."""
    lines = enumerate(source_input.lines(), start=1)
    seen: list[bytes] = []
    lineno, first_line = 0, b""
    while not first_line.strip():  # the input has a byte that is not white space: the loop ends there
        lineno, first_line = next(lines)
        seen.append(first_line)
    try:
        first = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        # A document over several lines (validated whole: read whole), or JSON Lines whose first line is broken.
        data = b"".join(seen) + b"".join(line for _, line in lines)
        yield from _whole(data)
        return
    for lineno_next, line in lines:
        if line.strip():
            yield 0, lineno, first
            yield 1, lineno_next, _line_document(line, lineno_next)
            index = 2
            for n, more in lines:
                if more.strip():
                    yield index, n, _line_document(more, n)
                    index += 1
            return
    yield 0, None, first  # the only document


def _line_document(line: bytes, lineno: int) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Problem("", f"line {lineno} is not JSON: {exc}", "json")


def _whole(data: bytes) -> Iterator[tuple[int, int | None, Any]]:
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
        if line.strip():
            yield index, lineno, _line_document(line, lineno)
            index += 1


def _array_items(source_input: _Input) -> Iterator[tuple[int, int | None, Any]]:
    """The elements of a JSON array, one at a time: the standard library's ``raw_decode`` finds where each ends
    (on text decoded a chunk at a time), orjson reads it (as everywhere else: same numbers, same refusals)."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buf = ""
    pos = 0
    eof = False

    def fill(at_least: int = _CHUNK) -> None:
        nonlocal buf, pos, eof
        chunk = source_input.read(max(_CHUNK, at_least))
        eof = not chunk
        buf = buf[pos:] + utf8.decode(chunk, final=eof)
        pos = 0

    def significant() -> str | None:
        """The next character that is not white space (consumed up to it, not past it), None at the end."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if eof:
                return None
            fill()

    def stop(index: int, why: str) -> tuple[int, None, Problem]:
        return index, None, Problem("", why, "json")

    index = 0
    try:
        significant()
        pos += 1  # the "["
        if significant() == "]":
            pos += 1
        else:
            while True:
                if significant() is None:
                    yield stop(index, f"the JSON array ends before element {index} (expected a value)")
                    return
                while True:
                    try:
                        _, end = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError as exc:
                        truncated = (
                            exc.msg.startswith("Unterminated string") or "escape" in exc.msg or len(buf) - exc.pos < 32
                        )
                        if eof or not truncated:
                            yield stop(index, f"element {index} of the JSON array is not JSON: {exc.msg}")
                            return
                    else:
                        if end < len(buf) or eof:
                            break  # else a number may go on in the next chunk
                    if len(buf) - pos > MAX_ELEMENT_BYTES:
                        yield stop(index, f"element {index} of the JSON array is larger than {MAX_ELEMENT_BYTES} bytes")
                        return
                    fill(len(buf) - pos)  # at least double: a large element is not re-scanned chunk after chunk
                try:
                    yield index, None, orjson.loads(buf[pos:end])
                except orjson.JSONDecodeError as exc:
                    yield index, None, Problem("", f"element {index} of the JSON array is not JSON: {exc}", "json")
                index += 1
                pos = end
                after = significant()
                if after == ",":
                    pos += 1
                    continue
                if after == "]":
                    pos += 1
                    break
                yield stop(index, f"the JSON array is not closed after element {index - 1} (expected , or ])")
                return
        if significant() is not None:
            yield stop(index, "unexpected data after the JSON array (a file that starts with [ holds one array)")
    except UnicodeDecodeError as exc:
        yield stop(index, f"not UTF-8: {exc.reason}")


_NOT_JSON = object()
