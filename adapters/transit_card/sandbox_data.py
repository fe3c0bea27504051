"""The transit sandbox's synthetic data: a Hefei-like network and a seeded day of card transactions.

:func:`hefei_network` is the distance table (5 metro lines, 20 bus lines; Hefei's station names, illustrative
geometry). :class:`Dataset` is ``trips`` journeys by about ``trips / 2.5`` cards per day over ``days`` days, peaking
at 08:00 and 18:00; metro journeys are a tap-in and a tap-out, bus journeys one tap. Card numbers start with
``9900`` (QR accounts ``QR``) and account mobiles are ``199`` + an 8-digit serial: synthetic, never real people's.
A few bad items are mixed in, of the kinds in :data:`BAD_KINDS` (count per kind: ``bad``, default one per 1,000
trips and at least one), and :meth:`Dataset.expected` says what a correct pull makes of the whole dataset.

:mod:`.sandbox` serves them and re-exports these names; this module imports no web framework.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tanpuhui.testing.sandbox.kinds import check_kinds

from .network import Network

__all__ = ["BAD_KINDS", "NETWORK_VERSION", "Dataset", "hefei_network"]

CST = timezone(timedelta(hours=8))

BAD_KINDS = (
    "no_offset",
    "missing_card",
    "unknown_deal_type",
    "unknown_bus_line",
    "unclosed_tap_in",
    "orphan_tap_out",
    "same_station",
)
"""Bad items the sandbox can mix in: three the schema rejects (a ``deal_time`` without offset, no ``card_no``,
a ``recharge`` transaction), two the adapter rejects (a bus line missing from the table, a tap-in and tap-out at the
same station), a tap-in whose tap-out never comes and a tap-out whose tap-in is missing."""

_SCHEMA_INVALID: frozenset[str] = frozenset({"no_offset", "missing_card", "unknown_deal_type"})

# Metro lines: "station-code:name" in line order. A station code on two lines is a transfer station.
_METRO = {
    "M1": "hfhcz:合肥火车站 mgl:明光路 ddm:大东门 bgy:包公园 hgdnq:合工大南区 cyl:朝阳路 gdd:葛大店 whc:望湖城 "
    "hfnz:合肥南站 nnl:南宁路 sbwy:省博物院 zl:紫庐 jxdd:锦绣大道 fxdd:方兴大道 bhhzzx:滨湖会展中心 txhgy:塘西河公园 "
    "jlw:九联圩",
    "M2": "ng:南岗 qcxz:汽车西站 cndd:长宁大道 tsl:天水路 sszf:蜀山区政府 dss:大蜀山 kxdd:科学大道 xqlt:西七里塘 "
    "qyl:青阳路 wld:五里墩 sxk:三孝口 spl:四牌楼 ddm:大东门 yhgy:瑶海公园 dql:东七里 cc:漕冲 desb:东二十埠 lg:龙岗 "
    "sanshib:三十埠",
    "M3": "xfb:幸福坝 zjc:职教城 qlc:勤劳村 fm:方庙 hnl:淮南路 bee:北二环 hfhcz:合肥火车站 ylj:一里井 spl:四牌楼 "
    "aql:安庆路 szwzx:市政务中心 tehu:天鹅湖 tsg:图书馆 hfdjy:合肥大剧院 fhdd:繁华大道 zyl:紫云路 sml:石门路 "
    "dxcb:大学城北 xcl:相城路",
    "M4": "qlg:青龙岗 bywl:柏堰湾路 yldd:玉兰大道 cxdd:创新大道 kxc:科学城 hsl:黄山路 hzhl:合作化路 sxk:三孝口 "
    "tcl:桐城路 szwzx:市政务中心 hzdd:徽州大道 ssl:宿松路 fxdd:方兴大道 bhdd:包河大道 bhxq:滨湖新区 zbq:综保区",
    "M5": "gyl:贵阳路 hydd:花园大道 ygl:云谷路 whcx:望湖城西 nfh:南淝河 hfnz:合肥南站 lcl:龙川路 dfdd:东方大道 "
    "cjdl:长江东路 yhgy:瑶海公园 zbsq:站北社区 xhdd:新海大道 lygyq:庐阳工业区 bczx:北城中心 gj:岗集",
}
# Bus lines: "line_id:average passenger trip km".
_BUS = (
    "B1:4.6 B2:3.9 B4:4.1 B10:5.2 B11:3.4 B18:4.8 B26:3.7 B119:5.9 B126:4.2 B129:4.4 B137:3.1 B150:6.3 B226:5.5 "
    "B301:6.8 B601:4.9 B655:3.6 B701:5.0 B801:2.9 B901:6.1 B906:3.3"
)
_ROADS = (
    "长江中路 金寨路 望江路 徽州大道 马鞍山路 宁国路 芜湖路 黄山路 潜山路 合作化路 蒙城路 阜阳路 淮河路 胜利路 临泉路 "
    "繁华大道 方兴大道 庐州大道 包河大道 习友路"
)
NETWORK_VERSION = "hf-2024.11"


def hefei_network(version: str = NETWORK_VERSION) -> dict[str, Any]:
    """The sandbox's distance table (a ``transit-card-network`` document); the same on every call."""
    rng = random.Random("hefei-network")
    roads = _ROADS.split()
    lines: list[dict[str, Any]] = []
    for line_id, stations in _METRO.items():
        km = 0.0
        stops = []
        for i, entry in enumerate(stations.split()):
            code, name = entry.split(":")
            if i:
                km = round(km + rng.uniform(0.85, 2.4), 3)
            stops.append({"stop_id": f"{line_id}-{i + 1:02d}", "station": code, "name": name, "km": km})
        lines.append({"line_id": line_id, "mode": "metro", "name": f"合肥轨道交通{line_id[1:]}号线", "stops": stops})
    for entry in _BUS.split():
        line_id, avg = entry.split(":")
        count = rng.randint(8, 16)
        km = 0.0
        stops = []
        for i in range(count):
            if i:
                km = round(km + rng.uniform(0.35, 0.9), 3)
            a, b = rng.sample(roads, 2)
            stops.append({"stop_id": f"{line_id}-{i + 1:02d}", "name": f"{a}{b}交口", "km": km})
        lines.append(
            {"line_id": line_id, "mode": "bus", "name": f"{line_id[1:]}路", "avg_trip_km": float(avg), "stops": stops}
        )
    return {"version": version, "operator": "合肥通 sandbox", "lines": lines}


@dataclass(slots=True)
class _Trip:
    card: int
    start: datetime
    mode: str  # "metro" | "bus"
    end: datetime = field(init=False)
    origin: str = ""
    destination: str = ""
    line_in: str = ""
    line_out: str = ""
    km: float = 0.0
    bad: str = ""


def _fare_fen(km: float) -> int:
    for limit, fen in ((6, 200), (12, 300), (20, 400), (30, 500)):
        if km <= limit:
            return fen
    return 600


class Dataset:
    """The transactions the sandbox serves, ordered by ``deal_time``, and what a correct pull makes of them."""

    def __init__(
        self,
        trips: int,
        seed: int,
        *,
        network: Network,
        network_doc: Mapping[str, Any],
        days: int = 1,
        start: date = date(2024, 11, 5),
        bad: Mapping[str, int] | None = None,
        mobile_share: float = 0.1,
        region: str = "340100",
    ) -> None:
        if trips < 0 or days < 1:
            raise ValueError("trips must be >= 0 and days >= 1")
        check_kinds(bad, BAD_KINDS)
        rng = random.Random(seed)
        self.trips = trips
        self.seed = seed
        self.region = region
        per_kind = max(1, trips // 1000)
        self.bad_counts: dict[str, int] = {k: per_kind for k in BAD_KINDS} if bad is None else dict(bad)
        self.items: list[dict[str, Any]] = []
        self.bad: dict[str, list[str]] = {k: [] for k in BAD_KINDS}
        """Bad kind -> txn ids of the bad items of that kind."""
        self.bad_positions: list[int] = []
        """Positions in :attr:`items` of the bad items, sorted."""

        n_cards = max(1, round(trips / (2.5 * days)))
        cards = [f"9900{i:06d}{rng.randrange(10**6):06d}" for i in range(n_cards)]
        mobiles: dict[int, str] = {i: f"199{i:08d}" for i in range(n_cards) if rng.random() < mobile_share}
        metro_stops = sorted(network.stops)
        bus_lines = {line["line_id"]: line for line in network_doc["lines"] if line["mode"] == "bus"}
        bus_ids = sorted(bus_lines)

        by_card: dict[int, list[_Trip]] = {}
        for _ in range(trips):
            card = rng.randrange(n_cards)
            day = start + timedelta(days=rng.randrange(days))
            minute = self._minute_of_day(rng)
            when = datetime(day.year, day.month, day.day, tzinfo=CST) + timedelta(minutes=int(minute))
            trip = _Trip(card, when + timedelta(seconds=rng.randrange(60)), "metro" if rng.random() < 0.6 else "bus")
            by_card.setdefault(card, []).append(trip)

        all_trips: list[_Trip] = []
        for card_trips in by_card.values():
            card_trips.sort(key=lambda t: t.start)
            free_at: datetime | None = None
            for trip in card_trips:
                if free_at is not None and trip.start < free_at:
                    trip.start = free_at + timedelta(minutes=rng.randint(3, 40), seconds=rng.randrange(60))
                self._route(trip, rng, network, metro_stops, bus_lines, bus_ids)
                free_at = trip.end
                all_trips.append(trip)

        self._mark_bad(all_trips, rng)
        taps: list[tuple[datetime, int, dict[str, Any], str]] = []
        serial = 0
        for trip in all_trips:
            for when, item in self._taps(trip, cards[trip.card], mobiles.get(trip.card), rng):
                serial += 1
                kind = trip.bad if self._is_bad_tap(trip, item) else ""
                taps.append((when, serial, item, kind))
        for _ in range(self.bad_counts.get("unknown_deal_type", 0)):
            serial += 1
            when, item = self._recharge(rng, start, days, cards, metro_stops, network)
            taps.append((when, serial, item, "unknown_deal_type"))
        taps.sort(key=lambda t: (t[0], t[1]))

        for position, (when, _, item, kind) in enumerate(taps):
            txn_id = f"HF{when:%Y%m%d%H%M%S}{_base36(position % 1296)}"
            self.items.append({"txn_id": txn_id, **item})
            if kind:
                self.bad[kind].append(txn_id)
                self.bad_positions.append(position)
        self._last_valid = max(
            (w for w, _, _, kind in taps if kind not in _SCHEMA_INVALID), default=datetime.min.replace(tzinfo=CST)
        )
        self._journeys = all_trips

    @staticmethod
    def _minute_of_day(rng: random.Random) -> float:
        draw = rng.random()
        if draw < 0.3:
            minute = rng.gauss(8 * 60, 45)
        elif draw < 0.6:
            minute = rng.gauss(18 * 60, 60)
        else:
            minute = rng.uniform(6 * 60, 22 * 60 + 30)
        return min(max(minute, 5 * 60 + 40), 23 * 60)

    @staticmethod
    def _route(
        trip: _Trip,
        rng: random.Random,
        network: Network,
        metro_stops: list[str],
        bus_lines: Mapping[str, Mapping[str, Any]],
        bus_ids: list[str],
    ) -> None:
        if trip.mode == "metro":
            origin = rng.choice(metro_stops)
            destination = rng.choice(metro_stops)
            while network.same_station(origin, destination):
                destination = rng.choice(metro_stops)
            trip.origin, trip.destination = origin, destination
            trip.line_in, trip.line_out = network.stops[origin].line_id, network.stops[destination].line_id
            trip.km = network.metro_km(origin, destination) or 0.0
            minutes = 4 + trip.km / 0.55 + rng.uniform(0, 5)
        else:
            line = bus_lines[rng.choice(bus_ids)]
            trip.line_in = line["line_id"]
            trip.origin = rng.choice(line["stops"])["stop_id"]
            trip.km = float(line["avg_trip_km"])
            minutes = 3 + trip.km / 0.3 + rng.uniform(0, 6)
        trip.end = trip.start + timedelta(seconds=int(minutes * 60))

    def _mark_bad(self, trips: list[_Trip], rng: random.Random) -> None:
        # Each bad trip on a card of its own, so the expected outcome does not depend on two faults interacting.
        used: set[int] = set()
        order = list(range(len(trips)))
        rng.shuffle(order)
        modes = {
            "unclosed_tap_in": "metro",
            "orphan_tap_out": "metro",
            "same_station": "metro",
            "no_offset": "bus",
            "missing_card": "bus",
            "unknown_bus_line": "bus",
        }
        queue = [(mode, kind) for kind, mode in modes.items() for _ in range(self.bad_counts.get(kind, 0))]
        for mode, kind in queue:
            for index in order:
                trip = trips[index]
                if trip.mode == mode and not trip.bad and trip.card not in used:
                    trip.bad = kind
                    used.add(trip.card)
                    break
        for trip in trips:
            if trip.bad == "same_station":
                trip.destination, trip.line_out, trip.km = trip.origin, trip.line_in, 0.0
                trip.end = trip.start + timedelta(seconds=rng.randint(120, 360))
            elif trip.bad == "unknown_bus_line":
                trip.line_in = "B1024"
                trip.origin = f"B1024-{rng.randint(1, 18):02d}"

    @staticmethod
    def _is_bad_tap(trip: _Trip, item: Mapping[str, Any]) -> bool:
        if trip.bad in ("same_station", "orphan_tap_out"):
            return bool(item["deal_type"] == "metro_out")
        return bool(trip.bad)

    def _taps(
        self, trip: _Trip, card: str, mobile: str | None, rng: random.Random
    ) -> list[tuple[datetime, dict[str, Any]]]:
        who: dict[str, Any] = {"card_no": card}
        if mobile:
            who = {"card_no": f"QR{card[4:]}", "account_mobile": mobile}
        taps: list[tuple[datetime, dict[str, Any]]] = []
        if trip.mode == "bus":
            value = 200
            item = {
                **who,
                "deal_time": trip.start.isoformat(),
                "deal_type": "bus",
                "line_id": trip.line_in,
                "stop_id": trip.origin,
                "vehicle_no": f"皖A{rng.choice('DF')}{rng.randrange(10**5):05d}",
                "deal_value_fen": value,
                "deal_money_fen": value * 9 // 10,
                "transfer": False,
                "region": self.region,
            }
            if trip.bad == "no_offset":
                item["deal_time"] = trip.start.replace(tzinfo=None).isoformat()
            elif trip.bad == "missing_card":
                item.pop("card_no")
                item.pop("account_mobile", None)
            taps.append((trip.start, item))
            return taps
        if trip.bad != "orphan_tap_out":
            taps.append(
                (
                    trip.start,
                    {
                        **who,
                        "deal_time": trip.start.isoformat(),
                        "deal_type": "metro_in",
                        "line_id": trip.line_in,
                        "stop_id": trip.origin,
                        "gate_no": f"G{rng.randint(1, 12):02d}",
                        "deal_value_fen": 0,
                        "deal_money_fen": 0,
                        "transfer": False,
                        "region": self.region,
                    },
                )
            )
        if trip.bad != "unclosed_tap_in":
            value = _fare_fen(trip.km) if trip.km else 0
            taps.append(
                (
                    trip.end,
                    {
                        **who,
                        "deal_time": trip.end.isoformat(),
                        "deal_type": "metro_out",
                        "line_id": trip.line_out,
                        "stop_id": trip.destination,
                        "gate_no": f"G{rng.randint(1, 12):02d}",
                        "deal_value_fen": value,
                        "deal_money_fen": value * 9 // 10,
                        "transfer": trip.line_in != trip.line_out,
                        "region": self.region,
                    },
                )
            )
        return taps

    def _recharge(
        self,
        rng: random.Random,
        start: date,
        days: int,
        cards: list[str],
        metro_stops: list[str],
        network: Network,
    ) -> tuple[datetime, dict[str, Any]]:
        day = start + timedelta(days=rng.randrange(days))
        when = datetime(day.year, day.month, day.day, tzinfo=CST) + timedelta(
            minutes=int(self._minute_of_day(rng)), seconds=rng.randrange(60)
        )
        stop = rng.choice(metro_stops)
        value = rng.choice((2000, 5000, 10000))
        item = {
            "card_no": rng.choice(cards),
            "deal_time": when.isoformat(),
            "deal_type": "recharge",
            "line_id": network.stops[stop].line_id,
            "stop_id": stop,
            "gate_no": "TVM03",
            "deal_value_fen": value,
            "deal_money_fen": value,
            "transfer": False,
            "region": self.region,
        }
        return when, item

    def expected(self, max_journey_minutes: int = 240) -> dict[str, int]:
        """What a correct pull of the whole dataset ends with.

        ``records``: credited journeys; ``schema_invalid``: items the trip schema rejects; ``rejected``: items the
        adapter rejects (tap-out without tap-in, same station, unknown bus line); ``abandoned``: tap-ins given up
        (tapped in again, or older than ``max_journey_minutes`` before the last tap); ``held``: tap-ins still
        waiting for their tap-out; ``quarantined``: the sum of the three kinds of failure.
        """
        counts = Counter(t.bad for t in self._journeys)
        metro_by_card: dict[int, list[datetime]] = {}
        for trip in self._journeys:
            if trip.mode == "metro" and trip.bad != "orphan_tap_out":
                metro_by_card.setdefault(trip.card, []).append(trip.start)
        abandoned = held = 0
        horizon = self._last_valid - timedelta(minutes=max_journey_minutes)
        for trip in self._journeys:
            if trip.bad != "unclosed_tap_in":
                continue
            later_tap_in = any(s > trip.start for s in metro_by_card.get(trip.card, ()))
            if later_tap_in or trip.start < horizon:
                abandoned += 1
            else:
                held += 1
        schema_invalid = sum(len(self.bad[k]) for k in _SCHEMA_INVALID)
        rejected = counts["orphan_tap_out"] + counts["same_station"] + counts["unknown_bus_line"]
        good = sum(1 for t in self._journeys if not t.bad)
        return {
            "items": len(self.items),
            "records": good,
            "schema_invalid": schema_invalid,
            "rejected": rejected,
            "abandoned": abandoned,
            "held": held,
            "quarantined": schema_invalid + rejected + abandoned,
        }


def _base36(n: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return digits[n // 36] + digits[n % 36]
