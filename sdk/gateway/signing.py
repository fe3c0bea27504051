"""Gateway request signing: the canonical string, HMAC-SHA256 / HMAC-SM3 signatures, and the verifier.

The scheme (headers, the seven canonical lines, a worked example) is documented in :mod:`tanpuhui.sdk.gateway`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote

import httpx

from ..errors import SignatureError
from ..gm import hmac_sm3, sm3_hex

__all__ = [
    "HEADER_KEY",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_SIGNATURE_METHOD",
    "HEADER_TIMESTAMP",
    "SIGN_METHODS",
    "GatewayAuth",
    "GatewaySignatureError",
    "GatewayVerifier",
    "SignMethod",
    "canonical_query",
    "canonical_string",
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
    """The string to sign (each line is described in :mod:`tanpuhui.sdk.gateway`)."""
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


@dataclass(eq=False)
class GatewayAuth(httpx.Auth):
    """httpx auth that signs each request as it is sent (so every retry gets a fresh timestamp and nonce)."""

    requires_request_body = True

    app_key: str
    app_secret: str = field(repr=False)
    sign_method: SignMethod = "HMAC-SHA256"
    _: KW_ONLY
    token: str | None = field(default=None, repr=False)
    clock: Callable[[], float] = time.time

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx's auth hook: adds the gateway's ``X-Ca-*`` headers and signature (over method, path, query, body)
        to ``request``.
        """
        raw = request.url.raw_path
        path = raw.split(b"?", 1)[0].decode("ascii")
        headers = signed_headers(
            request.method,
            path,
            request.url.query,
            request.content,
            app_key=self.app_key,
            app_secret=self.app_secret,
            sign_method=self.sign_method,
            timestamp_ms=int(self.clock() * 1000),
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
