"""The gateway client: signed, token-authenticated calls that map the gateway's codes to the SDK's partner errors.

The token service, the retry / re-auth rules per code and the messages are documented in :mod:`tanpuhui.sdk.gateway`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from ..client import PartnerClient, RetryLater, RetryPolicy, parse_retry_after, retried
from ..errors import PartnerAuthError, PartnerError, PartnerResponseError, SignatureError
from ..privacy import redact
from .envelope import DEFAULT_CODES, CodeAction, Envelope, PayloadCipher, parse_envelope
from .signing import SIGN_METHODS, GatewayAuth, SignMethod

if TYPE_CHECKING:
    from ..adapter import Adapter

__all__ = ["GatewayClient", "GatewayConfig", "GatewayStats"]


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
                envelope = await self._retried(where, partial(self._exchange, "POST", path, None, body, who, None))
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
                envelope = await self._retried(where, partial(self._exchange, method, path, params, body, who, token))
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
        if envelope.sealed:
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

    async def _retried(self, where: str, exchange: Callable[[], Awaitable[Envelope]]) -> Envelope:
        """``exchange`` tried again on the codes that say so (and by the partner client on transport failures)."""
        return await retried(self.partner.retry, self._sleep, self._count_retry, where, exchange)

    def _count_retry(self) -> None:
        self.stats.code_retries += 1

    async def _exchange(
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
            raise RetryLater(said, parse_retry_after(response.headers.get("retry-after")))
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
