"""A deterministic, streaming transit-card feed: page ``k`` is computed from ``k`` alone, nothing is held.

The shapes are the sandbox operator's (``tanpuhui.adapters.transit_card.sandbox``): the same fields, the same
Hefei-like network (``hefei_network()``), metro journeys as a tap-in and a tap-out (often on different pages), bus
journeys as one tap, 10% of cards bound to a (synthetic ``199...``) mobile account. Unlike the sandbox's
:class:`Dataset`, which builds the whole dataset in memory, this feed can serve 16M transactions at a few µs each,
which the memory benchmark needs.

How: time is cut into windows of ``window_seconds``; window ``j`` starts ``trips_per_window`` journeys, each on a
card of its own (card ``(j mod card_cycle) * trips_per_window + slot``, so a card rides once every ``card_cycle``
windows and its journeys never overlap). Page ``k`` is every tap whose time falls in window ``k``: the tap-ins and
bus taps of window ``k``'s journeys and the tap-outs of journeys started up to ``lookback`` windows earlier, sorted
by time. A small share of bus taps is schema-invalid (``deal_time`` without an offset) so the quarantine path runs.

Segments (a partitioned stream's parts, as the sandbox partner splits its feed): :meth:`TransitFeed.segment_items`
is the part of page ``k`` whose holder (``account_mobile``, else ``card_no``) has CRC-32 modulo ``segments`` equal
to ``segment`` (:func:`tanpuhui.testing.sandbox.segment_of`). The last few pages' items are kept with their
holders' CRC-32, so the N parts of one page cost one page's generation and N serialisations of its parts.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from tanpuhui.adapters.transit_card.network import Network
from tanpuhui.adapters.transit_card.sandbox import hefei_network

__all__ = ["TransitFeed"]

CST = timezone(timedelta(hours=8))
_EPOCH = datetime(2024, 11, 5, 5, 40, tzinfo=CST)

Tap = tuple[int, int, int, dict[str, Any]]
"""(time, window started in, order in that window, item): sorting these puts a page's taps in the feed's order."""


@dataclass(kw_only=True, eq=False)
class TransitFeed:
    """Transit-card transaction pages, generated on demand and the same on every call."""

    seed: int = 7
    trips_per_window: int = 625
    window_seconds: int = 600
    card_cycle: int = 256
    metro_share: float = 0.6
    mobile_share: float = 0.1
    bad_every: int = 1000
    start: datetime = _EPOCH
    readers: int = 2
    """How many readers may walk the pages at once, however far apart (the parts of a partitioned pull run by
    several workers): windows of journeys are kept for each of them, so none regenerates another's."""
    pages_kept: int = 8
    """How many recent pages' items (and their holders' CRC-32) are kept for the segments asking for them."""

    def __post_init__(self) -> None:
        self.start_ts = int(self.start.timestamp())
        self.network_doc = hefei_network()
        network = Network.from_document(self.network_doc, "benchmark feed")
        self._metro_stops = sorted(network.stops)
        self._stop_line = {s: network.stops[s].line_id for s in self._metro_stops}
        pairs: list[tuple[str, str, float]] = []
        for o in self._metro_stops:
            for d in self._metro_stops:
                if not network.same_station(o, d):
                    km = network.metro_km(o, d)
                    if km:
                        pairs.append((o, d, km))
        self._pairs = pairs
        self._bus = [
            (line["line_id"], [s["stop_id"] for s in line["stops"]], float(line["avg_trip_km"]))
            for line in self.network_doc["lines"]
            if line["mode"] == "bus"
        ]
        longest = max(4 + km / 0.55 + 5 for _, _, km in pairs) * 60
        self.lookback = math.ceil(longest / self.window_seconds) + 1
        if self.card_cycle <= self.lookback:
            raise ValueError(f"card_cycle must exceed lookback ({self.lookback} windows) so journeys never overlap")
        self._journeys: OrderedDict[int, dict[int, list[Tap]]] = OrderedDict()
        self._pages: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._holders: dict[int, list[int]] = {}
        self._times: dict[int, str] = {}

    # -- journeys --------------------------------------------------------------------------------------------

    def _iso(self, ts: int) -> str:
        text = self._times.get(ts)
        if text is None:
            if len(self._times) > 50_000:
                self._times.clear()
            text = self._times[ts] = datetime.fromtimestamp(ts, CST).isoformat()
        return text

    def _window(self, j: int) -> dict[int, list[Tap]]:
        """The taps of journeys started in window ``j`` by the page they fall in (``j`` to ``j + lookback``),
        unsorted; the last ``(lookback + 2) * readers`` windows are kept (least recently used dropped first)."""
        found = self._journeys.get(j)
        if found is not None:
            self._journeys.move_to_end(j)
            return found
        rng = random.Random(self.seed * 1_000_003 + j)
        rand, getrandbits = rng.random, rng.getrandbits

        def below(n: int) -> int:
            """``rng.randrange(n)`` as CPython computes it (the same numbers), without its three calls a number."""
            k = n.bit_length()
            r = getrandbits(k)
            while r >= n:
                r = getrandbits(k)
            return r

        base = self.start_ts + j * self.window_seconds
        cycle = (j % self.card_cycle) * self.trips_per_window
        taps: list[tuple[int, int, dict[str, Any]]] = []
        for slot in range(self.trips_per_window):
            c = cycle + slot
            serial = (c * 2654435761) % 10**12
            if rand() < self.mobile_share:
                who: dict[str, Any] = {"card_no": f"QR{serial:012d}", "account_mobile": f"199{c:08d}"}
            else:
                who = {"card_no": f"9900{serial:012d}"}
            ts = base + below(self.window_seconds)
            txn = f"HF{j:07d}{slot:04d}"
            if rand() < self.metro_share:
                origin, destination, km = self._pairs[below(len(self._pairs))]
                end = ts + int((4 + km / 0.55 + 5 * rand()) * 60)
                value = 200 if km <= 6 else 300 if km <= 12 else 400 if km <= 20 else 500
                line_in, line_out = self._stop_line[origin], self._stop_line[destination]
                taps.append(
                    (
                        ts,
                        2 * slot,
                        {
                            "txn_id": txn + "I",
                            **who,
                            "deal_time": self._iso(ts),
                            "deal_type": "metro_in",
                            "line_id": line_in,
                            "stop_id": origin,
                            "gate_no": f"G{1 + below(12):02d}",
                            "deal_value_fen": 0,
                            "deal_money_fen": 0,
                            "transfer": False,
                            "region": "340100",
                        },
                    )
                )
                taps.append(
                    (
                        end,
                        2 * slot + 1,
                        {
                            "txn_id": txn + "O",
                            **who,
                            "deal_time": self._iso(end),
                            "deal_type": "metro_out",
                            "line_id": line_out,
                            "stop_id": destination,
                            "gate_no": f"G{1 + below(12):02d}",
                            "deal_value_fen": value,
                            "deal_money_fen": value * 9 // 10,
                            "transfer": line_in != line_out,
                            "region": "340100",
                        },
                    )
                )
            else:
                line_id, stops, _ = self._bus[below(len(self._bus))]
                deal_time = self._iso(ts)
                if self.bad_every and (j * self.trips_per_window + slot) % self.bad_every == self.bad_every - 1:
                    deal_time = deal_time[:-6]  # no UTC offset: the trip schema rejects it (quarantined)
                taps.append(
                    (
                        ts,
                        2 * slot,
                        {
                            "txn_id": txn + "B",
                            **who,
                            "deal_time": deal_time,
                            "deal_type": "bus",
                            "line_id": line_id,
                            "stop_id": stops[below(len(stops))],
                            "vehicle_no": f"皖A{'DF'[below(2)]}{below(10**5):05d}",
                            "deal_value_fen": 200,
                            "deal_money_fen": 180,
                            "transfer": False,
                            "region": "340100",
                        },
                    )
                )
        by_page: dict[int, list[Tap]] = {}
        start, width = self.start_ts, self.window_seconds
        for ts, order, item in taps:
            by_page.setdefault((ts - start) // width, []).append((ts, j, order, item))
        self._journeys[j] = by_page
        while len(self._journeys) > (self.lookback + 2) * max(1, self.readers):
            self._journeys.popitem(last=False)
        return by_page

    # -- pages -----------------------------------------------------------------------------------------------

    def items(self, k: int) -> list[dict[str, Any]]:
        """The transactions of page ``k`` (window ``k``), ordered by time."""
        return self._page(k)

    def _page(self, k: int) -> list[dict[str, Any]]:
        """Page ``k``'s items; the last ``pages_kept`` pages are kept."""
        found = self._pages.get(k)
        if found is not None:
            return found
        taps: list[Tap] = []
        for j in range(max(0, k - self.lookback), k + 1):
            taps.extend(self._window(j).get(k, ()))
        taps.sort(key=lambda t: (t[0], t[1], t[2]))
        found = self._pages[k] = [t[3] for t in taps]
        while len(self._pages) > self.pages_kept:
            self._pages.popitem(last=False)
        return found

    def segment_items(self, k: int, segment: int, segments: int) -> list[dict[str, Any]]:
        """The transactions of page ``k`` whose holder is in ``segment`` of ``segments`` (CRC-32 of ``account_mobile``,
        else ``card_no``, modulo ``segments``: :func:`tanpuhui.testing.sandbox.segment_of`), ordered by time."""
        items = self._page(k)
        if segments == 1:
            return items
        holders = self._holders.get(k)
        if holders is None:  # worked out once for the page, kept as long as its items
            crc32 = zlib.crc32
            holders = self._holders[k] = [
                crc32((i.get("account_mobile") or i.get("card_no") or "").encode()) for i in items
            ]
            for old in [p for p in self._holders if p not in self._pages]:
                del self._holders[old]
        return [item for item, crc in zip(items, holders, strict=True) if crc % segments == segment]

    def page(self, k: int, pages: int, segment: tuple[int, int] | None = None) -> bytes:
        """Page ``k`` of ``pages`` as the partner API sends it (``data``, ``next_cursor``, ``has_more``); with
        ``segment`` (index, count), that segment's part of windows ``k`` to ``k + count - 1``: about as many
        transactions as a whole page (the ``limit`` it is asked for), so a part is read in as many requests as the
        whole feed over ``count``. The cursors are window numbers of the whole feed."""
        if segment is None:
            items, after = self.items(k), k + 1
        else:
            after = min(k + segment[1], pages) if k < pages else k + 1
            items = [item for w in range(k, after) for item in self.segment_items(w, *segment)]
        return orjson.dumps(
            {"data": items, "next_cursor": f"p{after}", "has_more": after < pages}, option=orjson.OPT_APPEND_NEWLINE
        )

    def pages(self, count: int) -> list[bytes]:
        return [self.page(k, count) for k in range(count)]
