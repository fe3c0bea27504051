"""A record held by a plausibility rule on the running sidecar: listed in the quarantine with the rule named, still
held on a plain replay, released through the admin API, counted in /metrics."""

from __future__ import annotations

import orjson

from .conftest import SidecarFactory, ride
from .console_kit import CONSOLE, csrf_of, signed_in

LONG_RIDES = {"rules": {"bike_ride_length": {"kind": "max_activity", "scenarios": ["shared_bike"], "limit": 10}}}


def test_a_held_ride_is_listed_released_through_the_admin_api_and_counted(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(plausibility=LONG_RIDES)
    answer = server.post_ride([ride(1, km=2.4), ride(2, km=24.0)], "msg_p1")
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert results[0]["status"] == "accepted"
    assert (results[1]["status"], results[1]["stage"]) == ("quarantined", "plausibility")
    assert results[1]["errors"][0]["message"].startswith("plausibility rule bike_ride_length: 24 km is above")
    (entry,) = server.admin("GET", "/v1/admin/quarantine").json()["entries"]
    assert entry["stage"] == "plausibility"

    again = server.admin("POST", "/v1/admin/quarantine/replay", json={"ids": [entry["id"]]}).json()
    assert again["failed"] == 1
    bad = server.admin("POST", "/v1/admin/quarantine/replay", json={"ids": [entry["id"]], "release": "yes"})
    assert bad.status_code == 400 and bad.json()["detail"] == '"release" must be true or false'
    released = server.admin("POST", "/v1/admin/quarantine/replay", json={"ids": [entry["id"]], "release": True})
    assert released.json()["resolved"] == 1
    assert server.admin("GET", "/v1/admin/quarantine").json()["entries"] == []

    rows = server.sidecar.hub.store.read_outbox(0, 10)
    (held,) = [orjson.loads(r.body) for r in rows if orjson.loads(r.body)["activity"]["quantity"] == 24.0]
    assert held["plausibility"][0]["rule"] == "bike_ride_length"
    assert held["plausibility"][0]["action"] == "released"

    metrics = server.http.get("/metrics").text
    assert 'action="hold",adapter="bike_share",rule="bike_ride_length",stream="rides"} 2.0' in metrics
    assert 'action="released",adapter="bike_share",rule="bike_ride_length",stream="rides"} 1.0' in metrics


def test_the_console_releases_a_held_ride_from_its_entry_page(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(plausibility=LONG_RIDES)
    server.post_ride([ride(1, km=24.0), ride(2, km=60.0)], "msg_p2")  # 60 km: refused by the adapter itself
    entries = {e["stage"]: e for e in server.admin("GET", "/v1/admin/quarantine").json()["entries"]}
    held, refused = entries["plausibility"], entries["normalize"]
    client = signed_in(server)
    try:
        assert 'value="release-one"' not in client.get(f"{CONSOLE}/quarantine/{refused['id']}").text
        page = client.get(f"{CONSOLE}/quarantine/{held['id']}").text
        assert 'value="release-one"' in page and "plausibility rule bike_ride_length" in page
        done = client.post(
            f"{CONSOLE}/quarantine/act", data={"csrf": csrf_of(page), "action": "release-one", "id": str(held["id"])}
        )
        assert done.status_code == 303 and "released+1%3A+1+resolved" in done.headers["location"]
    finally:
        client.close()
    assert [e["id"] for e in server.admin("GET", "/v1/admin/quarantine").json()["entries"]] == [refused["id"]]
