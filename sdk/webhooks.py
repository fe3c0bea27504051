"""Standard Webhooks (https://www.standardwebhooks.com/): signing outbound requests, verifying inbound ones.

Signed content is ``{id}.{timestamp}.{raw body}``; the signature header holds one or more space-separated
``v1,<base64 HMAC-SHA256>`` values (several during key rotation). Svix's ``svix-*`` header names are accepted too.
Every malformed header is a :class:`SignatureError` (a 4xx at the sidecar), never an unhandled exception.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from .errors import SignatureError

__all__ = ["TOLERANCE_SECONDS", "WebhookSigner", "WebhookVerifier", "decode_secret"]

TOLERANCE_SECONDS = 300
_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (a bare base64 string is accepted too)."""
    if not secret:
        raise SignatureError("webhook secret is empty")
    encoded = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("webhook secret is not 'whsec_' + base64") from None
    if not key:
        raise SignatureError("webhook secret decodes to zero bytes")
    return key


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """HMAC-SHA256 of ``{id}.{timestamp}.{body}`` (the body is fed as it is, not copied behind the prefix)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.digest()


@functools.lru_cache(maxsize=64)
def _decoded(secret: str) -> bytes:
    """:func:`decode_secret`, remembered: a stream's verifier is made per request, its secrets do not change."""
    return decode_secret(secret)


def _sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    return base64.b64encode(_mac(key, msg_id, timestamp, body)).decode()


class WebhookSigner:
    """Signs outbound requests with the current secret."""

    def __init__(self, secret: str) -> None:
        self._key = decode_secret(secret)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header value."""
        return f"v1,{_sign(self._key, msg_id, timestamp, body)}"

    def headers(self, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The Standard Webhooks headers of a request: ``webhook-id`` (``msg_id``), ``webhook-timestamp``
        (``timestamp``, now by default) and ``webhook-signature`` over ``body``.
        """
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": self.sign(msg_id, ts, body),
        }


class WebhookVerifier:
    """Verifies inbound requests against any of several secrets (rotation), within a tolerance window."""

    def __init__(self, secrets: Sequence[str], tolerance: int = TOLERANCE_SECONDS) -> None:
        if not secrets:
            raise SignatureError("no webhook secret configured for this stream")
        self._keys = [_decoded(s) for s in secrets]
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """Return the webhook id when a signature matches; raise :class:`SignatureError` otherwise."""
        lower = {k.lower(): v for k, v in headers.items()}
        msg_id = lower.get("webhook-id") or lower.get("svix-id")
        ts_raw = lower.get("webhook-timestamp") or lower.get("svix-timestamp")
        sig_raw = lower.get("webhook-signature") or lower.get("svix-signature")
        if not msg_id or ts_raw is None or sig_raw is None:
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if len(msg_id) > 256 or not msg_id.isprintable():
            raise SignatureError("webhook-id header is not a printable string of at most 256 characters")
        try:
            timestamp = int(ts_raw)
        except ValueError:
            raise SignatureError(f"webhook-timestamp {ts_raw[:40]!r} is not unix seconds") from None
        current = time.time() if now is None else now
        if abs(current - timestamp) > self._tolerance:
            raise SignatureError(f"webhook-timestamp is outside the {self._tolerance} s tolerance")
        offered: list[bytes] = []
        for part in sig_raw.split():
            version, sep, value = part.partition(",")
            if version != "v1" or not sep or "," in value:
                continue
            try:
                offered.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not offered:
            raise SignatureError("webhook-signature has no well-formed 'v1,<base64>' signature")
        for key in self._keys:
            expected = _mac(key, msg_id, timestamp, body)
            for sig in offered:
                if hmac.compare_digest(expected, sig):
                    return msg_id
        raise SignatureError("no webhook signature matches")
