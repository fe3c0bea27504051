"""A household's own trailing baseline of daily peak-hour usage, kept in the stream state.

Used when a utility dataset does not send a baseline with the reading. The state holds, per household pseudonym,
the last ``days`` daily readings as ``[day ordinal, m3]`` pairs (nothing personal: the key is a keyed pseudonym);
it is committed with the cursor, so a crash never counts a day twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from tanpuhui.sdk import ItemRejected

__all__ = ["TrailingBaseline"]


class TrailingBaseline:
    """Mean of the household's readings on the ``days`` days before a reading, once ``min_days`` of them exist."""

    def __init__(self, days: int, min_days: int, key: str = "households") -> None:
        if not 1 <= min_days <= days:
            raise ValueError(f"need 1 <= min_days ({min_days}) <= days ({days})")
        self.days = days
        self.min_days = min_days
        self.key = key

    def observe(self, state: dict[str, Any], household: str, day: date, value: float) -> tuple[float | None, int]:
        """Remember today's reading; return (baseline from the earlier days or None, how many days it used).

        A second reading for the same household and day is an :class:`ItemRejected` (the first one counts).
        """
        households: dict[str, list[list[float]]] = state.setdefault(self.key, {})
        history = households.get(household)
        ordinal = day.toordinal()
        if history is None:
            history = households[household] = []
        earlier = [v for d, v in history if ordinal - self.days <= d < ordinal]
        if any(d == ordinal for d, _ in history):
            raise ItemRejected(
                f"a reading for this account on {day.isoformat()} was already counted; a second one is not credited",
                "/usageDate",
            )
        if history and history[-1][0] - ordinal >= self.days:
            # Older than every day still remembered: it could be a day already counted and forgotten.
            raise ItemRejected(
                f"reading for {day.isoformat()} arrived after readings {self.days}+ days newer for this account; "
                "too late to check it against the baseline window, not credited",
                "/usageDate",
            )
        history.append([ordinal, value])
        if len(history) > 1 and history[-2][0] > ordinal:
            history.sort(key=lambda pair: pair[0])
        del history[: max(0, len(history) - self.days)]
        latest = state.get("latest", 0)
        if ordinal > latest:
            state["latest"] = ordinal
        if len(earlier) < self.min_days:
            return None, len(earlier)
        return round(sum(earlier) / len(earlier), 6), len(earlier)

    def prune(self, state: dict[str, Any]) -> int:
        """Forget households with no reading in the window before the latest day seen; returns how many."""
        households: dict[str, list[list[float]]] | None = state.get(self.key)
        latest = state.get("latest")
        if not households or not latest:
            return 0
        stale = [h for h, history in households.items() if not history or history[-1][0] < latest - self.days]
        for household in stale:
            del households[household]
        return len(stale)
