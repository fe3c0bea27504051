"""Cassettes: recorded partner exchanges replayed with respx.

A cassette is a JSON file::

    {"interactions": [
      {"request": {"method": "POST", "url": "https://transit.example/oauth/token"},
       "response": {"status": 200, "json": {"access_token": "t1", "token_type": "Bearer", "expires_in": 7200}}},
      {"request": {"method": "GET", "url": "https://transit.example/v1/transactions?limit=3"},
       "response": {"status": 429, "headers": {"Retry-After": "2"}, "json": {"error": "slow down"}}},
      {"request": {"method": "GET", "url": "https://transit.example/v1/transactions?limit=3"},
       "response": {"status": 200, "json": {"data": [], "next_cursor": "c1", "has_more": false}}}
    ]}

Requests match on method, scheme, host, path and query parameters (order-free). Interactions with the same
request are replayed in recorded order. A response may instead be ``{"error": "timeout"}`` or
``{"error": "connect"}`` to simulate a transport failure, or use ``"body"`` (text) instead of ``"json"``.
An unmatched request raises :class:`CassetteMismatch` naming the request and the closest recorded one.
"""

from __future__ import annotations

import difflib
from collections import defaultdict, deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import respx

__all__ = ["Cassette", "CassetteMismatch"]


class CassetteMismatch(AssertionError):
    """A request the cassette has no (remaining) recording for."""


def _key(method: str, url: str) -> str:
    parts = urlsplit(url)
    query = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return f"{method.upper()} {parts.scheme}://{parts.netloc}{parts.path}{'?' + query if query else ''}"


class Cassette:
    """Recorded interactions, replayable through a respx router."""

    def __init__(self, interactions: list[dict[str, Any]], path: str = "<memory>") -> None:
        self.path = path
        self.interactions = interactions
        self._queues: dict[str, deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
        for index, interaction in enumerate(interactions):
            req = interaction["request"]
            self._queues[_key(req["method"], req["url"])].append((index, interaction["response"]))
        self.mismatches: list[str] = []
        self.requests: list[httpx.Request] = []

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        doc = orjson.loads(Path(path).read_bytes())
        return cls(doc["interactions"], str(path))

    @property
    def unused(self) -> list[str]:
        """Recorded interactions never replayed, as ``#index METHOD URL``."""
        return [f"#{index} {key}" for key, queue in self._queues.items() for index, _ in queue]

    def _respond(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = _key(request.method, str(request.url))
        queue = self._queues.get(key)
        if not queue:
            recorded = [_key(i["request"]["method"], i["request"]["url"]) for i in self.interactions]
            closest = difflib.get_close_matches(key, recorded, n=1, cutoff=0.0)
            why = "all its recordings were already used" if key in recorded else "it was never recorded"
            message = (
                f"cassette {self.path}: {key} not recorded ({why}); closest recorded: "
                f"{closest[0] if closest else 'none'}"
            )
            self.mismatches.append(message)
            raise CassetteMismatch(message)
        _, spec = queue.popleft()
        error = spec.get("error")
        if error == "timeout":
            raise httpx.ReadTimeout("recorded timeout", request=request)
        if error == "connect":
            raise httpx.ConnectError("recorded connection refused", request=request)
        headers = dict(spec.get("headers", {}))
        if "json" in spec:
            content = orjson.dumps(spec["json"])
            headers.setdefault("content-type", "application/json")
        else:
            content = spec.get("body", "").encode()
        return httpx.Response(spec.get("status", 200), headers=headers, content=content)

    def mount(self, router: respx.MockRouter) -> None:
        """Route every request through this cassette."""
        router.route().mock(side_effect=self._respond)

    def assert_all_used(self) -> None:
        if self.mismatches:
            raise CassetteMismatch("\n".join(self.mismatches))
        if self.unused:
            raise CassetteMismatch(f"cassette {self.path}: recorded but never requested: {', '.join(self.unused)}")
