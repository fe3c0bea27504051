"""The loopback consumer: verifies signatures over the raw body, dedups on (source, id), counts, misbehaves on cue."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tanpuhui.hub.consumer import BATCH_CONTENT_TYPE, EVENT_CONTENT_TYPE, ConsumerServer, Scripted
from tanpuhui.sdk import WebhookSigner


def event(i: int, scenario: str = "metro", kg: float = 0.5) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"01HX00000000000000000000{i:02d}",
        "source": "urn:tanpuhui:hub/transit_card/trips",
        "type": "org.tanpuhui.reduction.v1",
        "datacontenttype": "application/json",
        "data": {"scenario": scenario, "quantification": {"reduction_kgco2e": kg}},
    }


def post(server: ConsumerServer, secret: str, payload: object, content_type: str = BATCH_CONTENT_TYPE, **kw):
    body = orjson.dumps(payload)
    headers = WebhookSigner(secret).headers(kw.pop("msg_id", "msg_1"), body)
    headers["content-type"] = content_type
    return httpx.post(server.url, content=kw.pop("body", body), headers=headers, timeout=5)


def test_starts_fast_and_refuses_connections_before_start_and_after_stop(secret):
    server = ConsumerServer(secret)
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/stats", timeout=2)
        started = time.perf_counter()
        server.start()
        assert time.perf_counter() - started < 0.5
        assert httpx.get(f"{server.base_url}/stats", timeout=2).json()["requests"] == 0
        server.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/stats", timeout=2)
        server.start()
        assert httpx.get(f"{server.base_url}/stats", timeout=2).status_code == 200
    finally:
        server.close()


def test_dedups_on_source_and_id_and_totals_kg_by_scenario(consumer, secret):
    first = post(consumer, secret, [event(1), event(2, "bus", 0.25)])
    again = post(consumer, secret, [event(2, "bus", 0.25), event(3)], msg_id="msg_2")
    single = post(consumer, secret, event(4, "bus", 1.0), content_type=EVENT_CONTENT_TYPE, msg_id="msg_3")

    assert [r.status_code for r in (first, again, single)] == [200, 200, 200]
    assert again.json() == {"received": 2, "duplicates": 1}
    stats = httpx.get(f"{consumer.base_url}/stats", timeout=2).json()
    assert stats == consumer.stats()
    assert (stats["received"], stats["unique"], stats["duplicates"]) == (5, 4, 1)
    assert stats["kgco2e_by_scenario"] == {"bus": 1.25, "metro": 1.0}


def test_a_signature_over_other_bytes_is_rejected(consumer, secret):
    tampered = orjson.dumps([event(1, kg=999.0)])

    response = post(consumer, secret, [event(1)], body=tampered)

    assert response.status_code == 401
    assert consumer.stats()["rejected"] == 1 and consumer.stats()["unique"] == 0


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing"),
        ({"webhook-id": "m", "webhook-timestamp": "hello", "webhook-signature": "v1,AAAA"}, "unix seconds"),
        ({"webhook-id": "m", "webhook-timestamp": str(int(time.time())), "webhook-signature": "garbage"}, "v1"),
    ],
)
def test_malformed_signature_headers_are_a_401_not_a_500(consumer, headers, detail):
    response = httpx.post(
        consumer.url, content=b"[]", headers={**headers, "content-type": BATCH_CONTENT_TYPE}, timeout=5
    )
    assert response.status_code == 401
    assert detail in response.json()["detail"]


def test_wrong_content_type_and_malformed_events_are_4xx(consumer, secret):
    assert post(consumer, secret, [event(1)], content_type="application/json").status_code == 415
    assert post(consumer, secret, {"not": "a list"}).status_code == 400
    missing_source = {k: v for k, v in event(1).items() if k != "source"}
    response = post(consumer, secret, [missing_source])
    assert response.status_code == 400 and "source" in response.json()["detail"]


def test_scripted_responses_come_first_then_it_behaves(make_consumer, secret):
    server = make_consumer(script=[503, Scripted(429, retry_after=2)]).start()

    statuses = [post(server, secret, [event(1)]) for _ in range(3)]

    assert [r.status_code for r in statuses] == [503, 429, 200]
    assert statuses[1].headers["retry-after"] == "2"
    assert server.stats()["unique"] == 1


def test_down_and_gone_modes(make_consumer, secret):
    server = make_consumer(mode="down").start()
    assert post(server, secret, [event(1)]).status_code == 503
    server.set_mode("gone")
    assert post(server, secret, [event(1)]).status_code == 410
    server.set_mode("normal")
    assert post(server, secret, [event(1)]).status_code == 200


def test_received_events_are_persisted_once_to_jsonl(make_consumer, secret, tmp_path):
    path = tmp_path / "received" / "events.jsonl"
    server = make_consumer(jsonl_path=path).start()

    post(server, secret, [event(1), event(2)])
    post(server, secret, [event(2), event(3)], msg_id="msg_2")
    server.stop()

    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [e["id"] for e in lines] == [event(i)["id"] for i in (1, 2, 3)]
