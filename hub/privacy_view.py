"""Showing raw partner items to operators with personal data masked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tanpuhui.sdk import mask_mobile, mask_resident_id, redact

__all__ = ["masked"]


def _mask(kind: str, value: Any) -> Any:
    if not isinstance(value, str):
        return "***"
    if kind == "mobile":
        return mask_mobile(value)
    if kind == "resident_id":
        return mask_resident_id(value)
    return value[:2] + "*" * max(0, len(value) - 4) + value[-2:] if len(value) > 4 else "*" * len(value)


_MAX_DEPTH = 100


def masked(item: Any, personal_fields: Mapping[str, str], _depth: int = 0) -> Any:
    """A copy of ``item`` with declared personal fields masked and ID/mobile-shaped strings redacted elsewhere.

    Nesting past 100 levels is not shown (replaced by a note): no partner field is that deep, and a hostile item
    must not exhaust the stack of whoever looks at it."""
    if _depth >= _MAX_DEPTH and isinstance(item, dict | list):
        return f"[nested deeper than {_MAX_DEPTH} levels: not shown]"
    if isinstance(item, dict):
        return {
            k: _mask(personal_fields[k], v) if k in personal_fields else masked(v, {}, _depth + 1)
            for k, v in item.items()
        }
    if isinstance(item, list):
        return [masked(v, {}, _depth + 1) for v in item]
    if isinstance(item, str):
        return redact(item)
    return item
