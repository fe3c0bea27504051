"""GatewayClient over a PartnerClient: tokens, envelopes, error codes, retries and sealed payloads.

The gateway here is a scripted fake that verifies every request's signature with :class:`GatewayVerifier` (so a
retry that reused its nonce would be refused), issues tokens and answers what each test queues.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest

from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    HttpOptions,
    PartnerAuthError,
    PartnerClient,
    PartnerResponseError,
    PartnerUnavailable,
    RetryPolicy,
)
from tanpuhui.sdk.gateway import (
    CodeAction,
    GatewayClient,
    GatewayConfig,
    GatewayVerifier,
    PayloadCipher,
    parse_envelope,
)
from tanpuhui.sdk.gm import GMError

APP_KEY = "ak-test-340000"
SECRET = "gateway-test-secret"
TOKEN_PATH = "/auth/v1/token"
PATH = "/share/v1/datasets/water_usage/records"
SM4 = "00112233445566778899aabbccddeeff"
MAC = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978"
CIPHER = PayloadCipher.from_hex(SM4, MAC)
PAGE = {"records": [{"recordId": "WU20241105000017", "peakUsageM3": 0.142}], "nextCursor": "c1", "hasMore": False}

Answer = tuple[int, Any, dict[str, str]]


def ok(data: Any = PAGE) -> Answer:
    return 200, {"code": "0000", "msg": "success", "data": data}, {}


def code(value: str | int, msg: str = "", headers: dict[str, str] | None = None) -> Answer:
    return 200, {"code": value, "msg": msg, "data": None}, headers or {}


@dataclass
class FakeGateway:
    clock: list[float] = field(default_factory=lambda: [1_730_764_800.0])
    answers: deque[Answer] = field(default_factory=deque)
    token_answers: deque[Answer] = field(default_factory=deque)
    requests: list[httpx.Request] = field(default_factory=list)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        self.verifier = GatewayVerifier({APP_KEY: SECRET}, clock=lambda: self.clock[0])

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.split(b"?")[0].decode()
        self.verifier.verify(request.method, path, request.url.query, request.headers, request.content)
        if path == TOKEN_PATH:
            if self.token_answers:
                status, doc, headers = self.token_answers.popleft()
                return httpx.Response(status, json=doc, headers=headers)
            self.tokens_issued += 1
            data = {"accessToken": f"tok-{self.tokens_issued}", "expiresIn": 1800, "tokenType": "Bearer"}
            return httpx.Response(200, json={"code": "0000", "msg": "success", "data": data})
        status, doc, headers = self.answers.popleft()
        if isinstance(doc, bytes):
            return httpx.Response(status, content=doc, headers=headers)
        return httpx.Response(status, json=doc, headers=headers)

    @property
    def data_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != TOKEN_PATH]


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def make(gateway: FakeGateway, sleeps: Sleeps | None = None, **config: Any) -> tuple[GatewayClient, Callable[[], None]]:
    sleeps = sleeps or Sleeps()
    partner = PartnerClient(
        "https://gateway.test.example",
        name="test_gateway",
        retry=RetryPolicy(attempts=3, initial=0.5, maximum=4.0),
        transport=httpx.MockTransport(gateway.handler),
        sleep=sleeps,
    )
    values: dict[str, Any] = {"app_key": APP_KEY, "app_secret": SECRET, "token_path": TOKEN_PATH, "cipher": CIPHER}
    client = GatewayClient(partner, GatewayConfig(**{**values, **config}), sleep=sleeps, clock=lambda: gateway.clock[0])
    return client, lambda: asyncio.run(partner.aclose())


def call(client: GatewayClient, *, encrypted: bool = False, dataset: str = "water_usage") -> Any:
    async def go() -> Any:
        try:
            return await client.call("GET", PATH, dataset=dataset, params={"pageSize": 50}, encrypted=encrypted)
        finally:
            await client.partner.aclose()

    return asyncio.run(go())


def calls(client: GatewayClient, count: int, between: Callable[[], None] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        out = []
        try:
            for _ in range(count):
                out.append(await client.call("GET", PATH, dataset="water_usage"))
                if between:
                    between()
        finally:
            await client.partner.aclose()
        return out

    return asyncio.run(go())


# -- tokens ------------------------------------------------------------------------------------------------------------


def test_the_token_is_fetched_once_and_sent_as_bearer_on_data_requests(gateway: FakeGateway) -> None:
    gateway.answers.extend([ok(), ok()])
    client, _ = make(gateway)
    calls(client, 2)
    assert gateway.tokens_issued == 1
    assert [r.headers["Authorization"] for r in gateway.data_requests] == ["Bearer tok-1", "Bearer tok-1"]
    assert "Authorization" not in gateway.requests[0].headers


def test_the_token_is_renewed_before_it_expires(gateway: FakeGateway) -> None:
    gateway.answers.extend([ok(), ok(), ok()])
    client, _ = make(gateway, token_leeway=60)

    def advance() -> None:
        gateway.clock[0] += 1000  # 1800 s token: renewed from 1740 s on

    calls(client, 3, between=advance)
    assert gateway.tokens_issued == 2
    assert [r.headers["Authorization"] for r in gateway.data_requests] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_a_token_expired_code_fetches_a_new_token_once_and_repeats_the_request(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("2001", "token已过期"), ok()])
    client, _ = make(gateway)
    assert call(client) == PAGE
    assert gateway.tokens_issued == 2
    assert client.stats.reauths == 1
    assert [r.headers["Authorization"] for r in gateway.data_requests] == ["Bearer tok-1", "Bearer tok-2"]


def test_a_second_token_refusal_is_an_auth_error_naming_dataset_and_code(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("2001", "token已过期"), code("2002", "token无效")])
    client, _ = make(gateway)
    with pytest.raises(PartnerAuthError) as caught:
        call(client)
    message = str(caught.value)
    assert "dataset 'water_usage'" in message
    assert "gateway code 2002 (access token invalid): token无效" in message
    assert "freshly fetched access token" in message
    assert gateway.tokens_issued == 2


def test_an_http_401_also_re_fetches_the_token_once(gateway: FakeGateway) -> None:
    gateway.answers.extend([(401, {"code": "401", "msg": "unauthorized"}, {}), ok()])
    client, _ = make(gateway)
    assert call(client) == PAGE
    assert gateway.tokens_issued == 2


def test_the_token_endpoint_refusing_the_signature_is_an_auth_error(gateway: FakeGateway) -> None:
    gateway.token_answers.append(code("3001", "签名错误"))
    client, _ = make(gateway)
    with pytest.raises(
        PartnerAuthError,
        match=r"token endpoint: POST /auth/v1/token: gateway code 3001 \(signature invalid\): 签名错误",
    ):
        call(client)
    assert gateway.data_requests == []


def test_a_token_answer_without_access_token_is_an_auth_error(gateway: FakeGateway) -> None:
    gateway.token_answers.append(ok({"expiresIn": 1800}))
    client, _ = make(gateway)
    with pytest.raises(PartnerAuthError, match="without /data/accessToken"):
        call(client)


def test_snake_case_token_fields_are_accepted(gateway: FakeGateway) -> None:
    gateway.token_answers.append(ok({"access_token": "tok-snake", "expires_in": 1800}))
    gateway.answers.append(ok())
    client, _ = make(gateway)
    call(client)
    assert gateway.data_requests[0].headers["Authorization"] == "Bearer tok-snake"


def test_without_a_token_service_requests_are_signed_only(gateway: FakeGateway) -> None:
    gateway.answers.append(ok())
    client, _ = make(gateway, token_path=None)
    assert call(client) == PAGE
    assert gateway.tokens_issued == 0
    assert "Authorization" not in gateway.data_requests[0].headers


# -- codes and retries -------------------------------------------------------------------------------------------------


def test_system_busy_is_retried_with_backoff_and_fresh_nonces(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("1001", "系统繁忙"), code("1001", "系统繁忙"), ok()])
    sleeps = Sleeps()
    client, _ = make(gateway, sleeps)
    assert call(client) == PAGE
    assert len(sleeps.waits) == 2 and all(0 < w <= 4.0 for w in sleeps.waits)
    assert client.stats.code_retries == 2
    assert len({r.headers["X-Ca-Nonce"] for r in gateway.data_requests}) == 3


def test_a_rate_limited_code_honours_retry_after(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("1002", "请求过于频繁", {"Retry-After": "7"}), ok()])
    sleeps = Sleeps()
    client, _ = make(gateway, sleeps)
    call(client)
    assert sleeps.waits == [7.0]


def test_retryable_codes_give_up_as_partner_unavailable_naming_the_dataset(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("1001", "系统繁忙")] * 3)
    client, _ = make(gateway)
    with pytest.raises(PartnerUnavailable) as caught:
        call(client)
    assert str(caught.value) == (
        "test_gateway: dataset 'water_usage': GET /share/v1/datasets/water_usage/records: gave up after 3 attempts "
        "(gateway code 1001 (system busy): 系统繁忙)"
    )


@pytest.mark.parametrize(
    ("value", "meaning", "error"),
    [
        ("3001", "signature invalid", PartnerAuthError),
        ("3004", "unknown app key", PartnerAuthError),
        ("4001", "no permission for this dataset", PartnerAuthError),
        ("4002", "bad parameter", PartnerResponseError),
        ("9999", "unknown code", PartnerResponseError),
    ],
)
def test_fatal_codes_are_not_retried_and_say_what_they_mean(
    gateway: FakeGateway, value: str, meaning: str, error: type[Exception]
) -> None:
    gateway.answers.append(code(value, "网关拒绝"))
    client, _ = make(gateway)
    with pytest.raises(error) as caught:
        call(client, dataset="gas_usage")
    assert type(caught.value) is error
    assert f"dataset 'gas_usage': GET {PATH}: gateway code {value} ({meaning}): 网关拒绝" in str(caught.value)
    assert len(gateway.data_requests) == 1


def test_configured_code_actions_override_the_defaults(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("E503", "上游繁忙"), ok()])
    client, _ = make(gateway, code_actions={"E503": CodeAction.RETRY})
    assert call(client) == PAGE


def test_integer_200_is_success(gateway: FakeGateway) -> None:
    gateway.answers.append((200, {"code": 200, "message": "OK", "data": [1, 2]}, {}))
    client, _ = make(gateway)
    assert call(client) == [1, 2]


def test_flag_envelopes_are_understood(gateway: FakeGateway) -> None:
    rows = [{"genId": "PVG20241105000017", "generationKwh": 17.82}]
    gateway.answers.extend([(200, {"flag": "503", "msg": "busy"}, {}), (200, {"flag": "200", "data": rows}, {})])
    client, _ = make(gateway)
    assert call(client, dataset="rooftop_pv") == rows


def test_http_429_is_retried_by_the_partner_client_with_a_re_signed_request(gateway: FakeGateway) -> None:
    gateway.answers.extend([(429, {"code": "429"}, {"Retry-After": "3"}), ok()])
    sleeps = Sleeps()
    client, _ = make(gateway, sleeps)
    assert call(client) == PAGE
    assert sleeps.waits == [3.0]
    first, second = gateway.data_requests
    assert first.headers["X-Ca-Nonce"] != second.headers["X-Ca-Nonce"]


def test_http_5xx_until_retries_run_out_names_the_dataset(gateway: FakeGateway) -> None:
    gateway.answers.extend([(503, {"code": "503"}, {})] * 3)
    client, _ = make(gateway)
    with pytest.raises(
        PartnerUnavailable,
        match=r"^test_gateway: dataset 'water_usage': GET /share/v1/datasets/water_usage/records: gave up after 3 attempts \(HTTP 503\)$",
    ):
        call(client)


def test_a_body_that_is_not_json_is_a_response_error(gateway: FakeGateway) -> None:
    gateway.answers.append((200, b"<html>gateway maintenance</html>", {}))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match=r"dataset 'water_usage'.*not JSON"):
        call(client)


def test_json_that_is_no_envelope_is_a_response_error(gateway: FakeGateway) -> None:
    gateway.answers.append((200, {"records": []}, {}))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match="expected a gateway envelope"):
        call(client)


# -- sealed payloads ---------------------------------------------------------------------------------------------------


def sealed(data: Any = PAGE, cipher: PayloadCipher = CIPHER) -> Answer:
    return 200, {"code": "0000", "msg": "success", **cipher.seal(data)}, {}


def test_a_sealed_answer_is_verified_and_decrypted(gateway: FakeGateway) -> None:
    gateway.answers.append(sealed())
    client, _ = make(gateway)
    assert call(client, encrypted=True) == PAGE
    assert client.stats.sealed == 1


def test_a_bad_integrity_tag_is_refused_before_decrypting(gateway: FakeGateway) -> None:
    status, doc, headers = sealed()
    doc["signData"] = ("0" if doc["signData"][0] != "0" else "1") + doc["signData"][1:]
    gateway.answers.append((status, doc, headers))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError) as caught:
        call(client, encrypted=True)
    assert "dataset 'water_usage'" in str(caught.value)
    assert "integrity tag (signData, HMAC-SM3) does not verify" in str(caught.value)


def test_altered_ciphertext_fails_the_tag(gateway: FakeGateway) -> None:
    status, doc, headers = sealed()
    enc = doc["data"]["encData"]
    doc["data"]["encData"] = enc[:30] + ("A" if enc[30] != "A" else "B") + enc[31:]
    gateway.answers.append((status, doc, headers))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match="does not verify"):
        call(client, encrypted=True)


def test_a_wrong_sm4_key_is_a_clear_error_not_garbage(gateway: FakeGateway) -> None:
    gateway.answers.append(sealed(cipher=PayloadCipher.from_hex("ffeeddccbbaa99887766554433221100", MAC)))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match=r"dataset 'water_usage'.*tag verified but .*SM4 key"):
        call(client, encrypted=True)


def test_a_wrong_mac_key_fails_the_tag(gateway: FakeGateway) -> None:
    gateway.answers.append(sealed(cipher=PayloadCipher.from_hex(SM4, "11" * 24)))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match="MAC key is not the gateway's"):
        call(client, encrypted=True)


def test_a_clear_answer_to_an_encrypted_dataset_is_refused(gateway: FakeGateway) -> None:
    gateway.answers.append(ok())
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match="configured as encrypted but the gateway answered in clear"):
        call(client, encrypted=True)


def test_a_sealed_answer_without_configured_keys_is_refused(gateway: FakeGateway) -> None:
    gateway.answers.append(sealed())
    client, _ = make(gateway, cipher=None)
    with pytest.raises(PartnerResponseError, match="no SM4/MAC keys are configured"):
        call(client)


def test_an_sm2_signed_payload_is_refused_without_decrypting(gateway: FakeGateway) -> None:
    status, doc, headers = sealed()
    doc["signType"] = "SM2"
    gateway.answers.append((status, doc, headers))
    client, _ = make(gateway)
    with pytest.raises(PartnerResponseError, match="signType 'SM2' is not supported"):
        call(client, encrypted=True)


def test_a_missing_tag_is_refused() -> None:
    doc = {"code": "0000", **CIPHER.seal(PAGE)}
    del doc["signData"]
    with pytest.raises(PartnerResponseError, match="unauthenticated payload is not decrypted"):
        CIPHER.open(doc, "dataset 'water_usage'")


def test_seal_uses_a_fresh_iv_each_time() -> None:
    assert CIPHER.seal(PAGE)["data"]["encData"] != CIPHER.seal(PAGE)["data"]["encData"]


@pytest.mark.parametrize(
    ("sm4", "mac", "message"),
    [
        ("00" * 15, MAC, "16 bytes"),
        (SM4, "00" * 8, "at least 16 bytes"),
        (SM4, SM4, "must differ"),
        ("not hex", MAC, "SM4 key must be a hex string"),
    ],
)
def test_payload_keys_are_checked(sm4: str, mac: str, message: str) -> None:
    with pytest.raises(GMError, match=message):
        PayloadCipher.from_hex(sm4, mac)


# -- envelopes and wiring ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [[], "0000", {"data": []}, {"code": None}, {"code": True}, {"flag": ["200"]}])
def test_documents_that_are_not_envelopes(doc: Any) -> None:
    assert parse_envelope(doc) is None


def test_envelope_success_codes_are_configurable() -> None:
    envelope = parse_envelope({"code": 0, "data": 1}, frozenset({"0"}))
    assert envelope is not None and envelope.ok and envelope.data == 1


class _Settings(AdapterSettings):
    pass


class _Adapter(Adapter):
    name = "city_gateway"
    version = "1.0.0"
    Settings: ClassVar[type[AdapterSettings]] = _Settings


def test_for_adapter_uses_the_adapters_transport_and_sleep(gateway: FakeGateway) -> None:
    gateway.answers.extend([code("1001", "busy"), ok()])
    sleeps = Sleeps()
    adapter = _Adapter(_Settings(), HttpOptions(transport=httpx.MockTransport(gateway.handler), sleep=sleeps))
    config = GatewayConfig(app_key=APP_KEY, app_secret=SECRET, token_path=TOKEN_PATH)
    client = GatewayClient.for_adapter(adapter, "https://gateway.test.example", config, clock=lambda: gateway.clock[0])

    async def go() -> Any:
        try:
            return await client.call("GET", PATH, dataset="water_usage")
        finally:
            await adapter.aclose()

    assert asyncio.run(go()) == PAGE
    assert len(sleeps.waits) == 1
    assert client.name == "city_gateway"
    assert gateway.requests[0].headers["Accept"] == "application/json"
