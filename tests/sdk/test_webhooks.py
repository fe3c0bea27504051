"""Standard Webhooks signing and verification, with the specification's published vectors and rejection cases."""

from __future__ import annotations

import base64

import pytest

from tanpuhui.sdk import SignatureError, WebhookSigner, WebhookVerifier

# (secret, id, timestamp, body, expected signature header) — the two published Standard Webhooks vectors.
VECTORS = [
    pytest.param(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        id="vector 1",
    ),
    pytest.param(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        b'{"email":"test@example.com","username":"test_user"}',
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        id="vector 2",
    ),
]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
GOOD = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# A second partner secret, as during a key rotation (24 random-looking bytes).
NEW_SECRET = "whsec_" + base64.b64encode(bytes.fromhex("3c9a51e07b2d48f6a1c3e5d7f90b2d4e6a8c0e1f3b5d7f91")).decode()


def headers(signature: str = GOOD, timestamp: str = str(TS), msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}


@pytest.fixture
def verifier() -> WebhookVerifier:
    return WebhookVerifier([SECRET])


@pytest.mark.parametrize("secret, msg_id, ts, body, expected", VECTORS)
def test_signer_output_equals_the_vector(secret: str, msg_id: str, ts: int, body: bytes, expected: str) -> None:
    assert WebhookSigner(secret).sign(msg_id, ts, body) == expected


@pytest.mark.parametrize("secret, msg_id, ts, body, expected", VECTORS)
def test_vector_verifies_at_its_timestamp(secret: str, msg_id: str, ts: int, body: bytes, expected: str) -> None:
    sent = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": expected}
    assert WebhookVerifier([secret]).verify(sent, body, now=ts) == msg_id


def test_signer_headers_verify() -> None:
    sent = WebhookSigner(SECRET).headers(MSG_ID, BODY, timestamp=TS)
    assert sent == headers()
    assert WebhookVerifier([SECRET]).verify(sent, BODY, now=TS) == MSG_ID


@pytest.mark.parametrize(
    "signature",
    ["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="],
    ids=["another message's signature", "last byte changed"],
)
def test_wrong_signature_is_rejected(signature: str, verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureError, match="no webhook signature matches"):
        verifier.verify(headers(signature), BODY, now=TS)


def test_re_serialised_body_does_not_verify(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureError):
        verifier.verify(headers(), b'{"test":2432232314}', now=TS)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str, verifier: WebhookVerifier) -> None:
    sent = headers()
    del sent[missing]
    with pytest.raises(SignatureError, match="missing"):
        verifier.verify(sent, BODY, now=TS)


def test_timestamp_that_is_not_a_number_is_rejected(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureError, match="'hello' is not unix seconds"):
        verifier.verify(headers(timestamp="hello"), BODY, now=TS)


@pytest.mark.parametrize("offset", [-301, 301], ids=["5 min 1 s early", "5 min 1 s late"])
def test_timestamp_just_outside_the_tolerance_is_rejected(offset: int, verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        verifier.verify(headers(), BODY, now=TS + offset)


@pytest.mark.parametrize("offset", [-300, 300], ids=["exactly 5 min early", "exactly 5 min late"])
def test_timestamp_exactly_at_the_tolerance_is_accepted(offset: int, verifier: WebhookVerifier) -> None:
    assert verifier.verify(headers(), BODY, now=TS + offset) == MSG_ID


def test_default_clock_rejects_an_old_vector(verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        verifier.verify(headers(), BODY)


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_@@@"], ids=["empty", "prefix only", "not base64"])
def test_unusable_secret_is_a_signature_error(secret: str) -> None:
    with pytest.raises(SignatureError):
        WebhookVerifier([secret])
    with pytest.raises(SignatureError):
        WebhookSigner(secret)


def test_verifier_without_secrets_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        WebhookVerifier([])


@pytest.mark.parametrize(
    "signature", ["garbage", "v1,a,b", "v1,@@@", "v1,", "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]
)
def test_malformed_signature_header_is_a_signature_error(signature: str, verifier: WebhookVerifier) -> None:
    # The standardwebhooks package raises ValueError/binascii.Error here, which a server turns into a 500.
    with pytest.raises(SignatureError):
        verifier.verify(headers(signature), BODY, now=TS)


@pytest.mark.parametrize("msg_id", ["msg_\n123", "m" * 257], ids=["control character", "257 characters"])
def test_unreasonable_webhook_id_is_rejected(msg_id: str, verifier: WebhookVerifier) -> None:
    with pytest.raises(SignatureError, match="webhook-id"):
        verifier.verify(headers(msg_id=msg_id), BODY, now=TS)


def test_svix_header_names_are_accepted(verifier: WebhookVerifier) -> None:
    sent = {"svix-id": MSG_ID, "svix-timestamp": str(TS), "svix-signature": GOOD}
    assert verifier.verify(sent, BODY, now=TS) == MSG_ID


def test_header_names_are_case_insensitive(verifier: WebhookVerifier) -> None:
    sent = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(TS), "Webhook-Signature": GOOD}
    assert verifier.verify(sent, BODY, now=TS) == MSG_ID


@pytest.mark.parametrize("signing_secret", [SECRET, NEW_SECRET], ids=["old secret", "new secret"])
def test_during_rotation_a_signature_by_either_secret_verifies(signing_secret: str) -> None:
    sent = WebhookSigner(signing_secret).headers(MSG_ID, BODY, timestamp=TS)
    assert WebhookVerifier([NEW_SECRET, SECRET]).verify(sent, BODY, now=TS) == MSG_ID


def test_signature_by_a_retired_secret_is_rejected() -> None:
    sent = WebhookSigner(SECRET).headers(MSG_ID, BODY, timestamp=TS)
    with pytest.raises(SignatureError):
        WebhookVerifier([NEW_SECRET]).verify(sent, BODY, now=TS)


@pytest.mark.parametrize(
    "signature",
    [
        f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {GOOD}",
        f"{GOOD} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        f"v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {GOOD}",
        f"garbage v1,@@@ {GOOD}",
    ],
    ids=["valid second", "valid first", "unknown version first", "malformed ones first"],
)
def test_one_valid_signature_among_several_is_enough(signature: str, verifier: WebhookVerifier) -> None:
    assert verifier.verify(headers(signature), BODY, now=TS) == MSG_ID
