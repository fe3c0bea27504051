"""The admin API: bearer token, stream status, pull now, quarantine and dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.consumer import ConsumerServer, Scripted
from tanpuhui.hub.server.openapi_components import COMPONENT_SCHEMAS
from tanpuhui.testing.loopback import wait_until

from .conftest import ADMIN_TOKEN, MOBILE, RunningSidecar, SidecarFactory, hub_config, ride, sink_table

ADMIN_ROUTES = [
    ("GET", "/v1/admin/overview"),
    ("GET", "/v1/admin/streams"),
    ("POST", "/v1/admin/streams/transit_card/transactions/pull"),
    ("GET", "/v1/admin/quarantine"),
    ("GET", "/v1/admin/quarantine/1"),
    ("POST", "/v1/admin/quarantine/replay"),
    ("GET", "/v1/admin/dead-letters"),
    ("POST", "/v1/admin/dead-letters/replay"),
]


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=1500, seed=7) as partner:
        yield partner


def with_transit(start: SidecarFactory, tmp_path: Path, sandbox: TransitSandbox, **kwargs: Any) -> RunningSidecar:
    settings = sandbox.settings(client_secret={"env": "TRANSIT_SECRET"}, page_size=100)
    config = hub_config(
        tmp_path,
        adapters={"transit_card": {**settings, **kwargs.pop("transit", {})}},
        environ={"TRANSIT_SECRET": sandbox.client_secret},
        **kwargs,
    )
    return start(config)


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x", "Bearer", "牛"]
)
def test_admin_routes_need_the_bearer_token(start_sidecar: SidecarFactory, authorization: str | None) -> None:
    server = start_sidecar()
    headers = {"authorization": authorization.encode()} if authorization is not None else {}
    for method, path in ADMIN_ROUTES:
        response = server.http.request(method, path, headers=headers, json={"ids": [1]})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_without_a_configured_token_the_admin_api_is_disabled(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    config = hub_config(tmp_path, server={"admin_token": None})
    response = start_sidecar(config).http.get("/v1/admin/streams", headers={"authorization": "Bearer"})
    assert response.status_code == 403


def test_pull_now_pulls_and_stream_status_shows_cursor_and_last_success(
    start_sidecar: SidecarFactory, tmp_path: Path, sandbox: TransitSandbox
) -> None:
    server = with_transit(start_sidecar, tmp_path, sandbox)
    response = server.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=true")
    assert response.status_code == 200, response.text
    summary = response.json()["summary"]
    expected = sandbox.dataset.expected()
    assert (summary["pulled"], summary["inserted"], summary["error"]) == (expected["items"], expected["records"], None)
    streams = {(s["adapter"], s["stream"]): s for s in server.admin("GET", "/v1/admin/streams").json()["streams"]}
    transit = streams[("transit_card", "transactions")]
    assert transit["kind"] == "pull" and transit["cursor"] and transit["last_success"]
    assert transit["last_error"] is None and transit["running"] is False
    assert transit["last_run"]["inserted"] == expected["records"]
    assert streams[("bike_share", "rides")]["kind"] == "push"


def test_the_overview_is_what_the_console_and_tanpuhui_status_json_show(
    start_sidecar: SidecarFactory, tmp_path: Path, sandbox: TransitSandbox
) -> None:
    server = with_transit(start_sidecar, tmp_path, sandbox)
    assert server.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=true").status_code == 200
    doc = server.admin("GET", "/v1/admin/overview").json()
    streams = {(s["adapter"], s["stream"]): s for s in doc["streams"]}
    transit = streams[("transit_card", "transactions")]
    expected = sandbox.dataset.expected()
    assert transit["kind"] == "pull" and transit["last_run"]["inserted"] == expected["records"]
    assert transit["stale"] is False and transit["freshness_seconds"] is not None and transit["cursor"]
    assert streams[("bike_share", "rides")]["kind"] == "push"
    assert doc["counts"] and all(isinstance(n, int) for n in doc["counts"].values())
    # One document, one set of names: `tanpuhui status --json` prints Overview.as_dict() too, and the OpenAPI
    # component names every field either of them carries.
    component = COMPONENT_SCHEMAS["Overview"]["properties"]
    assert set(doc) == set(component)
    assert set(transit) == set(component["streams"]["items"]["properties"])


def test_pull_now_while_a_pull_runs_is_409(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    with TransitSandbox(trips=8000, seed=3) as big:
        server = with_transit(start_sidecar, tmp_path, big, transit={"page_size": 20})
        first = server.admin("POST", "/v1/admin/streams/transit_card/transactions/pull")
        second = server.admin("POST", "/v1/admin/streams/transit_card/transactions/pull")
        assert first.status_code == 202
        assert second.status_code == 409
        assert "already running" in second.json()["detail"]
        server.stop()  # a running pull stops at its next page for the shutdown


def test_pull_now_of_an_unknown_or_push_stream_is_refused(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    assert server.admin("POST", "/v1/admin/streams/nope/x/pull").status_code == 404
    assert server.admin("POST", "/v1/admin/streams/bike_share/rides/pull").status_code == 409


def test_a_partner_failure_is_the_streams_last_error(
    start_sidecar: SidecarFactory, tmp_path: Path, sandbox: TransitSandbox
) -> None:
    server = with_transit(start_sidecar, tmp_path, sandbox, transit={"retry_attempts": 1})
    sandbox.fail_next(503)
    summary = server.admin("POST", "/v1/admin/streams/transit_card/transactions/pull?wait=1").json()["summary"]
    assert "503" in summary["error"]
    (status,) = [s for s in server.admin("GET", "/v1/admin/streams").json()["streams"] if s["stream"] == "transactions"]
    assert "503" in status["last_error"] and status["consecutive_failures"] == 1


def test_quarantine_list_show_masked_and_replay(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    server.post_ride([ride(1, km=60.0, note=f"call {MOBILE}")], "msg_q1")
    (entry,) = server.admin("GET", "/v1/admin/quarantine").json()["entries"]
    assert entry["stage"] == "normalize" and entry["errors"][0]["pointer"] == "/km"
    assert "raw" not in entry
    shown = server.admin("GET", f"/v1/admin/quarantine/{entry['id']}")
    assert shown.json()["raw"]["mobile"] == "139****3456"
    assert MOBILE not in shown.text
    assert server.admin("GET", "/v1/admin/quarantine/999").status_code == 404
    replay = server.admin("POST", "/v1/admin/quarantine/replay", json={"ids": [entry["id"], 999]}).json()
    assert (replay["failed"], replay["missing"]) == (1, 1)
    assert replay["results"][0]["errors"][0]["pointer"] == "/km"
    assert server.admin("POST", "/v1/admin/quarantine/replay", json={"ids": "all"}).status_code == 400


def test_quarantine_replay_resolves_once_the_adapter_accepts_the_item(
    start_sidecar: SidecarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import RidesPush

    server = start_sidecar()
    server.post_ride([ride(1, km=60.0)], "msg_q2")
    original = RidesPush.normalize
    monkeypatch.setattr(RidesPush, "normalize", lambda self, item, ctx: original(self, {**item, "km": 50}, ctx))
    replay = server.admin("POST", "/v1/admin/quarantine/replay", json={"all": True}).json()
    assert replay["resolved"] == 1
    assert server.admin("GET", "/v1/admin/quarantine").json()["entries"] == []
    assert server.admin("GET", "/v1/admin/quarantine?status=resolved").json()["entries"][0]["status"] == "resolved"


def test_dead_letters_are_listed_and_replayed(start_sidecar: SidecarFactory, consumer: ConsumerServer) -> None:
    consumer.push(Scripted(400))  # a permanent failure: the batch is dead-lettered at once
    server = start_sidecar(sinks=sink_table(consumer))
    server.post_ride([ride(1), ride(2)], "msg_dl")
    letters = wait_until(
        lambda: server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"], what="dead letters"
    )
    assert [d["sink"] for d in letters] == ["platform", "platform"]
    assert "400" in letters[0]["error"]
    replay = server.admin("POST", "/v1/admin/dead-letters/replay", json={"all": True, "sink": "platform"}).json()
    assert sorted(replay["delivered"]) == sorted(d["id"] for d in letters)
    assert consumer.stats()["unique"] == 2
    assert server.admin("GET", "/v1/admin/dead-letters").json()["dead_letters"] == []
