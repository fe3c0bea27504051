"""Request signing and its verifier: the canonical string, both HMACs, the replay window and single-use nonces."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import httpx
import pytest

from tanpuhui.sdk.gateway import (
    GatewayAuth,
    GatewaySignatureError,
    GatewayVerifier,
    canonical_query,
    canonical_string,
    sign,
    signed_headers,
)

APP_KEY = "ak-sandbox"
SECRET = "sandbox-secret"
TS = 1730764800000  # 2024-11-05T00:00:00Z
NONCE = "3f9c2a7be1d04c5e8a6b7d9e0f1a2b3c"
PATH = "/share/v1/datasets/water_usage/records"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SM3 = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"


def headers(**overrides: object) -> dict[str, str]:
    values = signed_headers(
        "GET", PATH, "pageSize=2&cursor=MTIz", b"", app_key=APP_KEY, app_secret=SECRET, timestamp_ms=TS, nonce=NONCE
    )
    values.update({k.replace("_", "-"): str(v) for k, v in overrides.items()})
    return values


def verifier(now_ms: int = TS, **options: object) -> GatewayVerifier:
    return GatewayVerifier({APP_KEY: SECRET}, clock=lambda: now_ms / 1000, **options)  # type: ignore[arg-type]


def test_canonical_string_is_the_seven_documented_lines() -> None:
    text = canonical_string("get", PATH, "pageSize=2&cursor=MTIz", APP_KEY, TS, NONCE, b"")
    assert text == "\n".join(["GET", PATH, "cursor=MTIz&pageSize=2", APP_KEY, str(TS), NONCE, EMPTY_SHA256])


def test_documented_hmac_sha256_vector() -> None:
    text = canonical_string("GET", PATH, "pageSize=2&cursor=MTIz", APP_KEY, TS, NONCE, b"")
    # Checked with: printf '<canonical>' | openssl dgst -sha256 -hmac sandbox-secret -binary | base64
    assert sign(text, SECRET) == "CTDun/2VyRmtxGoBQJEzH4KI0bf/JnF2he8JkQym8rw="
    expected = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()
    assert base64.b64decode(sign(text, SECRET)) == expected


def test_documented_hmac_sm3_vector_digests_the_body_with_sm3() -> None:
    text = canonical_string("GET", PATH, "pageSize=2&cursor=MTIz", APP_KEY, TS, NONCE, b"", "HMAC-SM3")
    assert text.endswith("\n" + EMPTY_SM3)
    assert sign(text, SECRET, "HMAC-SM3") == "8dTbMfr2n4ocKTGTLR6xdVR3PQQLWz8Og8GM5pSnfgs="


def test_query_is_sorted_by_name_then_value_and_re_encoded() -> None:
    assert canonical_query("b=2&a=2&a=1&city=%E5%90%88%E8%82%A5&q=a+b&empty=") == (
        "a=1&a=2&b=2&city=%E5%90%88%E8%82%A5&empty=&q=a%20b"
    )


def test_query_encodings_that_mean_the_same_give_the_same_line() -> None:
    assert canonical_query("q=a%20b&t=~x") == canonical_query("t=%7Ex&q=a+b")


def test_body_digest_covers_the_raw_bytes() -> None:
    body = b'{"grantType":"client_credentials"}'
    text = canonical_string("POST", "/auth/v1/token", "", APP_KEY, TS, NONCE, body)
    assert text.split("\n")[2] == ""
    assert text.endswith(hashlib.sha256(body).hexdigest())


def test_a_correctly_signed_request_verifies_and_names_its_app_key() -> None:
    assert verifier().verify("GET", PATH, "cursor=MTIz&pageSize=2", headers(), b"") == APP_KEY


def test_hmac_sm3_requests_verify() -> None:
    signed = signed_headers(
        "POST", "/auth/v1/token", "", b"{}", app_key=APP_KEY, app_secret=SECRET, sign_method="HMAC-SM3", timestamp_ms=TS
    )
    assert verifier().verify("POST", "/auth/v1/token", "", signed, b"{}") == APP_KEY


def test_header_names_are_case_insensitive() -> None:
    lower = {k.lower(): v for k, v in headers().items()}
    assert verifier().verify("GET", PATH, "pageSize=2&cursor=MTIz", lower, b"") == APP_KEY


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", PATH, "pageSize=2&cursor=MTIz", b""),
        ("GET", "/share/v1/datasets/gas_usage/records", "pageSize=2&cursor=MTIz", b""),
        ("GET", PATH, "pageSize=3&cursor=MTIz", b""),
        ("GET", PATH, "pageSize=2", b""),
        ("GET", PATH, "pageSize=2&cursor=MTIz", b"{}"),
    ],
    ids=["method", "path", "query-value", "query-dropped", "body"],
)
def test_any_change_to_the_signed_request_is_refused(method: str, path: str, query: str, body: bytes) -> None:
    with pytest.raises(GatewaySignatureError, match="does not match") as caught:
        verifier().verify(method, path, query, headers(), body)
    assert caught.value.reason == "signature"


def test_a_signature_made_with_another_secret_is_refused() -> None:
    forged = signed_headers("GET", PATH, "", b"", app_key=APP_KEY, app_secret="guessed", timestamp_ms=TS, nonce=NONCE)
    with pytest.raises(GatewaySignatureError) as caught:
        verifier().verify("GET", PATH, "", forged, b"")
    assert caught.value.reason == "signature"


def test_timestamps_inside_fifteen_minutes_either_way_are_accepted() -> None:
    for offset_ms in (-900_000, 900_000):
        assert verifier(TS + offset_ms).verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"") == APP_KEY


@pytest.mark.parametrize("offset_ms", [-901_000, 901_000])
def test_timestamps_beyond_fifteen_minutes_are_refused(offset_ms: int) -> None:
    with pytest.raises(GatewaySignatureError, match="window") as caught:
        verifier(TS + offset_ms).verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"")
    assert caught.value.reason == "timestamp"


def test_the_window_is_configurable() -> None:
    with pytest.raises(GatewaySignatureError) as caught:
        verifier(TS + 301_000, window_seconds=300).verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"")
    assert caught.value.reason == "timestamp"


def test_a_replayed_request_is_refused_the_second_time() -> None:
    check = verifier()
    check.verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"")
    with pytest.raises(GatewaySignatureError, match="already used") as caught:
        check.verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"")
    assert caught.value.reason == "nonce"


def test_a_request_with_a_bad_signature_does_not_use_up_its_nonce() -> None:
    check = verifier()
    with pytest.raises(GatewaySignatureError):
        check.verify("GET", PATH, "pageSize=9", headers(), b"")
    assert check.verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"") == APP_KEY


def test_nonces_are_remembered_per_app_key() -> None:
    check = GatewayVerifier({APP_KEY: SECRET, "ak-other": "other-secret"}, clock=lambda: TS / 1000)
    check.verify(
        "GET",
        PATH,
        "",
        signed_headers("GET", PATH, "", b"", app_key=APP_KEY, app_secret=SECRET, timestamp_ms=TS, nonce=NONCE),
        b"",
    )
    other = signed_headers(
        "GET", PATH, "", b"", app_key="ak-other", app_secret="other-secret", timestamp_ms=TS, nonce=NONCE
    )
    assert check.verify("GET", PATH, "", other, b"") == "ak-other"


def test_an_unknown_app_key_is_refused() -> None:
    with pytest.raises(GatewaySignatureError, match="unknown app key") as caught:
        verifier().verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(X_Ca_Key="ak-stranger"), b"")
    assert caught.value.reason == "app_key"


def test_a_signature_method_the_gateway_does_not_accept_is_refused() -> None:
    check = verifier(methods=("HMAC-SM3",))
    with pytest.raises(GatewaySignatureError, match="not accepted") as caught:
        check.verify("GET", PATH, "pageSize=2&cursor=MTIz", headers(), b"")
    assert caught.value.reason == "method"


@pytest.mark.parametrize(
    "broken",
    [
        {"X-Ca-Signature": ""},
        {"X-Ca-Nonce": ""},
        {"X-Ca-Timestamp": "hello"},
        {"X-Ca-Timestamp": "1730764800.5"},
        {"X-Ca-Nonce": "short"},
        {"X-Ca-Nonce": "has spaces in it, not allowed"},
        {"X-Ca-Signature": "@@@not-base64@@@"},
    ],
    ids=[
        "no-signature",
        "no-nonce",
        "timestamp-word",
        "timestamp-fraction",
        "nonce-short",
        "nonce-chars",
        "sig-not-b64",
    ],
)
def test_malformed_headers_are_signature_errors_never_crashes(broken: dict[str, str]) -> None:
    with pytest.raises(GatewaySignatureError):
        verifier().verify("GET", PATH, "pageSize=2&cursor=MTIz", {**headers(), **broken}, b"")


def test_gateway_auth_signs_each_send_with_a_fresh_nonce() -> None:
    seen: list[httpx.Request] = []
    check = GatewayVerifier({APP_KEY: SECRET})

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.raw_path.split(b"?")[0].decode()
        check.verify(request.method, path, request.url.query, request.headers, request.content)
        return httpx.Response(200, json={"code": "0000"})

    async def go() -> None:
        auth = GatewayAuth(APP_KEY, SECRET, token="t-1")
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="https://gw.example") as client:
            for _ in range(2):  # what a retry does: the same call again
                await client.get(PATH, params={"pageSize": 2, "city": "合肥"}, auth=auth)

    asyncio.run(go())
    assert seen[0].headers["X-Ca-Nonce"] != seen[1].headers["X-Ca-Nonce"]
    assert seen[0].headers["Authorization"] == "Bearer t-1"
    assert seen[0].headers["X-Ca-Signature-Method"] == "HMAC-SHA256"
