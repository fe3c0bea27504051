"""A streaming transit-card partner for the memory benchmark: raw asyncio HTTP/1.1, run in its own process.

It speaks the interface of ``tanpuhui.adapters.transit_card`` (see the sandbox): ``POST /oauth/token`` (any client
credentials), ``GET /v1/network`` (``hefei_network()``) and ``GET /v1/transactions?limit=N&cursor=pK``, where page
``K`` is generated on the fly from ``K`` by :class:`benchmarks.feed.TransitFeed` (only the last few pages are
kept: the partner side never grows however many pages are pulled). ``limit`` is ignored: a page is one 10-minute window, ~1000
transactions.

``&segment=I&segments=N`` (a partitioned stream's part, ``partitions = {transactions = N}``): only the transactions
of windows ``K`` to ``K+N-1`` whose holder (``account_mobile``, else ``card_no``) has CRC-32 modulo ``N`` equal to
``I``, the sandbox partner's rule (:func:`tanpuhui.testing.sandbox.segment_of`): about as many transactions as a
whole page, as a partner answering ``limit`` would send; the cursor stays a window number of the whole feed (the
next one is ``p{K+N}``). A segment or count out of range is a
400 naming it, as the sandbox answers. The last few pages are kept (:class:`~benchmarks.feed.TransitFeed`), so the
N parts of a page, asked for by N workers at about the same time, generate it once. ``--hold`` makes every page
(and its parts) before listening instead, for a partner that costs next to no CPU a request.

    python -m benchmarks.simulator --pages 16000   # prints "PORT <n>" when listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import orjson

from tanpuhui.testing.sandbox import non_negative_int, positive_int

from .feed import TransitFeed
from .raw_http import serve_forever

__all__ = ["main"]


class _Partner:
    def __init__(self, pages: int, bad_every: int = 1000, hold: Sequence[int] | None = None) -> None:
        self.pages = pages
        self.feed = TransitFeed(bad_every=bad_every)
        self.network = orjson.dumps(self.feed.network_doc)
        self.token = orjson.dumps({"access_token": "bench-token", "token_type": "Bearer", "expires_in": 86400})
        self.held: dict[tuple[int, tuple[int, int] | None], bytes] = {}
        """With ``hold``: every page's answer, and its parts for each count of segments in ``hold``, made at start."""
        if hold is not None:
            for k in range(pages):
                self.held[k, None] = self.feed.page(k, pages)
                for count in hold:
                    if k % count == 0:  # where a part's pages start: p0, p{count}, p{2 count}, ...
                        for segment in range(count):
                            self.held[k, (segment, count)] = self.feed.page(k, pages, (segment, count))

    def answer(self, method: bytes, target: bytes) -> tuple[int, bytes]:
        parts = urlsplit(target.decode("latin-1"))
        if method == b"POST" and parts.path == "/oauth/token":
            return 200, self.token
        if method == b"GET" and parts.path == "/v1/network":
            return 200, self.network
        if method == b"GET" and parts.path == "/v1/transactions":
            params = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
            cursor = params.get("cursor") or "p0"
            try:
                k = int(cursor[1:])
            except ValueError:
                return 400, b'{"error":"invalid_cursor"}'
            split = _segment(params)
            if isinstance(split, bytes):
                return 400, split
            if k >= self.pages:
                return 200, self._last(k)
            held = self.held.get((k, split))
            return 200, held if held is not None else self.feed.page(k, self.pages, split)
        return 404, b'{"error":"not_found"}'

    def _last(self, k: int) -> bytes:
        return orjson.dumps({"data": [], "next_cursor": f"p{k}", "has_more": False})

    def respond(self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        status, answer = self.answer(method, target)
        reason = b"OK" if status == 200 else b"Error"
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        return head % (status, reason, len(answer)) + answer


def _segment(params: dict[str, str]) -> tuple[int, int] | bytes | None:
    """(segment, segments) of a request, None for the whole feed, or the body of a 400 naming the parameter (the
    sandbox partner's checks and words)."""
    if "segment" not in params and "segments" not in params:
        return None
    segments = positive_int(params.get("segments"), 0)
    segment = non_negative_int(params.get("segment"), -1)
    if not segments or segments > 64:
        problem = "segments must be a whole number from 1 to 64, given with segment"
    elif segment is None or not 0 <= segment < segments:
        problem = f"segment must be a whole number from 0 to {segments - 1}, given with segments"
    else:
        return segment, segments
    return orjson.dumps({"error": "invalid_request", "error_description": problem})


async def _serve(pages: int, bad_every: int, hold: Sequence[int] | None) -> None:
    await serve_forever(_Partner(pages, bad_every, hold).respond)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulator")
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument(
        "--bad-every", type=int, default=1000, help="one journey in N, if a bus tap, is schema-invalid (0: none)"
    )
    parser.add_argument(
        "--hold",
        type=int,
        nargs="*",
        metavar="SEGMENTS",
        help="make every page before listening and hold the bytes (~250 KB a page), and each page's parts for "
        "these counts of segments (e.g. --hold 2): a request then costs the simulator next to no CPU",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.pages, args.bad_every, args.hold))


if __name__ == "__main__":
    main()
