"""What a sandbox partner pushes: Standard Webhooks requests carrying its items in ``{"items": [...]}`` batches."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from tanpuhui.sdk import WebhookRequest, WebhookSigner

__all__ = ["new_webhook_secret", "signed_batches"]


def new_webhook_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes, base64), as a partner hands one out."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_batches(
    secret: str,
    items: Sequence[Any],
    *,
    batch: int,
    message_id: Callable[[int], str],
    timestamp: int | None = None,
) -> list[WebhookRequest]:
    """``items`` as signed webhook requests ``(headers, body)``, ``batch`` per body.

    ``message_id(n)`` names the n-th request (from 0): the ``webhook-id`` a receiver deduplicates on, so the same
    batch keeps the same id however often it is sent. ``timestamp`` defaults to now.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    signer = WebhookSigner(secret)
    out = []
    for number, offset in enumerate(range(0, len(items), batch)):
        body = orjson.dumps({"items": items[offset : offset + batch]})
        out.append((signer.headers(message_id(number), body, timestamp), body))
    return out
