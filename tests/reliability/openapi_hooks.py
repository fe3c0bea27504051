"""Schemathesis hooks for the OpenAPI conformance run (``SCHEMATHESIS_HOOKS=openapi_hooks``, in its own process).

Webhook requests are signed (Standard Webhooks, a fresh id per request, the secret from
``TANPUHUI_TEST_PUSH_SECRET``), so generated bodies reach the pipeline instead of stopping at the signature check.
The signature is computed over the exact bytes sent: by a ``requests`` auth hook, which sees the prepared request.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import requests
import schemathesis

from tanpuhui.sdk import WebhookSigner


class _Sign(requests.auth.AuthBase):
    def __init__(self, secret: str) -> None:
        self.signer = WebhookSigner(secret)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        data = body.encode() if isinstance(body, str) else bytes(body)
        request.headers.update(self.signer.headers(f"msg_st_{uuid.uuid4().hex}", data))
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    secret = os.environ.get("TANPUHUI_TEST_PUSH_SECRET")
    if secret and case.path.startswith("/v1/webhooks/"):
        kwargs["auth"] = _Sign(secret)
