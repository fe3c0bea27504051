"""JSON for whatever a partner sent: what orjson writes, and a writer that never fails for what it does not.

orjson reads nesting up to 1024 deep but writes only ~255, and refuses integers past 64 bits and lone surrogates
(which Python's json module and hand-built items may hold). An item that cannot be written must still be quarantined
(on its own, never failing its page), shown masked and stored; :func:`dumps_any` writes it as closely as it can be.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "dumps_any", "safe_text"]


def dumps_any(value: Any, option: int = 0) -> bytes:
    """JSON of anything an item may hold, never an error.

    What orjson writes; else (nesting deeper than orjson writes, integers past 64 bits, lone surrogates, objects
    that are not JSON) an iterative encoding in which lone surrogates become U+FFFD, non-finite numbers ``null``,
    other objects their text, and containers nested deeper than :data:`MAX_DEPTH` a note saying so: the result
    always reads back with ``orjson.loads``. For quarantine, an item is kept as closely as it can be written, and
    one that cannot be written exactly never blocks its page.
    """
    try:
        return orjson.dumps(value, option=option)  # ``option``: orjson's, e.g. OPT_INDENT_2 (for this path only)
    except TypeError:
        pass
    parts: list[str] = []
    stack: list[tuple[Iterator[Any], bool]] = []
    first: list[bool] = []

    def start(v: Any) -> None:
        if len(stack) >= MAX_DEPTH and isinstance(v, dict | list | tuple):
            parts.append(_CUT)
        elif isinstance(v, dict):
            parts.append("{")
            stack.append((iter(v.items()), True))
            first.append(True)
        elif isinstance(v, list | tuple):
            parts.append("[")
            stack.append((iter(v), False))
            first.append(True)
        else:
            parts.append(_scalar(v))

    start(value)
    while stack:
        children, is_object = stack[-1]
        child = next(children, _END)
        if child is _END:
            parts.append("}" if is_object else "]")
            stack.pop()
            first.pop()
            continue
        if not first[-1]:
            parts.append(",")
        first[-1] = False
        if is_object:
            key, child = child
            parts.append(_scalar(str(key)))
            parts.append(":")
        start(child)
    return "".join(parts).encode()


MAX_DEPTH = 1000
"""Nesting kept by :func:`dumps_any`; deeper containers are written as a note (orjson reads at most 1024 levels,
and what is quarantined must read back)."""
_CUT = json.dumps(f"[cut: nested deeper than {MAX_DEPTH} levels]")
_END: Any = object()
_SURROGATE = re.compile("[\ud800-\udfff]")


def _scalar(v: Any) -> str:
    if v is None or isinstance(v, bool | int):
        return json.dumps(v)
    if isinstance(v, float):
        return json.dumps(v) if math.isfinite(v) else "null"
    return json.dumps(safe_text(v if isinstance(v, str) else str(v)), ensure_ascii=False)


def safe_text(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 store or JSON writer takes) replaced by U+FFFD."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)
