"""A streaming transit-card partner for the memory benchmark: raw asyncio HTTP/1.1, run in its own process.

It speaks the interface of ``tanpuhui.adapters.transit_card`` (see the sandbox): ``POST /oauth/token`` (any client
credentials), ``GET /v1/network`` (``hefei_network()``) and ``GET /v1/transactions?limit=N&cursor=pK``, where page
``K`` is generated on the fly from ``K`` by :class:`benchmarks.feed.TransitFeed` (nothing is held: the partner
side never grows however many pages are pulled). ``limit`` is ignored: a page is one 10-minute window, ~1000
transactions.

    python -m benchmarks.simulator --pages 16000   # prints "PORT <n>" when listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit

import orjson

from .feed import TransitFeed
from .raw_http import serve_forever

__all__ = ["main"]


class _Partner:
    def __init__(self, pages: int, bad_every: int = 1000) -> None:
        self.pages = pages
        self.feed = TransitFeed(bad_every=bad_every)
        self.network = orjson.dumps(self.feed.network_doc)
        self.token = orjson.dumps({"access_token": "bench-token", "token_type": "Bearer", "expires_in": 86400})

    def answer(self, method: bytes, target: bytes) -> tuple[int, bytes]:
        parts = urlsplit(target.decode("latin-1"))
        if method == b"POST" and parts.path == "/oauth/token":
            return 200, self.token
        if method == b"GET" and parts.path == "/v1/network":
            return 200, self.network
        if method == b"GET" and parts.path == "/v1/transactions":
            cursor = parse_qs(parts.query).get("cursor", ["p0"])[0]
            try:
                k = int(cursor[1:])
            except ValueError:
                return 400, b'{"error":"invalid_cursor"}'
            return 200, self.feed.page(k, self.pages) if k < self.pages else self._last(k)
        return 404, b'{"error":"not_found"}'

    def _last(self, k: int) -> bytes:
        return orjson.dumps({"data": [], "next_cursor": f"p{k}", "has_more": False})

    def respond(self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        status, answer = self.answer(method, target)
        reason = b"OK" if status == 200 else b"Error"
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        return head % (status, reason, len(answer)) + answer


async def _serve(pages: int, bad_every: int) -> None:
    await serve_forever(_Partner(pages, bad_every).respond)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulator")
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument(
        "--bad-every", type=int, default=1000, help="one journey in N, if a bus tap, is schema-invalid (0: none)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.pages, args.bad_every))


if __name__ == "__main__":
    main()
