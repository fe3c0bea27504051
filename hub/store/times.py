"""Times as the stores keep them: ISO text in UTC, to the millisecond."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["time_text", "utc_now"]


def utc_now() -> str:
    """Now, as the ISO text the stores keep (UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def time_text(value: Any) -> str | None:
    """A stored time as ISO text: SQLite keeps text (and unix seconds for leases), PostgreSQL ``timestamptz``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="milliseconds")
