"""The distance table: validation with JSON pointers, shortest paths over lines and transfers, bus averages."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tanpuhui.adapters.transit_card import Network
from tanpuhui.sdk import PartnerResponseError

from .conftest import NETWORK, metro_line


def _network(doc: dict[str, Any] | None = None) -> Network:
    return Network.from_document(doc or NETWORK)


def test_distance_along_one_line_is_the_difference_of_cumulative_km() -> None:
    assert _network().metro_km("M1-02", "M1-05") == pytest.approx(3.9)


def test_distance_is_the_same_in_both_directions() -> None:
    network = _network()
    assert network.metro_km("M1-05", "M1-02") == network.metro_km("M1-02", "M1-05")


def test_a_transfer_station_joins_two_lines_at_zero_km() -> None:
    # 合肥火车站 (M1) -> 大东门 (2.6 km), change to M2, 大东门 -> 瑶海公园 (1.8 km)
    assert _network().metro_km("M1-01", "M2-05") == pytest.approx(4.4)


def test_shortest_path_takes_a_transfer_when_it_is_shorter_than_staying_on_the_line() -> None:
    doc = {
        "version": "loop",
        "lines": [
            metro_line("A", ("x", 0), ("y", 1.0), ("z", 9.0)),
            metro_line("B", ("y", 0), ("w", 1.0), ("z", 2.0)),
        ],
    }
    # x -> y on A (1 km), change to B at y, y -> z on B (2 km): 3 km, against 9 staying on A
    assert _network(doc).metro_km("A-01", "A-03") == pytest.approx(3.0)


def test_platforms_of_one_station_on_two_lines_are_the_same_station() -> None:
    network = _network()
    assert network.same_station("M1-03", "M2-04")
    assert not network.same_station("M1-03", "M1-04")


def test_unconnected_platforms_have_no_distance() -> None:
    doc = copy.deepcopy(NETWORK)
    for stop in doc["lines"][1]["stops"]:
        stop["station"] = "m2-" + stop["station"]
    assert _network(doc).metro_km("M1-01", "M2-05") is None


def test_bus_lines_give_their_average_trip_length_and_metro_lines_none() -> None:
    network = _network()
    assert network.bus_km("B126") == 4.2
    assert network.bus_km("M1") is None
    assert network.bus_km("B999") is None


def test_a_table_breaking_the_schema_is_a_partner_error_naming_the_json_pointer() -> None:
    doc = copy.deepcopy(NETWORK)
    doc["lines"][0]["stops"][1]["km"] = "1.4"
    del doc["lines"][2]["avg_trip_km"]
    with pytest.raises(PartnerResponseError) as err:
        _network(doc)
    message = str(err.value)
    assert "/lines/0/stops/1/km" in message and "is not of type" in message
    assert '/lines/2: "avg_trip_km" is a required property' in message


def test_km_going_backwards_along_a_line_is_reported_with_its_pointer() -> None:
    doc = copy.deepcopy(NETWORK)
    doc["lines"][1]["stops"][3]["km"] = 2.0
    with pytest.raises(PartnerResponseError, match=r"/lines/1/stops/3/km: cumulative km must increase along line 'M2'"):
        _network(doc)


def test_a_line_listed_twice_is_reported() -> None:
    doc = copy.deepcopy(NETWORK)
    doc["lines"].append(copy.deepcopy(doc["lines"][0]))
    with pytest.raises(
        PartnerResponseError, match=r"/lines/3/line_id: line 'M1' is listed twice \(first at /lines/0\)"
    ):
        _network(doc)


def test_a_table_that_is_not_an_object_is_reported() -> None:
    with pytest.raises(PartnerResponseError, match=r"GET /v1/network: .*/: .* is not of type \"object\""):
        _network(["M1"])  # type: ignore[arg-type]
