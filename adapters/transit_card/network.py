"""The operator's distance table (``GET /v1/network``) and the trip distances derived from it.

A card transaction carries no distance. A metro journey's distance is the shortest path between its tap-in and
tap-out stops over the metro network: consecutive stops of a line are joined by the difference of their cumulative
km, and stops sharing a ``station`` on two lines are joined by a 0 km transfer. A bus tap counts as the line's
published average passenger trip length (``avg_trip_km``), since a single tap says where the rider got on only.

The table is validated against the ``transit-card-network`` schema and then for what the schema cannot say (a line
listed twice, km going backwards); each problem is reported with its JSON pointer.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema_rs

from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import PartnerResponseError

__all__ = ["MetroStop", "Network"]

_MAX_REPORTED = 5


@dataclass(frozen=True, slots=True)
class MetroStop:
    """One metro platform: the line it is on and the station it belongs to (shared by transfer platforms)."""

    stop_id: str
    line_id: str
    station: str
    name: str
    km: float


@cache
def _validator() -> Any:
    return jsonschema_rs.validator_for(load_builtin("transit-card-network"))


def _pointer(path: Iterable[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _schema_problems(doc: Any) -> Iterator[str]:
    found = [(_pointer(e.instance_path), e.message) for e in _validator().iter_errors(doc)]
    for pointer, message in sorted(found):
        yield f"{pointer or '/'}: {message}"


class Network:
    """A validated distance table with cached shortest-path distances.

    Build it with :meth:`from_document`; look distances up with :meth:`metro_km` and :meth:`bus_km`.
    """

    __slots__ = ("_adjacency", "_from", "bus_lines", "stops", "version")

    def __init__(self, version: str, stops: Mapping[str, MetroStop], bus_lines: Mapping[str, float]) -> None:
        self.version = version
        self.stops: dict[str, MetroStop] = dict(stops)
        """Metro platforms by ``stop_id``."""
        self.bus_lines: dict[str, float] = dict(bus_lines)
        """Bus ``line_id`` -> average passenger trip km."""
        self._adjacency: dict[str, list[tuple[str, float]]] = {stop_id: [] for stop_id in self.stops}
        self._from: dict[str, dict[str, float]] = {}

    @classmethod
    def from_document(cls, doc: Any, where: str = "GET /v1/network") -> Network:
        """Validate a ``transit-card-network`` document and index it.

        A table that breaks the schema or its own invariants is a :class:`PartnerResponseError` naming the JSON
        pointer of each problem found (the first few).
        """
        problems = list(_schema_problems(doc))
        if not problems:
            problems = list(_invariant_problems(doc))
        if problems:
            more = f" (and {len(problems) - _MAX_REPORTED} more)" if len(problems) > _MAX_REPORTED else ""
            raise PartnerResponseError(
                f"{where}: the distance table is not a valid transit-card-network document: "
                f"{'; '.join(problems[:_MAX_REPORTED])}{more}"
            )
        stops: dict[str, MetroStop] = {}
        bus_lines: dict[str, float] = {}
        edges: list[tuple[str, str, float]] = []
        by_station: dict[str, list[str]] = {}
        for line in doc["lines"]:
            line_id = line["line_id"]
            if line["mode"] == "bus":
                bus_lines[line_id] = float(line["avg_trip_km"])
                continue
            previous: MetroStop | None = None
            for raw in line["stops"]:
                stop = MetroStop(
                    stop_id=raw["stop_id"],
                    line_id=line_id,
                    # A platform without a station code is its own station (no transfer possible there).
                    station=raw.get("station") or f"{line_id}/{raw['stop_id']}",
                    name=raw.get("name", ""),
                    km=float(raw["km"]),
                )
                stops.setdefault(stop.stop_id, stop)
                by_station.setdefault(stop.station, []).append(stop.stop_id)
                if previous is not None:
                    edges.append((previous.stop_id, stop.stop_id, stop.km - previous.km))
                previous = stop
        network = cls(str(doc["version"]), stops, bus_lines)
        for a, b, km in edges:
            network._link(a, b, km)
        for platforms in by_station.values():
            for i, a in enumerate(platforms):
                for b in platforms[i + 1 :]:
                    network._link(a, b, 0.0)
        return network

    def _link(self, a: str, b: str, km: float) -> None:
        if a != b:
            self._adjacency[a].append((b, km))
            self._adjacency[b].append((a, km))

    def bus_km(self, line_id: str) -> float | None:
        """The average trip km of a bus line; None for a line the table does not list as bus."""
        return self.bus_lines.get(line_id)

    def same_station(self, a: str, b: str) -> bool:
        """Whether two metro platforms belong to one station (the same stop, or two lines' platforms there)."""
        return self.stops[a].station == self.stops[b].station

    def metro_km(self, origin: str, destination: str) -> float | None:
        """Shortest metro distance between two platforms; None when no path joins them.

        Distances from an origin are computed once (Dijkstra over the whole network, ~100 platforms) and cached,
        so a lookup after the first costs two dict reads.
        """
        table = self._from.get(origin)
        if table is None:
            table = self._from[origin] = self._dijkstra(origin)
        return table.get(destination)

    def _dijkstra(self, origin: str) -> dict[str, float]:
        done: dict[str, float] = {}
        queue: list[tuple[float, str]] = [(0.0, origin)]
        while queue:
            km, node = heapq.heappop(queue)
            if node in done:
                continue
            done[node] = km
            for neighbour, step in self._adjacency[node]:
                if neighbour not in done:
                    heapq.heappush(queue, (km + step, neighbour))
        return {stop: round(km, 3) for stop, km in done.items()}


def _invariant_problems(doc: Mapping[str, Any]) -> Iterator[str]:
    seen: dict[str, int] = {}
    for i, line in enumerate(doc["lines"]):
        line_id = line["line_id"]
        if line_id in seen:
            yield f"/lines/{i}/line_id: line {line_id!r} is listed twice (first at /lines/{seen[line_id]})"
        seen.setdefault(line_id, i)
        if line["mode"] != "metro":
            continue
        stops = line["stops"]
        for j in range(1, len(stops)):
            if stops[j]["km"] <= stops[j - 1]["km"]:
                yield (
                    f"/lines/{i}/stops/{j}/km: cumulative km must increase along line {line_id!r}; "
                    f"{stops[j]['km']} follows {stops[j - 1]['km']}"
                )
