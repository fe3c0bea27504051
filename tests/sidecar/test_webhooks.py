"""Webhooks on the real sidecar: Standard Webhooks verification, idempotency, limits, per-item reports."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tanpuhui.sdk import SignatureError, WebhookSigner, WebhookVerifier
from tanpuhui.testing.loopback import wait_until

from .conftest import (
    MOBILE,
    OLD_PUSH_SECRET,
    PUSH_SECRET,
    SidecarFactory,
    hub_config,
    ride,
    signed,
)

ROUTE = "/v1/webhooks/bike_share/rides"


def outbox_ids(tmp_path: Path) -> list[str]:
    """Read the store with a connection of our own: what a 200 promised must already be durable."""
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        return [row[0] for row in conn.execute("SELECT record_id FROM outbox ORDER BY seq")]


def test_a_signed_ride_is_committed_before_the_200(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    server = start_sidecar()
    response = server.post_ride(ride(1), "msg_2b7KqX0001")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer == {
        "webhook_id": "msg_2b7KqX0001",
        "adapter": "bike_share",
        "stream": "rides",
        "items": 1,
        "accepted": 1,
        "quarantined": 0,
        "records": 1,
        "results": [{"index": 0, "status": "accepted"}],
    }
    assert len(outbox_ids(tmp_path)) == 1
    assert response.headers["x-request-id"]


def test_invalid_items_are_quarantined_and_reported_per_item(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    items = [ride(1), {**ride(2), "start": "2024-11-05 08:02:00"}, ride(3, km=80.0), {"ride_id": "R4"}, ride(5)]
    answer = server.post_ride(items, "msg_batch_1").json()
    assert (answer["items"], answer["accepted"], answer["quarantined"], answer["records"]) == (5, 2, 3, 2)
    results = answer["results"]
    assert [r["status"] for r in results] == ["accepted", "quarantined", "quarantined", "quarantined", "accepted"]
    assert results[1] == {
        "index": 1,
        "status": "quarantined",
        "stage": "raw",
        "errors": [{"pointer": "/start", "message": '"2024-11-05 08:02:00" is not a "date-time"', "keyword": "format"}],
    }
    assert results[2]["stage"] == "normalize" and results[2]["errors"][0]["pointer"] == "/km"
    assert {e["message"] for e in results[3]["errors"]} >= {'"mobile" is a required property'}
    entries = server.admin("GET", "/v1/admin/quarantine").json()["entries"]
    assert [e["partner_record_id"] for e in entries] == ["R000002", "R000003", "R4"]


def test_a_repeated_webhook_id_gets_the_first_answer_and_stores_nothing_twice(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    server = start_sidecar()
    items = [ride(1), ride(2, km=99.0)]
    first = server.post_ride(items, "msg_repeat")
    again = server.post_ride(items, "msg_repeat")  # re-signed: a partner's retry carries a new timestamp
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["x-webhook-replayed"] == "true" and "x-webhook-replayed" not in first.headers
    assert len(outbox_ids(tmp_path)) == 1
    assert len(server.admin("GET", "/v1/admin/quarantine").json()["entries"]) == 1


def test_a_webhook_id_reused_with_another_body_is_422(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    assert server.post_ride(ride(1), "msg_reused").status_code == 200
    response = server.post_ride(ride(2), "msg_reused")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "msg_reused" in response.json()["detail"]


def test_a_repeat_while_the_first_is_in_progress_is_409(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    ingest = server.sidecar.ingest
    ingest.busy_window, ingest.commit_delay = 1e9, 1.0  # hold every group open for a second before committing
    body = orjson.dumps(ride(1))
    first: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: first.append(httpx.post(server.url + ROUTE, content=body, headers=signed(body, "msg_slow")))
    )
    thread.start()
    wait_until(lambda: server.sidecar.in_progress, what="the first request to be in progress")
    repeat = httpx.post(server.url + ROUTE, content=body, headers=signed(body, "msg_slow"))
    thread.join(10)
    assert repeat.status_code == 409
    assert first[0].status_code == 200
    assert server.post_ride(ride(1), "msg_slow").headers["x-webhook-replayed"] == "true"


def test_svix_header_names_are_accepted(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    body = orjson.dumps([ride(1)])
    headers = {f"svix-{k.split('-')[1]}": v for k, v in signed(body, "msg_svix").items() if k.startswith("webhook-")}
    response = server.http.post(ROUTE, content=body, headers={**headers, "content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_during_key_rotation_either_secret_verifies(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    assert server.post_ride(ride(1), "msg_old_key", secret=OLD_PUSH_SECRET).status_code == 200
    body = orjson.dumps(ride(2))
    ts = int(time.time())
    both = " ".join(WebhookSigner(s).sign("msg_both", ts, body) for s in (OLD_PUSH_SECRET, PUSH_SECRET))
    headers = {"webhook-id": "msg_both", "webhook-timestamp": str(ts), "webhook-signature": both}
    response = server.http.post(ROUTE, content=body, headers={**headers, "content-type": "application/json"})
    assert response.status_code == 200


def test_a_signature_by_an_unknown_secret_is_401(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    stranger = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    response = server.post_ride(ride(1), "msg_forged", secret=stranger)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("signature rejected")


# SECURITY.md: vectors and malformed headers. Each must be a 4xx, never a 500, and store nothing.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_BODY = b'{"test": 2432232314}'


def _headers(msg_id: str | None, ts: str | None, sig: str | None) -> dict[str, str]:
    out = {"content-type": "application/json"}
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", ts), ("webhook-signature", sig)):
        if value is not None:
            out[name] = value
    return out


def _good(ts: int) -> str:
    return WebhookSigner(VECTOR_SECRET).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, VECTOR_BODY)


MALFORMED = {
    "vector at its own time (stale)": lambda now: _headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ),
    "wrong signature (vector)": lambda now: _headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    ),
    "one bit off (vector)": lambda now: _headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    ),
    "no headers": lambda now: _headers(None, None, None),
    "no id": lambda now: _headers(None, str(now), _good(now)),
    "no timestamp": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", None, _good(now)),
    "no signature": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), None),
    "timestamp hello": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "hello", _good(now)),
    "5 min + 1 s late": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now - 301), _good(now - 301)),
    "5 min + 1 s early": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now + 301), _good(now + 301)),
    "garbage": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), "garbage"),
    "v1,a,b": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), "v1,a,b"),
    "v1,@@@": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), "v1,@@@"),
    "empty signature": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), ""),
    "empty id": lambda now: _headers("", str(now), _good(now)),
    "empty timestamp": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "", _good(now)),
    "v2 scheme only": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), "v2," + _good(now)[3:]),
    "id with a newline-like control": lambda now: _headers("msg\x7f1", str(now), _good(now)),
    "huge timestamp": lambda now: _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "9" * 400, _good(now)),
}


@pytest.fixture
def vector_sidecar(start_sidecar: SidecarFactory, tmp_path: Path) -> Any:
    config = hub_config(
        tmp_path,
        adapters={"bike_share": {"webhook_secrets": [{"env": "VECTOR_SECRET"}]}},
        environ={"VECTOR_SECRET": VECTOR_SECRET},
    )
    return start_sidecar(config)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_rejected_and_malformed_signatures_get_a_4xx_never_a_500(vector_sidecar: Any, case: str) -> None:
    headers = MALFORMED[case](int(time.time()))
    response = vector_sidecar.http.post(ROUTE, content=VECTOR_BODY, headers=headers)
    assert response.status_code in (400, 401), (case, response.status_code, response.text)
    if case in NOT_HTTP:
        # The HTTP parser may refuse the request before the app sees it (httptools does; h11 lets it through).
        assert response.status_code == 400
        return
    assert response.headers["content-type"] == "application/problem+json"


NOT_HTTP = {"id with a newline-like control"}
"""Cases whose header value is not valid HTTP (RFC 9110 field values exclude DEL, 0x7f)."""


@pytest.mark.parametrize("case", sorted(NOT_HTTP))
def test_the_verifier_itself_rejects_what_the_http_parser_may_refuse_first(case: str) -> None:
    with pytest.raises(SignatureError):
        WebhookVerifier([VECTOR_SECRET]).verify(MALFORMED[case](int(time.time())), VECTOR_BODY)


def test_the_vector_signature_verifies_at_the_current_time(vector_sidecar: Any) -> None:
    # The same secret/id/body as the first vector, signed now: accepted (the item itself is quarantined).
    now = int(time.time())
    headers = _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", str(now), _good(now))
    response = vector_sidecar.http.post(ROUTE, content=VECTOR_BODY, headers=headers)
    assert response.status_code == 200
    assert response.json()["quarantined"] == 1


def test_an_empty_configured_secret_rejects_everything_with_401(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    config = hub_config(
        tmp_path, adapters={"bike_share": {"webhook_secrets": [{"env": "EMPTY_SECRET"}]}}, environ={"EMPTY_SECRET": ""}
    )
    server = start_sidecar(config)
    response = server.post_ride(ride(1), "msg_any")
    assert response.status_code == 401


def test_a_body_that_is_not_json_is_400(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    body = b'{"ride_id": "R1", '
    response = server.http.post(ROUTE, content=body, headers=signed(body, "msg_truncated"))
    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_415(start_sidecar: SidecarFactory, content_type: str | None) -> None:
    server = start_sidecar()
    body = orjson.dumps(ride(1))
    headers = signed(body, "msg_type")
    del headers["content-type"]
    if content_type:
        headers["content-type"] = content_type
    assert server.http.post(ROUTE, content=body, headers=headers).status_code == 415


def test_json_with_a_charset_is_accepted(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    body = orjson.dumps(ride(1))
    headers = {**signed(body, "msg_charset"), "content-type": "application/json; charset=utf-8"}
    assert server.http.post(ROUTE, content=body, headers=headers).status_code == 200


def test_a_body_over_the_limit_is_413_by_its_declared_length(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={"max_body_bytes": 4096})
    body = orjson.dumps([ride(i) for i in range(100)])
    assert len(body) > 4096
    response = server.http.post(ROUTE, content=body, headers=signed(body, "msg_big"))
    assert response.status_code == 413


def test_a_streamed_body_over_the_limit_is_413_without_being_read_whole(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={"max_body_bytes": 4096})
    sent = []

    def chunks() -> Any:
        for _ in range(1000):  # 1 MB offered, chunked (no Content-Length)
            sent.append(1)
            yield b" " * 1024

    headers = signed(b"", "msg_stream")
    try:
        response = httpx.post(server.url + ROUTE, content=chunks(), headers=headers, timeout=10)
    except httpx.HTTPError:  # the server may close the connection while the client is still sending
        return
    assert response.status_code == 413


def test_only_configured_push_streams_have_routes(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    body = orjson.dumps(ride(1))
    response = server.http.post("/v1/webhooks/bike_share/other", content=body, headers=signed(body, "msg_x"))
    assert response.status_code == 404


def test_personal_data_never_appears_in_answers(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    answer = server.post_ride([ride(1, km="13955123456"), ride(2, mobile=12)], "msg_personal").text  # type: ignore[arg-type]
    assert MOBILE not in answer
    assert "139****3456" in answer
