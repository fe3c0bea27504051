"""Records pushed by the YRD platforms: Standard Webhooks signatures, parsing, and the same normalization."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
import respx

from tanpuhui.adapters.yrd_scenarios import RecordsPushStream, YrdScenariosAdapter
from tanpuhui.hub.drivers.push import Refused
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import SignatureError, WebhookSigner
from tanpuhui.testing import Cassette

from .conftest import (
    CASSETTES,
    WEBHOOK_SECRET,
    HubFactory,
    jiangsu_metro,
    make_settings,
    metro_record,
    outbox,
    settings_dict,
    voids,
)

RECORDED = orjson.loads((CASSETTES / "push_signatures.json").read_bytes())


def signed(body: bytes, msg_id: str | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """Standard Webhooks headers; one webhook id per body unless given (a partner's retry reuses its id)."""
    return WebhookSigner(secret).headers(msg_id or f"msg_yrd_{hashlib.sha256(body).hexdigest()[:16]}", body)


def push(hub: Hub, items: list[dict[str, Any]], msg_id: str | None = None) -> Any:
    body = orjson.dumps({"items": items})
    return hub.receive("yrd_scenarios", "records_push", signed(body, msg_id), body).page


def recorded_request(name: str) -> tuple[dict[str, str], bytes]:
    (found,) = [r for r in RECORDED["requests"] if r["name"] == name]
    return found["headers"], found["body"].encode()


def recorded_stream() -> RecordsPushStream:
    adapter = YrdScenariosAdapter(make_settings(webhook_secrets=[RECORDED["webhook_secret"]]))
    stream = adapter.stream("records_push")
    assert isinstance(stream, RecordsPushStream)
    return stream


def test_a_signed_push_is_normalized_and_committed(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    result = push(hub, [metro_record(), jiangsu_metro()])
    assert (result.items, result.inserted, result.quarantined) == (2, 2, 0)
    records = outbox(hub)
    assert {r["source"]["stream"] for r in records} == {"records_push"}
    assert {r["quantification"]["methodology_id"] for r in records} == {"tph.transit.metro"}


def test_the_recorded_push_verifies_at_its_timestamp() -> None:
    headers, body = recorded_request("valid")
    assert recorded_stream().verifier().verify(headers, body, now=RECORDED["timestamp"]) == "msg_yrd_0001"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("tampered_body", "no webhook signature matches"),
        ("unknown_secret", "no webhook signature matches"),
        ("malformed_signature_header", "webhook-signature has no well-formed 'v1,<base64>' signature"),
    ],
)
def test_a_recorded_push_with_a_bad_signature_is_refused(name: str, reason: str) -> None:
    headers, body = recorded_request(name)
    with pytest.raises(SignatureError, match=reason):
        recorded_stream().verifier().verify(headers, body, now=RECORDED["timestamp"])


def test_a_recorded_push_replayed_later_is_outside_the_tolerance(hub_factory: HubFactory) -> None:
    hub = hub_factory(
        settings_dict(webhook_secrets=[{"env": "RECORDED_SECRET"}]),
        environ={"RECORDED_SECRET": RECORDED["webhook_secret"]},
    )
    headers, body = recorded_request("valid")
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        hub.receive("yrd_scenarios", "records_push", headers, body)


def test_a_push_with_a_bad_signature_stores_nothing(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    body = orjson.dumps({"items": [metro_record()]})
    headers = signed(body, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    with pytest.raises(SignatureError, match="no webhook signature matches"):
        hub.receive("yrd_scenarios", "records_push", headers, body)
    assert outbox(hub) == [] and hub.store.quarantine_list() == []


def test_a_push_without_configured_secrets_is_refused(hub_factory: HubFactory) -> None:
    hub = hub_factory(settings_dict(webhook_secrets=[]))
    body = orjson.dumps([metro_record()])
    with pytest.raises(SignatureError, match="no webhook secret configured"):
        hub.receive("yrd_scenarios", "records_push", signed(body), body)


def test_a_body_that_is_not_json_is_refused_before_anything_is_stored(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    body = b"record_id=SH2024110500000017"
    outcome = hub.receive("yrd_scenarios", "records_push", signed(body), body)
    assert isinstance(outcome, Refused) and outcome.reason == "unparseable"
    assert "body is not JSON" in outcome.detail
    assert hub.store.quarantine_list() == []


def test_a_single_pushed_object_is_accepted_like_a_batch(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    body = orjson.dumps(metro_record())
    result = hub.receive("yrd_scenarios", "records_push", signed(body), body).page
    assert result.inserted == 1


def test_invalid_pushed_items_are_quarantined_and_the_rest_committed(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    no_offset = metro_record("SH2024110500000021")
    no_offset["start_time"] = "2024-11-05T08:11:00"
    result = push(hub, [no_offset, metro_record(), jiangsu_metro(activity_quantity=None, activity_unit=None)])
    assert (result.inserted, result.quarantined) == (1, 2)
    stages = sorted((e.stage, e.problems[0]["pointer"]) for e in hub.store.quarantine_list())
    assert stages == [("normalize", "/methodology_code"), ("raw", "/start_time")]


def test_a_record_both_pushed_and_pulled_is_forwarded_once(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    push(hub, [metro_record()])
    page = {
        "code": "0000",
        "msg": "success",
        "data": {"items": [metro_record()], "next_cursor": "c1", "has_more": False},
    }
    with respx.mock(assert_all_called=False) as router:
        Cassette(
            [
                {
                    "request": {"method": "POST", "url": "https://yrd-exchange.sandbox.example/oauth/token"},
                    "response": {"json": {"access_token": "t1", "token_type": "Bearer", "expires_in": 1800}},
                },
                {
                    "request": {"method": "GET", "url": "https://yrd-exchange.sandbox.example/v1/records?limit=500"},
                    "response": {"json": page},
                },
            ]
        ).mount(router)
        (summary,) = asyncio.run(hub.pull("yrd_scenarios", "records"))
    assert (summary.inserted, summary.duplicates) == (0, 1)
    assert len(outbox(hub)) == 1


def test_a_push_resent_with_the_same_items_only_counts_duplicates(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    push(hub, [metro_record(), jiangsu_metro()])
    again = push(hub, [metro_record(), jiangsu_metro()], msg_id="msg_yrd_test_0002")
    assert (again.inserted, again.duplicates) == (0, 2)


def test_a_cancellation_pushed_after_the_active_record_is_counted_and_voids_it(hub_factory: HubFactory) -> None:
    hub = hub_factory()
    push(hub, [metro_record()])
    (forwarded,) = outbox(hub)
    result = push(hub, [metro_record(status="cancelled", updated_at="2024-11-05T15:00:00+08:00")], "msg_yrd_test_0002")
    assert (result.valid_items, result.records, result.quarantined) == (1, 0, 0)
    state = hub.store.load_checkpoint("yrd_scenarios", "records_push").state
    assert state["withdrawn"] == {"shanghai:cancelled": 1}
    assert state["withdrawn_log"][0]["record_id"] == forwarded["record_id"]
    assert outbox(hub) == [forwarded]  # the record stays as forwarded; a void names it (docs/verification.md)
    (void,) = voids(hub)
    assert void["voids"] == forwarded["record_id"]


def test_push_platforms_limits_who_may_push(hub_factory: HubFactory) -> None:
    hub = hub_factory(settings_dict(push_platforms=["shanghai"]))
    result = push(hub, [metro_record(), jiangsu_metro()])
    assert (result.inserted, result.quarantined) == (1, 1)
    (entry,) = hub.store.quarantine_list()
    assert entry.problems[0]["pointer"] == "/platform"
    assert "not one this endpoint serves (shanghai)" in entry.problems[0]["message"]


def test_pushed_personal_identifiers_are_not_stored_in_clear(hub_factory: HubFactory, tmp_path: Any) -> None:
    hub = hub_factory()
    bad = metro_record("SH2024110500000022", resident_id="340524198001010011")
    push(hub, [metro_record(), bad])
    hub.store.close()
    for name in ("hub.db", "hub.db-wal"):
        path = tmp_path / name
        if path.exists():
            data = path.read_bytes()
            assert b"19955123456" not in data and b"340524198001010011" not in data
