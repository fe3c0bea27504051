"""How a sandbox writes JSON answers: a response helper, and a feed's items encoded once and spliced into pages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["EncodedItems", "json_response"]


def json_response(status: int, doc: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``doc`` as an ``application/json`` response (orjson; :class:`orjson.Fragment` values go in as they are)."""
    return Response(orjson.dumps(doc), status_code=status, headers=dict(headers or {}), media_type="application/json")


class EncodedItems:
    """A feed's items, each encoded to JSON once; pages splice them in as arrays without encoding them again."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._encoded = [orjson.dumps(item) for item in items]

    def __len__(self) -> int:
        return len(self._encoded)

    def array(self, positions: range | Iterable[int]) -> orjson.Fragment:
        """The items at ``positions`` as a JSON array, to place in a document given to :func:`json_response`."""
        if isinstance(positions, range) and positions.step == 1:
            chosen = self._encoded[positions.start : positions.stop]
        else:
            chosen = [self._encoded[p] for p in positions]
        return orjson.Fragment(b"[" + b",".join(chosen) + b"]")
