"""Console sign-in: the admin token buys a signed, expiring session cookie; forms carry a CSRF token.

The cookie is ``EXPIRES.NONCE.MAC`` with an HMAC-SHA256 under a key derived from the admin token, so every worker
and replica with the same token accepts it (no session table) and changing the token signs everyone out. It is
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page can send it) and expires after
``[server] console_session``; ``Secure`` when the request came over HTTPS. The CSRF token is an HMAC of the cookie:
a form posted without the token of the session that sent it is refused. The token itself never appears in a page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = ["COOKIE", "Sessions"]

COOKIE = "tanpuhui_console"


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one admin token (see the module docstring)."""

    def __init__(self, admin_token: str, lifetime: float) -> None:
        self._token = admin_token.encode()
        self._key = hmac.new(self._token, b"tanpuhui console session v1", hashlib.sha256).digest()
        self.lifetime = lifetime

    @property
    def enabled(self) -> bool:
        return bool(self._token)

    def token_matches(self, offered: str) -> bool:
        """Whether ``offered`` is the admin token (constant time)."""
        return self.enabled and hmac.compare_digest(offered.strip().encode(), self._token)

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value."""
        expires = int((now if now is not None else time.time()) + self.lifetime)
        body = f"{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, cookie: str | None, now: float | None = None) -> bool:
        """Whether ``cookie`` was issued here and has not expired."""
        if not cookie or not self.enabled:
            return False
        body, _, mac = cookie.rpartition(".")
        expires, _, _ = body.partition(".")
        if not expires.isdigit() or not hmac.compare_digest(mac, self._mac(body)):
            return False
        return int(expires) > (now if now is not None else time.time())

    def csrf(self, cookie: str) -> str:
        """The CSRF token of a session: every state-changing form sends it back."""
        return self._mac(f"csrf:{cookie}")[:32]

    def csrf_ok(self, cookie: str | None, offered: str | None) -> bool:
        return bool(cookie and offered) and hmac.compare_digest(self.csrf(cookie or ""), offered or "")

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
