"""A sandbox partner's OAuth2 client-credentials grant (RFC 6749 §4.4) and the bearer check of its API (RFC 6750).

    oauth = ClientCredentials(stats, client_id="tanpuhui-sandbox", realm="water-sandbox")
    Route("/oauth/token", oauth.token_endpoint, methods=["POST"])
    ...
    refused = oauth.refuse(request)          # in each API endpoint: None, or the 401 to answer
    if refused is not None:
        return refused

Tokens are opaque and live ``ttl`` seconds; :meth:`TokenStore.revoke_all` and :meth:`TokenStore.expire_all` end
them early, as a partner that rotates keys or restarts would.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import Response

from .responses import json_response
from .stats import SandboxStats

__all__ = ["INVALID_TOKEN", "NO_STORE", "ClientCredentials", "TokenStore", "bearer_token"]

NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""The headers RFC 6749 §5.1 asks of a token response."""

INVALID_TOKEN: Mapping[str, Any] = {
    "error": "invalid_token",
    "error_description": "the access token is missing, expired or revoked",
}
"""The RFC 6750 body of a 401 for a bad bearer token."""


def bearer_token(request: Request) -> str:
    """The token of the request's ``Authorization: Bearer`` header; ``""`` when there is none."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


class TokenStore:
    """Opaque bearer tokens, each valid ``ttl`` seconds by ``clock``. Thread-safe."""

    def __init__(self, ttl: int = 1800, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        """A new token."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expiry[token] = self._clock() + self.ttl
        return token

    def state(self, token: str) -> Literal["valid", "expired", "unknown"]:
        """Whether ``token`` is live, was issued and has expired, or was never issued (or was revoked)."""
        expiry = self._expiry.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if expiry > self._clock() else "expired"

    def revoke_all(self) -> None:
        """Forget every token issued so far: each is ``unknown`` from now on."""
        with self._lock:
            self._expiry.clear()

    def expire_all(self) -> None:
        """End every token issued so far: each is ``expired`` from now on."""
        with self._lock:
            self._expiry = dict.fromkeys(self._expiry, 0.0)


class ClientCredentials:
    """The token endpoint (client authentication by Basic auth or ``client_id``/``client_secret`` form fields) and
    the bearer check; counts into ``stats``.

    ``client_secret`` defaults to a random one. ``realm`` names the partner in ``WWW-Authenticate``;
    ``token_headers`` go on each token response; ``invalid_token`` is the body of a 401 for a bad bearer token
    (the partner's own error format, if it has one).
    """

    def __init__(
        self,
        stats: SandboxStats,
        *,
        client_id: str,
        client_secret: str | None = None,
        ttl: int = 1800,
        realm: str = "sandbox",
        token_headers: Mapping[str, str] = NO_STORE,
        invalid_token: Mapping[str, Any] = INVALID_TOKEN,
    ) -> None:
        self.stats = stats
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.tokens = TokenStore(ttl)
        self.realm = realm
        self.token_headers = dict(token_headers)
        self.invalid_token = dict(invalid_token)

    async def token_endpoint(self, request: Request) -> Response:
        """``POST`` handler: a bearer token for ``grant_type=client_credentials`` from the known client."""
        self.stats.requests += 1
        self.stats.token_requests += 1
        form = dict(parse_qsl((await request.body()).decode("latin-1")))
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                decoded = ""
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, client_secret = unquote(basic_id), unquote(basic_secret)
        if not (
            secrets.compare_digest(client_id.encode(), self.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            self.stats.unauthorized += 1
            return json_response(
                401,
                {"error": "invalid_client", "error_description": "unknown client or wrong secret"},
                {"WWW-Authenticate": f'Basic realm="{self.realm}"'},
            )
        if form.get("grant_type") != "client_credentials":
            return json_response(
                400, {"error": "unsupported_grant_type", "error_description": "use client_credentials"}
            )
        token = self.tokens.issue()
        self.stats.tokens_issued += 1
        doc: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.tokens.ttl}
        if form.get("scope"):
            doc["scope"] = form["scope"]
        return json_response(200, doc, self.token_headers)

    def refuse(self, request: Request) -> Response | None:
        """None when the request carries a live bearer token; else the 401 to answer (counted as unauthorized)."""
        if self.tokens.state(bearer_token(request)) == "valid":
            return None
        self.stats.unauthorized += 1
        return json_response(
            401, self.invalid_token, {"WWW-Authenticate": f'Bearer realm="{self.realm}", error="invalid_token"'}
        )
