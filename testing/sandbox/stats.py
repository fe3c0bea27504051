"""What a sandbox served: the counters every sandbox keeps, and first-time tracking of chosen items."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["FirstServed", "SandboxStats"]


@dataclass(slots=True)
class SandboxStats:
    """Counters every sandbox keeps; a sandbox's own stats subclass this with a counter per endpoint."""

    requests: int = 0
    token_requests: int = 0
    tokens_issued: int = 0
    items_served: int = 0
    bad_items: int = 0
    """Distinct bad items served at least once."""
    unauthorized: int = 0
    """Requests refused for their credentials: a wrong client secret, a missing, expired or revoked token."""
    faults: Counter[int | str] = field(default_factory=Counter)
    """Injected error answers, by HTTP status (or by the partner's error code, where the sandbox says so)."""


class FirstServed:
    """Counts which of some watched positions of a feed (its bad items, say) are served for the first time."""

    def __init__(self, watched: Iterable[int]) -> None:
        self._watched = sorted(set(watched))
        self._lookup = frozenset(self._watched)
        self._served: set[int] = set()

    def serve(self, positions: range | Iterable[int]) -> int:
        """Note ``positions`` as served; how many watched ones among them were never served before."""
        if isinstance(positions, range) and positions.step == 1:
            hits: Iterable[int] = self._watched[
                bisect_left(self._watched, positions.start) : bisect_left(self._watched, positions.stop)
            ]
        else:
            hits = [p for p in positions if p in self._lookup]
        new = set(hits) - self._served
        self._served |= new
        return len(new)
