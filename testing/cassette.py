"""Cassettes: recorded partner exchanges replayed with respx.

A cassette is a JSON file::

    {"interactions": [
      {"request": {"method": "POST", "url": "https://transit.example/oauth/token"},
       "response": {"status": 200, "json": {"access_token": "t1", "token_type": "Bearer", "expires_in": 7200}}},
      {"request": {"method": "GET", "url": "https://transit.example/v1/transactions?limit=3"},
       "response": {"status": 429, "headers": {"Retry-After": "2"}, "json": {"error": "slow down"}}},
      {"request": {"method": "GET", "url": "https://transit.example/v1/transactions?limit=3"},
       "response": {"status": 200, "json": {"data": [], "next_cursor": "c1", "has_more": false}}}
    ],
     "match": {"ignore_query": ["timestamp"]}}

Requests match on method, scheme, host, path and query parameters (order-free); query parameters named in
``match.ignore_query`` (e.g. a per-request timestamp or signature) are left out of the comparison. Interactions
with the same request are replayed in recorded order. A response may instead be ``{"error": "timeout"}`` or
``{"error": "connect"}`` to simulate a transport failure, or carry ``"body"`` (text) or ``"body_base64"`` (bytes)
instead of ``"json"``. An unmatched request raises :class:`CassetteMismatch` naming the request and the closest
recorded one; it is also remembered, so a test fails even when adapter code swallowed the exception.

:func:`dump_cassette` writes the stable, diffable form the recorder uses: keys sorted, one line per interaction
part and per list item of a body.
"""

from __future__ import annotations

import base64
import difflib
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

if TYPE_CHECKING:
    import respx

__all__ = ["Cassette", "CassetteMismatch", "dump_cassette", "request_key"]


class CassetteMismatch(AssertionError):
    """A request the cassette has no (remaining) recording for, or recordings nobody asked for."""


def request_key(method: str, url: str, ignore_query: Iterable[str] = ()) -> str:
    """``METHOD scheme://host/path?sorted=query``: what a request is matched on."""
    ignored = set(ignore_query)
    parts = urlsplit(url)
    pairs = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ignored)
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return f"{method.upper()} {parts.scheme}://{parts.netloc}{parts.path}{'?' + query if query else ''}"


class Cassette:
    """Recorded interactions, replayable through a respx router or as an httpx transport."""

    def __init__(
        self,
        interactions: list[dict[str, Any]],
        path: str = "<memory>",
        *,
        ignore_query: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.interactions = interactions
        self.ignore_query = frozenset(ignore_query)
        self._queues: dict[str, deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
        for index, interaction in enumerate(interactions):
            req = interaction["request"]
            self._queues[self._key(req["method"], req["url"])].append((index, interaction["response"]))
        self.mismatches: list[str] = []
        """Messages of every unmatched request so far (kept even when the caller swallowed the exception)."""
        self.requests: list[httpx.Request] = []
        """Every request replayed or refused, in order."""

    @classmethod
    def load(cls, path: str | Path, *, ignore_query: Iterable[str] = ()) -> Cassette:
        """Read a cassette file; ``ignore_query`` adds to the file's own ``match.ignore_query``."""
        try:
            doc = orjson.loads(Path(path).read_bytes())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"cassette {path} does not exist; record it by running the test with --tanpuhui-record "
                "(and --tanpuhui-record-url URL for a partner or sandbox elsewhere)"
            ) from None
        match = doc.get("match") or {}
        return cls(doc["interactions"], str(path), ignore_query=[*match.get("ignore_query", ()), *ignore_query])

    def _key(self, method: str, url: str) -> str:
        return request_key(method, url, self.ignore_query)

    @property
    def unused(self) -> list[str]:
        """Recorded interactions never replayed, as ``#index METHOD URL``."""
        return [f"#{index} {key}" for key, queue in self._queues.items() for index, _ in queue]

    def respond(self, request: httpx.Request) -> httpx.Response:
        """The next recorded response to ``request``; :class:`CassetteMismatch` when there is none."""
        self.requests.append(request)
        key = self._key(request.method, str(request.url))
        queue = self._queues.get(key)
        if not queue:
            recorded = [self._key(i["request"]["method"], i["request"]["url"]) for i in self.interactions]
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
            if not any(name.lower() == "content-type" for name in headers):
                headers["content-type"] = "application/json"
        elif "body_base64" in spec:
            content = base64.b64decode(spec["body_base64"])
        else:
            content = spec.get("body", "").encode()
        return httpx.Response(spec.get("status", 200), headers=headers, content=content, request=request)

    # The name respx side effects were given before ``respond`` was public.
    _respond = respond

    def mount(self, router: respx.MockRouter) -> None:
        """Route every request of a respx router through this cassette."""
        router.route().mock(side_effect=self.respond)

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport replaying this cassette through a respx router of its own (for ``HttpOptions``)."""
        import respx

        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self.mount(router)
        return httpx.MockTransport(router.async_handler)

    def problems(self, allow_unused: bool = False) -> list[str]:
        """What is wrong with how the cassette was used: unmatched requests, and (unless allowed) unused recordings."""
        out = list(self.mismatches)
        if not allow_unused and self.unused:
            out.append(f"cassette {self.path}: recorded but never requested: {', '.join(self.unused)}")
        return out

    def assert_all_used(self) -> None:
        """Raise :class:`CassetteMismatch` for an unmatched request or a recording never replayed."""
        problems = self.problems()
        if problems:
            raise CassetteMismatch("\n".join(problems))


def dump_cassette(doc: Mapping[str, Any]) -> str:
    """The cassette document as stable JSON text: keys sorted, one line per interaction part and per body item."""
    return _dump(doc, 0) + "\n"


def _dump(value: Any, depth: int) -> str:
    nested = isinstance(value, dict | list) and any(
        isinstance(v, dict | list) for v in (value.values() if isinstance(value, dict) else value)
    )
    if not nested or depth >= 6:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, list):
        return "[\n" + ",\n".join(inner + _dump(v, depth + 1) for v in value) + "\n" + pad + "]"
    parts = [f"{inner}{orjson.dumps(str(k)).decode()}: {_dump(value[k], depth + 1)}" for k in sorted(value, key=str)]
    return "{\n" + ",\n".join(parts) + "\n" + pad + "}"
