"""Government API gateways: signed requests, a token service, envelopes, error codes and SM4-sealed payloads.

Chinese government data-sharing platforms put their datasets behind an API gateway (shared/DOMAIN.md §3). No public
Anhui specification was found; this module implements the conventions seen in the field, with everything a real
gateway document may change made configurable. Any adapter can use it; the provincial big-data adapter does.

Request signing
===============
Every request (the token request included) carries::

    X-Ca-Key: <app key>
    X-Ca-Timestamp: <unix time in milliseconds>
    X-Ca-Nonce: <fresh random string, 16-64 of [A-Za-z0-9_-]; never reused>
    X-Ca-Signature-Method: HMAC-SHA256 | HMAC-SM3
    X-Ca-Signature: base64(HMAC(app secret as UTF-8, canonical string as UTF-8))
    Authorization: Bearer <access token>          (data requests only, when a token service is configured)

The canonical string is seven lines joined by ``\\n`` (no trailing newline)::

    METHOD          upper-case, e.g. GET
    PATH            the path as sent, percent-encoded, without the query ("/" when empty)
    QUERY           the query parameters decoded, sorted by name then value (code-point order), each re-encoded
                    as name=value with RFC 3986 percent-encoding (A-Z a-z 0-9 - _ . ~ left as is), joined by "&";
                    empty when there are none
    APP_KEY         the X-Ca-Key value
    TIMESTAMP       the X-Ca-Timestamp value
    NONCE           the X-Ca-Nonce value
    BODY_DIGEST     lower-case hex digest of the raw body bytes: SHA-256 for HMAC-SHA256, SM3 for HMAC-SM3
                    (the digest of the empty string when there is no body)

Example (HMAC-SHA256, app secret ``sandbox-secret``)::

    GET
    /share/v1/datasets/water_usage/records
    cursor=MTIz&pageSize=2
    ak-sandbox
    1730764800000
    3f9c2a7be1d04c5e8a6b7d9e0f1a2b3c
    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

    X-Ca-Signature: CTDun/2VyRmtxGoBQJEzH4KI0bf/JnF2he8JkQym8rw=

(with HMAC-SM3 the last line is the SM3 of the empty body, 1ab21d83...5082aa2b, and the signature
8dTbMfr2n4ocKTGTLR6xdVR3PQQLWz8Og8GM5pSnfgs=; both checked against the OpenSSL command line)

:class:`GatewayAuth` signs each request as httpx sends it, so every retry of :class:`~tanpuhui.sdk.PartnerClient`
goes out with a fresh timestamp and nonce (a resent nonce would be refused as a replay).
:class:`GatewayVerifier` is the server side, for sandboxes and partners: it rejects unknown app keys, signature
methods it does not accept, timestamps outside ±15 minutes (configurable) and nonces it has seen within the window.

Token service
=============
``POST {token_path}`` with body ``{"grantType": "client_credentials"}``, signed as above, answers
``{"code": "0000", "msg": "success", "data": {"accessToken": "...", "expiresIn": 1800, "tokenType": "Bearer"}}``
(``access_token``/``expires_in`` are accepted too). The token is cached and fetched again ``token_leeway`` seconds
before it expires (at the latest halfway through its life); a token-expired error code (or an HTTP 401) re-fetches it
once and repeats the request; a second refusal is a :class:`~tanpuhui.sdk.PartnerAuthError`.

Envelopes and error codes
=========================
Responses are ``{"code": "0000" | 200, "msg": ..., "data": ...}`` or ``{"flag": "200", "msg": ..., "data": ...}``
(``msg`` may be spelled ``message``). Success codes are configurable (default ``"0000"`` and ``"200"``). Any other
code is looked up in :data:`DEFAULT_CODES` (plus configured overrides) and handled by its :class:`CodeAction`:

- ``retry``: repeated with exponential backoff (honouring ``Retry-After`` when sent) within the PartnerClient's
  :class:`~tanpuhui.sdk.RetryPolicy`; exhausted -> :class:`~tanpuhui.sdk.PartnerUnavailable`;
- ``reauth``: the token is fetched again once and the request repeated -> :class:`~tanpuhui.sdk.PartnerAuthError`
  when refused again;
- ``auth``: :class:`~tanpuhui.sdk.PartnerAuthError` (signature invalid, unknown app key, no permission, clock skew);
- ``fail`` and unknown codes: :class:`~tanpuhui.sdk.PartnerResponseError`.

Every message names the dataset, the gateway's code, what the code means and the gateway's ``msg``. HTTP-level
failures (429/5xx with ``Retry-After``, timeouts) are retried by the PartnerClient underneath; a gateway that answers
its error codes with HTTP 4xx reaches us as the PartnerClient's 4xx errors (the code and msg are in the message, but
no code-level retry or re-auth applies, except that an HTTP 401 re-fetches the token once).

Encrypted payloads
==================
Some datasets answer with the data sealed (:class:`PayloadCipher`)::

    {"code": "0000", "msg": "success",
     "data": {"encData": base64(iv || SM4-CBC(sm4 key, iv, PKCS#7(JSON of the clear data)))},
     "encType": "SM4", "signType": "HMAC-SM3", "signData": hex(HMAC-SM3(mac key, encData as ASCII))}

The tag is verified first (constant-time), then the data decrypted and its padding checked, then parsed as JSON; a
bad tag, a wrong key or anything malformed is a :class:`~tanpuhui.sdk.PartnerResponseError` naming the dataset,
never garbage records. A dataset called with ``encrypted=True`` that answers in clear is refused (no downgrade).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote

import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from .client import PartnerClient, RetryPolicy, parse_retry_after
from .errors import PartnerAuthError, PartnerError, PartnerResponseError, PartnerUnavailable, SignatureError
from .gm import SM4_BLOCK, GMError, hmac_sm3, sm3_hex, sm4_decrypt_cbc, sm4_encrypt_cbc
from .privacy import redact

if TYPE_CHECKING:
    from .adapter import Adapter

__all__ = [
    "DEFAULT_CODES",
    "HEADER_KEY",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_SIGNATURE_METHOD",
    "HEADER_TIMESTAMP",
    "SIGN_METHODS",
    "CodeAction",
    "Envelope",
    "GatewayAuth",
    "GatewayClient",
    "GatewayConfig",
    "GatewaySignatureError",
    "GatewayStats",
    "GatewayVerifier",
    "PayloadCipher",
    "SignMethod",
    "canonical_query",
    "canonical_string",
    "parse_envelope",
    "sign",
    "signed_headers",
]

HEADER_KEY = "X-Ca-Key"
HEADER_TIMESTAMP = "X-Ca-Timestamp"
HEADER_NONCE = "X-Ca-Nonce"
HEADER_SIGNATURE = "X-Ca-Signature"
HEADER_SIGNATURE_METHOD = "X-Ca-Signature-Method"

SignMethod = Literal["HMAC-SHA256", "HMAC-SM3"]
SIGN_METHODS: tuple[SignMethod, ...] = ("HMAC-SHA256", "HMAC-SM3")

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_UNRESERVED = "-_.~"


class CodeAction(StrEnum):
    """What the client does with a gateway error code."""

    RETRY = "retry"
    """Transient (busy, rate limited, upstream timeout): back off and repeat."""
    REAUTH = "reauth"
    """The access token expired or is unknown: fetch a new one once and repeat."""
    AUTH = "auth"
    """Our credentials or permissions are refused: PartnerAuthError."""
    FAIL = "fail"
    """The request is wrong or the dataset unknown: PartnerResponseError."""


DEFAULT_CODES: Mapping[str, tuple[CodeAction, str]] = {
    "1001": (CodeAction.RETRY, "system busy"),
    "1002": (CodeAction.RETRY, "rate limited"),
    "1003": (CodeAction.RETRY, "upstream service timeout"),
    "2001": (CodeAction.REAUTH, "access token expired"),
    "2002": (CodeAction.REAUTH, "access token invalid"),
    "3001": (CodeAction.AUTH, "signature invalid"),
    "3002": (CodeAction.AUTH, "timestamp outside the replay window (check the host clock)"),
    "3003": (CodeAction.RETRY, "nonce already used"),
    "3004": (CodeAction.AUTH, "unknown app key"),
    "3005": (CodeAction.AUTH, "signature method not accepted"),
    "4001": (CodeAction.AUTH, "no permission for this dataset"),
    "4002": (CodeAction.FAIL, "bad parameter"),
    "4004": (CodeAction.FAIL, "dataset not found"),
    "400": (CodeAction.FAIL, "bad request"),
    "401": (CodeAction.REAUTH, "unauthorized"),
    "403": (CodeAction.AUTH, "forbidden"),
    "404": (CodeAction.FAIL, "not found"),
    "429": (CodeAction.RETRY, "too many requests"),
    "500": (CodeAction.RETRY, "internal error"),
    "502": (CodeAction.RETRY, "bad gateway"),
    "503": (CodeAction.RETRY, "service unavailable"),
    "504": (CodeAction.RETRY, "gateway timeout"),
}
"""Error codes seen on Chinese government gateways (and HTTP-like codes inside envelopes), with what they mean.

Modelled on the conventions in shared/DOMAIN.md: a real gateway's document rules; override per code with
``GatewayConfig(code_actions={"E0401": CodeAction.REAUTH})``."""


# -- signing --------------------------------------------------------------------------------------------------------


def canonical_query(query: str | bytes) -> str:
    """The QUERY line: parameters decoded, sorted by (name, value), RFC 3986 re-encoded, joined by ``&``."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    pairs = parse_qsl(text, keep_blank_values=True)
    pairs.sort()
    return "&".join(f"{quote(k, safe=_UNRESERVED)}={quote(v, safe=_UNRESERVED)}" for k, v in pairs)


def _body_digest(body: bytes, method: SignMethod) -> str:
    return sm3_hex(body) if method == "HMAC-SM3" else hashlib.sha256(body).hexdigest()


def canonical_string(
    method: str,
    path: str,
    query: str | bytes,
    app_key: str,
    timestamp_ms: int | str,
    nonce: str,
    body: bytes,
    sign_method: SignMethod = "HMAC-SHA256",
) -> str:
    """The string to sign (see the module docstring for each line)."""
    return "\n".join(
        (
            method.upper(),
            path or "/",
            canonical_query(query),
            app_key,
            str(timestamp_ms),
            nonce,
            _body_digest(body, sign_method),
        )
    )


def sign(canonical: str, app_secret: str, sign_method: SignMethod = "HMAC-SHA256") -> str:
    """``X-Ca-Signature``: base64 of the HMAC of ``canonical`` under ``app_secret``."""
    key = app_secret.encode()
    msg = canonical.encode()
    mac = hmac_sm3(key, msg) if sign_method == "HMAC-SM3" else hmac.new(key, msg, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def signed_headers(
    method: str,
    path: str,
    query: str | bytes,
    body: bytes,
    *,
    app_key: str,
    app_secret: str,
    sign_method: SignMethod = "HMAC-SHA256",
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The ``X-Ca-*`` headers for one request (fresh timestamp and nonce unless given)."""
    if sign_method not in SIGN_METHODS:
        raise SignatureError(f"signature method {sign_method!r} is not one of {', '.join(SIGN_METHODS)}")
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    nonce = nonce or secrets.token_hex(16)
    canonical = canonical_string(method, path, query, app_key, ts, nonce, body, sign_method)
    return {
        HEADER_KEY: app_key,
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE_METHOD: sign_method,
        HEADER_SIGNATURE: sign(canonical, app_secret, sign_method),
    }


class GatewayAuth(httpx.Auth):
    """httpx auth that signs each request as it is sent (so every retry gets a fresh timestamp and nonce)."""

    requires_request_body = True

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        sign_method: SignMethod = "HMAC-SHA256",
        *,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_key = app_key
        self._secret = app_secret
        self.sign_method = sign_method
        self.token = token
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raw = request.url.raw_path
        path = raw.split(b"?", 1)[0].decode("ascii")
        headers = signed_headers(
            request.method,
            path,
            request.url.query,
            request.content,
            app_key=self.app_key,
            app_secret=self._secret,
            sign_method=self.sign_method,
            timestamp_ms=int(self._clock() * 1000),
        )
        request.headers.update(headers)
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class GatewaySignatureError(SignatureError):
    """A gateway signature check failed; ``reason`` says which check (for mapping to the gateway's codes).

    Reasons: ``missing`` (a header absent or malformed), ``app_key``, ``method``, ``timestamp`` (outside the
    window), ``nonce`` (reused), ``signature``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class GatewayVerifier:
    """The server side of the signature scheme, with the replay window and a nonce cache.

    ``secrets`` maps app key -> app secret. Nonces are remembered per app key for the whole window, so a request can
    be accepted at most once; thread-safe. Use it in sandboxes, tests and partner-side implementations.
    """

    def __init__(
        self,
        secrets: Mapping[str, str],
        *,
        window_seconds: float = 900.0,
        methods: tuple[SignMethod, ...] = SIGN_METHODS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise SignatureError("no app key configured for the gateway verifier")
        self._secrets = dict(secrets)
        self.window_seconds = window_seconds
        self.methods = methods
        self._clock = clock
        self._nonces: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._inserts = 0

    def verify(self, method: str, path: str, query: str | bytes, headers: Mapping[str, str], body: bytes) -> str:
        """Return the app key when the request is signed correctly, fresh and not a replay.

        Raises :class:`GatewaySignatureError` (its ``reason`` names the failed check) otherwise.
        """
        lower = {k.lower(): v for k, v in headers.items()}
        app_key = lower.get(HEADER_KEY.lower(), "")
        ts_raw = lower.get(HEADER_TIMESTAMP.lower(), "")
        nonce = lower.get(HEADER_NONCE.lower(), "")
        sign_method = lower.get(HEADER_SIGNATURE_METHOD.lower(), "")
        signature = lower.get(HEADER_SIGNATURE.lower(), "")
        missing = [
            name
            for name, value in (
                (HEADER_KEY, app_key),
                (HEADER_TIMESTAMP, ts_raw),
                (HEADER_NONCE, nonce),
                (HEADER_SIGNATURE_METHOD, sign_method),
                (HEADER_SIGNATURE, signature),
            )
            if not value
        ]
        if missing:
            raise GatewaySignatureError("missing", f"missing header(s) {', '.join(missing)}")
        secret = self._secrets.get(app_key)
        if secret is None:
            raise GatewaySignatureError("app_key", f"unknown app key {app_key[:64]!r}")
        if sign_method not in self.methods:
            raise GatewaySignatureError(
                "method", f"{HEADER_SIGNATURE_METHOD} {sign_method[:32]!r} is not accepted ({', '.join(self.methods)})"
            )
        if not ts_raw.isdigit() or len(ts_raw) > 16:
            raise GatewaySignatureError("missing", f"{HEADER_TIMESTAMP} {ts_raw[:32]!r} is not unix milliseconds")
        if not _NONCE.fullmatch(nonce):
            raise GatewaySignatureError("missing", f"{HEADER_NONCE} must be 16-64 characters of [A-Za-z0-9_-]")
        now = self._clock()
        skew = abs(now - int(ts_raw) / 1000)
        if skew > self.window_seconds:
            raise GatewaySignatureError(
                "timestamp",
                f"{HEADER_TIMESTAMP} is {skew:.0f} s away from the gateway clock (window ±{self.window_seconds:.0f} s)",
            )
        try:
            offered = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise GatewaySignatureError("signature", f"{HEADER_SIGNATURE} is not base64") from None
        method_typed: SignMethod = "HMAC-SM3" if sign_method == "HMAC-SM3" else "HMAC-SHA256"
        canonical = canonical_string(method, path, query, app_key, ts_raw, nonce, body, method_typed)
        expected = base64.b64decode(sign(canonical, secret, method_typed))
        if not hmac.compare_digest(expected, offered):
            raise GatewaySignatureError("signature", "signature does not match the canonical request")
        with self._lock:
            key = (app_key, nonce)
            seen = self._nonces.get(key)
            if seen is not None and seen > now:
                raise GatewaySignatureError("nonce", f"nonce {nonce!r} was already used within the replay window")
            self._nonces[key] = now + 2 * self.window_seconds
            self._inserts += 1
            if self._inserts % 4096 == 0:
                self._nonces = {k: v for k, v in self._nonces.items() if v > now}
        return app_key


# -- envelopes and sealed payloads -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed gateway response: ``{code, msg, data}`` or ``{flag, msg, data}``."""

    style: Literal["code", "flag"]
    code: str
    msg: str
    data: Any
    ok: bool
    doc: Mapping[str, Any]


def parse_envelope(doc: Any, success_codes: frozenset[str] = frozenset({"0000", "200"})) -> Envelope | None:
    """The envelope of a response document, or None when it is neither shape."""
    if not isinstance(doc, dict):
        return None
    if "code" in doc:
        style: Literal["code", "flag"] = "code"
        raw = doc["code"]
    elif "flag" in doc:
        style, raw = "flag", doc["flag"]
    else:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    code = str(raw)
    msg = doc.get("msg", doc.get("message", ""))
    return Envelope(style, code, str(msg) if msg is not None else "", doc.get("data"), code in success_codes, doc)


def _is_sealed(doc: Mapping[str, Any]) -> bool:
    data = doc.get("data")
    return "encType" in doc or (isinstance(data, dict) and "encData" in data)


class PayloadCipher:
    """SM4-CBC sealed, HMAC-SM3 tagged payloads (see the module docstring for the format).

    ``sm4_key`` is 16 bytes; ``mac_key`` at least 16 bytes and different from the SM4 key.
    """

    ENC_TYPE = "SM4"
    SIGN_TYPE = "HMAC-SM3"

    def __init__(self, sm4_key: bytes, mac_key: bytes) -> None:
        if len(sm4_key) != 16:
            raise GMError(f"SM4 key must be 16 bytes (32 hex characters), got {len(sm4_key)} bytes")
        if len(mac_key) < 16:
            raise GMError(f"MAC key must be at least 16 bytes, got {len(mac_key)} bytes")
        if hmac.compare_digest(sm4_key, mac_key):
            raise GMError("the MAC key must differ from the SM4 key")
        self._key = sm4_key
        self._mac = mac_key

    @classmethod
    def from_hex(cls, sm4_key: str, mac_key: str) -> PayloadCipher:
        """Keys given as hex strings (how gateway documents hand them out)."""
        keys = []
        for name, text in (("SM4 key", sm4_key), ("MAC key", mac_key)):
            try:
                keys.append(bytes.fromhex(text.strip()))
            except ValueError:
                raise GMError(f"{name} must be a hex string") from None
        return cls(keys[0], keys[1])

    def tag(self, enc_data: str) -> str:
        """``signData``: hex HMAC-SM3 of the ``encData`` text."""
        return hmac_sm3(self._mac, enc_data.encode("ascii")).hex()

    def seal(self, data: Any, *, iv: bytes | None = None) -> dict[str, Any]:
        """The sealed fields for a response carrying ``data`` (merge them into an envelope)."""
        iv = os.urandom(SM4_BLOCK) if iv is None else iv
        ciphertext = sm4_encrypt_cbc(self._key, iv, orjson.dumps(data))
        enc_data = base64.b64encode(iv + ciphertext).decode()
        return {
            "data": {"encData": enc_data},
            "encType": self.ENC_TYPE,
            "signType": self.SIGN_TYPE,
            "signData": self.tag(enc_data),
        }

    def open(self, doc: Mapping[str, Any], where: str = "sealed payload") -> Any:
        """Verify the tag, decrypt and parse; :class:`PartnerResponseError` prefixed with ``where`` on any failure."""
        enc_type, sign_type = doc.get("encType"), doc.get("signType")
        if enc_type != self.ENC_TYPE:
            raise PartnerResponseError(f"{where}: encType {enc_type!r} is not supported (expected {self.ENC_TYPE!r})")
        if sign_type != self.SIGN_TYPE:
            raise PartnerResponseError(
                f"{where}: signType {sign_type!r} is not supported (expected {self.SIGN_TYPE!r}); nothing was decrypted"
            )
        data = doc.get("data")
        enc_data = data.get("encData") if isinstance(data, dict) else None
        sign_data = doc.get("signData")
        if not isinstance(enc_data, str) or not enc_data.isascii():
            raise PartnerResponseError(f"{where}: /data/encData is missing or not a base64 string")
        if not isinstance(sign_data, str):
            raise PartnerResponseError(f"{where}: /signData is missing; an unauthenticated payload is not decrypted")
        try:
            offered = bytes.fromhex(sign_data)
        except ValueError:
            raise PartnerResponseError(f"{where}: /signData is not hex") from None
        if not hmac.compare_digest(bytes.fromhex(self.tag(enc_data)), offered):
            raise PartnerResponseError(
                f"{where}: integrity tag (signData, {self.SIGN_TYPE}) does not verify: the payload was altered in "
                "transit or the configured MAC key is not the gateway's; nothing was decrypted"
            )
        try:
            blob = base64.b64decode(enc_data, validate=True)
        except (binascii.Error, ValueError):
            raise PartnerResponseError(f"{where}: /data/encData is not valid base64") from None
        if len(blob) < 2 * SM4_BLOCK or len(blob) % SM4_BLOCK:
            raise PartnerResponseError(
                f"{where}: /data/encData holds {len(blob)} bytes; expected a 16-byte IV and whole 16-byte blocks"
            )
        try:
            clear = sm4_decrypt_cbc(self._key, blob[:SM4_BLOCK], blob[SM4_BLOCK:])
            return orjson.loads(clear)
        except GMError as exc:
            raise PartnerResponseError(f"{where}: the tag verified but {exc} (is the SM4 key the gateway's?)") from None
        except orjson.JSONDecodeError:
            raise PartnerResponseError(
                f"{where}: the tag verified but the decrypted data is not JSON (is the SM4 key the gateway's?)"
            ) from None


# -- the client -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How to talk to one gateway: credentials, signature method, token service, codes and payload keys."""

    app_key: str
    app_secret: str
    sign_method: SignMethod = "HMAC-SHA256"
    token_path: str | None = None
    """``POST`` path of the token service; None when the gateway authenticates by signature alone."""
    token_leeway: float = 60.0
    """Seconds before expiry at which the token is fetched again."""
    success_codes: frozenset[str] = frozenset({"0000", "200"})
    code_actions: Mapping[str, CodeAction] = field(default_factory=dict)
    """Overrides of :data:`DEFAULT_CODES` (code -> action)."""
    cipher: PayloadCipher | None = None
    """Keys for sealed payloads; None when no dataset of this gateway is encrypted."""

    def __post_init__(self) -> None:
        if not self.app_key or not self.app_secret:
            raise SignatureError("gateway app key and app secret must both be set")
        if self.sign_method not in SIGN_METHODS:
            raise SignatureError(f"signature method {self.sign_method!r} is not one of {', '.join(SIGN_METHODS)}")


@dataclass(slots=True)
class GatewayStats:
    """Counters: calls, token fetches, re-authentications, code-level retries, and codes seen."""

    calls: int = 0
    token_fetches: int = 0
    reauths: int = 0
    code_retries: int = 0
    sealed: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


class _CodeRetry(Exception):
    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Reauth(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayClient:
    """Signed, token-authenticated calls to a government gateway, over a :class:`~tanpuhui.sdk.PartnerClient`.

    Build it with :meth:`for_adapter` (the adapter's transport and sleep, so tests inject both) or from a
    PartnerClient you already have. :meth:`call` returns the ``data`` of a successful envelope (opened when sealed).
    """

    def __init__(
        self,
        partner: PartnerClient,
        config: GatewayConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.partner = partner
        self.config = config
        self.name = partner.name
        self.stats = GatewayStats()
        self._sleep = sleep
        self._clock = clock
        self._actions: dict[str, tuple[CodeAction, str]] = dict(DEFAULT_CODES)
        for code, action in config.code_actions.items():
            meaning = DEFAULT_CODES.get(code, (action, "configured code"))[1]
            self._actions[code] = (CodeAction(action), meaning)
        self._token: str | None = None
        self._refresh_at = 0.0
        self._token_lock = asyncio.Lock()

    @classmethod
    def for_adapter(
        cls,
        adapter: Adapter,
        base_url: str,
        config: GatewayConfig,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> GatewayClient:
        """A client on a new ``adapter.partner_client(...)`` (closed with the adapter), sleeping with its sleep."""
        partner = adapter.partner_client(
            base_url, retry=retry, timeout=timeout, headers={"Accept": "application/json", **(headers or {})}
        )
        return cls(partner, config, sleep=adapter.http.sleep, clock=clock)

    def action(self, code: str) -> tuple[CodeAction, str]:
        """What a code means and what the client does with it (unknown codes: ``fail``)."""
        return self._actions.get(code, (CodeAction.FAIL, "unknown code"))

    # -- token -----------------------------------------------------------------------------------------------

    def invalidate_token(self) -> None:
        """Forget the cached token (the next call fetches a new one)."""
        self._token = None
        self._refresh_at = 0.0

    async def token(self) -> str | None:
        """The cached access token, fetched when missing or due; None when no token service is configured."""
        path = self.config.token_path
        if path is None:
            return None
        async with self._token_lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            who = f"{self.name}: token endpoint"
            where = f"{who}: POST {path}"
            self.stats.token_fetches += 1
            body = orjson.dumps({"grantType": "client_credentials"})
            try:
                envelope = await self._exchange("POST", path, None, body, who, token=None)
            except _Reauth as exc:
                raise PartnerAuthError(f"{where}: refused app key {self.config.app_key!r}: {exc.reason}") from None
            data = envelope.data if isinstance(envelope.data, dict) else {}
            token = data.get("accessToken", data.get("access_token"))
            expires_in = data.get("expiresIn", data.get("expires_in"))
            if not isinstance(token, str) or not token:
                raise PartnerAuthError(f"{where}: success envelope without /data/accessToken")
            if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
                raise PartnerAuthError(
                    f"{where}: /data/expiresIn must be a positive number of seconds, got {expires_in!r}"
                )
            now = self._clock()
            self._token = token
            self._refresh_at = now + max(float(expires_in) - self.config.token_leeway, float(expires_in) / 2)
            return token

    # -- calls -----------------------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        dataset: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        encrypted: bool = False,
    ) -> Any:
        """Call the gateway for ``dataset``; returns the envelope's ``data`` (opened when sealed).

        ``encrypted=True`` refuses a clear answer. Raises the :mod:`tanpuhui.sdk.errors` partner errors with messages
        naming the dataset, the gateway's code and its ``msg``.
        """
        self.stats.calls += 1
        who = f"{self.name}: dataset {dataset!r}"
        where = f"{who}: {method} {path}"
        body = orjson.dumps(json) if json is not None else b""
        reauthed = False
        while True:
            token = await self.token()
            try:
                envelope = await self._exchange(method, path, params, body, who, token=token)
            except _Reauth as exc:
                if reauthed or token is None:
                    raise PartnerAuthError(
                        f"{where}: {exc.reason}, also with a freshly fetched access token"
                        if reauthed
                        else f"{where}: {exc.reason} (no token service configured)"
                    ) from None
                reauthed = True
                self.stats.reauths += 1
                self.invalidate_token()
                continue
            return self._open(envelope, where, encrypted)

    def _open(self, envelope: Envelope, where: str, encrypted: bool) -> Any:
        if _is_sealed(envelope.doc):
            cipher = self.config.cipher
            if cipher is None:
                raise PartnerResponseError(
                    f"{where}: the gateway answers SM4-sealed data but no SM4/MAC keys are configured"
                )
            self.stats.sealed += 1
            return cipher.open(envelope.doc, where)
        if encrypted:
            raise PartnerResponseError(
                f"{where}: this dataset is configured as encrypted but the gateway answered in clear; refusing it "
                "(a downgrade could be a man in the middle)"
            )
        return envelope.data

    def _retrying(self) -> AsyncRetrying:
        policy = self.partner.retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _CodeRetry) and exc.retry_after is not None:
                return min(exc.retry_after, policy.max_retry_after)
            # Exponential backoff with up to 1 s of jitter, as tenacity's wait_exponential_jitter (whose
            # ``initial`` argument is deprecated in tenacity 9.2 and whose ``multiplier`` is missing before it).
            exponential = policy.initial * 2.0 ** (state.attempt_number - 1)
            return min(policy.maximum, exponential + random.uniform(0, 1))

        def count(_: RetryCallState) -> None:
            self.stats.code_retries += 1

        return AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            retry=retry_if_exception_type(_CodeRetry),
            sleep=self._sleep,
            before_sleep=count,
            reraise=True,
        )

    async def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes,
        who: str,
        *,
        token: str | None,
    ) -> Envelope:
        where = f"{who}: {method} {path}"
        try:
            async for attempt in self._retrying():
                with attempt:
                    return await self._once(method, path, params, body, who, token)
        except _CodeRetry as exc:
            raise PartnerUnavailable(
                f"{where}: gave up after {self.partner.retry.attempts} attempts ({exc.reason})"
            ) from None
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: bytes,
        who: str,
        token: str | None,
    ) -> Envelope:
        where = f"{who}: {method} {path}"
        c = self.config
        auth = GatewayAuth(c.app_key, c.app_secret, c.sign_method, token=token, clock=self._clock)
        headers = {"Content-Type": "application/json"} if body else None
        try:
            response = await self.partner.request(
                method, path, params=params, content=body or None, headers=headers, auth=auth
            )
        except PartnerAuthError as exc:
            if token is not None:
                raise _Reauth(f"HTTP-level refusal ({_without_name(str(exc), self.name)})") from None
            raise PartnerAuthError(f"{who}: {_without_name(str(exc), self.name)}") from None
        except PartnerError as exc:  # its message already says "METHOD path: what happened"
            raise type(exc)(f"{who}: {_without_name(str(exc), self.name)}") from None
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise PartnerResponseError(
                f"{where}: response is not JSON ({exc}); first bytes: {response.content[:80]!r}"
            ) from None
        envelope = parse_envelope(doc, c.success_codes)
        if envelope is None:
            raise PartnerResponseError(
                f'{where}: expected a gateway envelope {{"code", "msg", "data"}} or {{"flag", "data"}}, got {_shape(doc)}'
            )
        self.stats.by_code[envelope.code] = self.stats.by_code.get(envelope.code, 0) + 1
        if envelope.ok:
            return envelope
        action, meaning = self.action(envelope.code)
        said = f"gateway code {envelope.code} ({meaning}): {redact(envelope.msg)[:200] or 'no msg'}"
        if action is CodeAction.RETRY:
            raise _CodeRetry(said, parse_retry_after(response.headers.get("retry-after")))
        if action is CodeAction.REAUTH:
            raise _Reauth(said)
        if action is CodeAction.AUTH:
            raise PartnerAuthError(f"{where}: {said}")
        raise PartnerResponseError(f"{where}: {said}")


def _without_name(message: str, name: str) -> str:
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "an object with keys " + ", ".join(sorted(map(str, value))[:8])
    return type(value).__name__
