"""The sandbox kit: token endpoint, fault schedule, cursor paging, stats and pushes, served on loopback.

A small partner built on the kit (:class:`MeterSandbox`, a meter-reading API) stands in for the sandboxes of the
adapters; each test pins one behaviour every sandbox built on the kit gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tanpuhui.sdk import Sandbox, WebhookRequest, WebhookVerifier
from tanpuhui.testing.loopback import LoopbackServer, free_port
from tanpuhui.testing.sandbox import (
    OFFSET_CURSOR,
    EncodedItems,
    FaultSchedule,
    FirstServed,
    PartnerSandbox,
    SandboxStats,
    TokenStore,
    json_response,
    new_webhook_secret,
    positive_int,
    signed_batches,
)


@dataclass(slots=True)
class MeterStats(SandboxStats):
    readings_requests: int = 0


class MeterSandbox(PartnerSandbox):
    """A meter-reading partner: ``GET /v1/readings?size=N[&cursor=C]``, two of its readings bad."""

    adapter = "meter_example"
    server_name = "meter sandbox"

    def __init__(self, readings: int = 25, **options: Any) -> None:
        self.readings = [{"reading_id": f"M{n:04d}", "kwh": round(1.5 + n / 10, 1)} for n in range(readings)]
        self.webhook_secret = new_webhook_secret()
        self._items = EncodedItems(self.readings)
        self._bad = FirstServed([3, 17])
        self.stats: MeterStats = MeterStats()
        super().__init__(self.stats, client_id="meter-client", realm="meter-sandbox", **options)

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
            Route("/v1/readings", self._readings, methods=["GET"]),
        ]

    def webhook_requests(self) -> dict[str, list[WebhookRequest]]:
        pushed = signed_batches(self.webhook_secret, self.readings, batch=10, message_id=lambda n: f"msg_meter_{n}")
        return {"readings_push": pushed}

    async def _readings(self, request: Request) -> Response:
        refused = self.refusal(request, "readings_requests")
        if refused is not None:
            return refused
        size = positive_int(request.query_params.get("size"), 10)
        total = len(self.readings)
        cursor = request.query_params.get("cursor")
        window = None if size is None else OFFSET_CURSOR.window(cursor, size, visible=total, total=total, cap=8)
        if window is None:
            return json_response(400, {"error": "invalid_request"})
        served = range(window.begin, window.end)
        self.stats.items_served += len(served)
        self.stats.bad_items += self._bad.serve(served)
        page = {"data": self._items.array(served), "next_cursor": window.next_cursor, "has_more": window.has_more}
        return json_response(200, page)


def call(sandbox: MeterSandbox, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=sandbox.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            return [await client.request(method, url, **kwargs) for method, url, kwargs in requests]

    return asyncio.run(go())


def token(sandbox: MeterSandbox) -> dict[str, Any]:
    form = {"grant_type": "client_credentials"}
    (answer,) = call(
        sandbox, ("POST", "/oauth/token", {"data": form, "auth": (sandbox.client_id, sandbox.client_secret)})
    )
    assert answer.status_code == 200, answer.text
    return {"headers": {"Authorization": f"Bearer {answer.json()['access_token']}"}}


def readings(sandbox: MeterSandbox, auth: dict[str, Any], **params: Any) -> httpx.Response:
    (answer,) = call(sandbox, ("GET", "/v1/readings", {"params": params, **auth}))
    return answer


# -- the token endpoint -----------------------------------------------------------------------------------------


def test_the_token_endpoint_takes_basic_auth_or_form_fields_and_says_not_to_cache() -> None:
    sandbox = MeterSandbox()
    form = {"grant_type": "client_credentials", "client_id": "meter-client", "client_secret": sandbox.client_secret}
    (answer,) = call(sandbox, ("POST", "/oauth/token", {"data": {**form, "scope": "readings"}}))
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in ("token_type", "expires_in", "scope")} == {
        "token_type": "Bearer",
        "expires_in": 1800,
        "scope": "readings",
    }
    assert answer.headers["cache-control"] == "no-store"
    assert readings(sandbox, token(sandbox)).status_code == 200  # and Basic auth
    assert sandbox.stats.tokens_issued == 2


def test_a_wrong_secret_is_an_invalid_client_401_naming_the_realm() -> None:
    sandbox = MeterSandbox()
    form = {"grant_type": "client_credentials"}
    (answer,) = call(sandbox, ("POST", "/oauth/token", {"data": form, "auth": ("meter-client", "guess")}))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"] == 'Basic realm="meter-sandbox"'
    assert sandbox.stats.unauthorized == 1


def test_only_the_client_credentials_grant_is_served() -> None:
    sandbox = MeterSandbox()
    form = {"grant_type": "password"}
    (answer,) = call(
        sandbox, ("POST", "/oauth/token", {"data": form, "auth": (sandbox.client_id, sandbox.client_secret)})
    )
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


def test_revoked_tokens_get_a_bearer_401_in_the_partners_format() -> None:
    sandbox = MeterSandbox()
    auth = token(sandbox)
    sandbox.revoke_tokens()
    answer = readings(sandbox, auth)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    assert answer.headers["www-authenticate"] == 'Bearer realm="meter-sandbox", error="invalid_token"'


def test_tokens_expire_after_their_ttl_and_can_be_expired_early() -> None:
    now = [1000.0]
    store = TokenStore(ttl=60, clock=lambda: now[0])
    first = store.issue()
    now[0] += 59
    assert store.state(first) == "valid"
    now[0] += 1
    assert store.state(first) == "expired"
    second = store.issue()
    store.expire_all()
    assert (store.state(second), store.state("never-issued")) == ("expired", "unknown")


# -- faults -----------------------------------------------------------------------------------------------------


def test_every_nth_request_fails_or_is_throttled_with_retry_after() -> None:
    schedule = FaultSchedule(fail_every=4, throttle_every=3, retry_after=2)
    answers = [schedule.next(n) for n in range(1, 9)]
    assert [a.status if a else 200 for a in answers] == [200, 200, 429, 500, 200, 429, 200, 500]
    assert answers[2] is not None and answers[2].headers == {"Retry-After": "2"}
    assert answers[3] is not None and answers[3].headers == {}


def test_queued_answers_come_first_in_order_and_a_scoped_one_waits_for_its_requests() -> None:
    schedule = FaultSchedule(fail_every=1)
    schedule.fail_next(503, count=2, retry_after=0.5)
    schedule.fail_next(200, code="1001", scope="gas")
    first, second = schedule.next(1), schedule.next(2)
    assert first is not None and second is not None
    assert (first.status, second.status, first.headers) == (503, 503, {"Retry-After": "0.5"})
    waiting = schedule.next(3, scope="water")
    assert waiting is not None and waiting.status == 500  # the every-N answer: the queued one is for gas
    gas = schedule.next(4, scope="gas")
    assert gas is not None and (gas.status, gas.code) == (200, "1001")


def test_the_sandbox_answers_scheduled_faults_and_counts_them() -> None:
    sandbox = MeterSandbox(throttle_every=2, retry_after=3)
    sandbox.fail_next(502)
    auth = token(sandbox)
    statuses = [readings(sandbox, auth).status_code for _ in range(4)]
    assert statuses == [502, 429, 200, 429]
    assert sandbox.stats.faults == {502: 1, 429: 2}


# -- paging -----------------------------------------------------------------------------------------------------


def test_pages_follow_the_cursor_to_the_end_capped_at_the_page_size_cap() -> None:
    sandbox = MeterSandbox(readings=20)
    auth = token(sandbox)
    items: list[Any] = []
    cursor = None
    pages = []
    while True:
        page = readings(sandbox, auth, size=100, **({"cursor": cursor} if cursor else {})).json()
        pages.append(page)
        items += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert items == sandbox.readings
    assert [len(p["data"]) for p in pages] == [8, 8, 4]
    assert sandbox.stats.items_served == 20 and sandbox.stats.bad_items == 2


def test_a_cursor_the_sandbox_did_not_issue_or_a_bad_size_is_a_400() -> None:
    sandbox = MeterSandbox()
    auth = token(sandbox)
    past_the_end = OFFSET_CURSOR.encode(10_000)
    for params in ({"cursor": "not-ours!"}, {"cursor": past_the_end}, {"size": "0"}, {"size": "ten"}):
        assert readings(sandbox, auth, **params).status_code == 400, params


def test_the_cursor_round_trips_and_hides_nothing_but_the_offset() -> None:
    assert [OFFSET_CURSOR.decode(OFFSET_CURSOR.encode(n)) for n in (0, 7, 123456)] == [0, 7, 123456]
    assert OFFSET_CURSOR.decode(None) == OFFSET_CURSOR.decode("") == 0
    assert orjson.loads(__import__("base64").urlsafe_b64decode(OFFSET_CURSOR.encode(7) + "==")) == {"v": 1, "o": 7}


def test_a_window_stops_at_what_is_visible_and_resumes_there_when_more_is_published() -> None:
    window = OFFSET_CURSOR.window(None, 50, visible=30, total=100)
    assert window is not None and (window.begin, window.end, window.has_more) == (0, 30, False)
    later = OFFSET_CURSOR.window(window.next_cursor, 50, visible=100, total=100)
    assert later is not None and (later.begin, later.end, later.has_more) == (30, 80, True)


def test_positive_int_reads_a_page_size_parameter() -> None:
    assert [positive_int(v, 100) for v in (None, "5", "0", "-1", "x")] == [100, 5, None, None, None]


def test_encoded_items_splice_into_answers_as_the_same_json() -> None:
    items = [{"id": n, "名": "合肥"} for n in range(5)]
    encoded = EncodedItems(items)
    assert orjson.loads(orjson.dumps({"data": encoded.array(range(1, 4))})) == {"data": items[1:4]}
    assert orjson.loads(orjson.dumps(encoded.array([4, 0]))) == [items[4], items[0]]


def test_first_served_counts_each_watched_position_once_whatever_the_order() -> None:
    seen = FirstServed([2, 5, 9])
    assert seen.serve(range(0, 6)) == 2
    assert seen.serve([5, 9, 9, 1]) == 1
    assert seen.serve(range(0, 10)) == 0


# -- pushes -----------------------------------------------------------------------------------------------------


def test_signed_batches_verify_and_keep_their_ids() -> None:
    sandbox = MeterSandbox(readings=25)
    (stream, requests), *_ = sandbox.webhook_requests().items()
    verifier = WebhookVerifier([sandbox.webhook_secret])
    assert stream == "readings_push"
    assert [verifier.verify(headers, body) for headers, body in requests] == [
        "msg_meter_0",
        "msg_meter_1",
        "msg_meter_2",
    ]
    assert [len(orjson.loads(body)["items"]) for _, body in requests] == [10, 10, 5]


def test_signed_batches_refuse_an_empty_batch_size() -> None:
    with pytest.raises(ValueError, match="batch must be >= 1"):
        signed_batches(new_webhook_secret(), [1], batch=0, message_id=str)


# -- as a Sandbox, on loopback ------------------------------------------------------------------------------------


def test_a_kit_sandbox_is_a_sandbox_whose_hub_settings_hold_no_secret() -> None:
    with MeterSandbox() as sandbox:
        assert isinstance(sandbox, Sandbox) and sandbox.adapter == "meter_example"
        table, env = sandbox.hub_settings("DEMO_METER_")
        assert table == {
            "base_url": sandbox.url,
            "client_id": "meter-client",
            "client_secret": {"env": "DEMO_METER_CLIENT_SECRET"},
        }
        assert env == {"DEMO_METER_CLIENT_SECRET": sandbox.client_secret}


def test_a_sandbox_serves_on_a_fixed_port_when_given_one() -> None:
    port = free_port()
    with MeterSandbox(port=port) as sandbox:
        assert sandbox.url == f"http://127.0.0.1:{port}"
        answer = httpx.post(
            f"{sandbox.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(sandbox.client_id, sandbox.client_secret),
        )
        assert answer.status_code == 200


def test_a_taken_port_is_a_clear_error_naming_it() -> None:
    with MeterSandbox() as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(
            RuntimeError, match=rf"meter sandbox could not bind 127\.0\.0\.1:{port}: .*; is the port in use"
        ):
            MeterSandbox(port=port).start()


def test_a_port_out_of_range_is_refused_before_serving() -> None:
    with pytest.raises(ValueError, match="port must be 0"):
        LoopbackServer(port=70000)
