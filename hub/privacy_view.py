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


def masked(item: Any, personal_fields: Mapping[str, str]) -> Any:
    """A copy of ``item`` with declared personal fields masked and ID/mobile-shaped strings redacted elsewhere."""
    if isinstance(item, dict):
        return {k: _mask(personal_fields[k], v) if k in personal_fields else masked(v, {}) for k, v in item.items()}
    if isinstance(item, list):
        return [masked(v, {}) for v in item]
    if isinstance(item, str):
        return redact(item)
    return item
