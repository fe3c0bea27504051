"""PartnerClient: the HTTP client adapters use to pull from partner APIs.

httpx for transport, authlib for OAuth2 client credentials, tenacity for retries. What it does for every adapter:

- retries 429, 500, 502, 503, 504, timeouts and connection errors with exponential backoff and jitter, honouring
  ``Retry-After`` (seconds or HTTP date, capped), within a bounded number of attempts;
- fetches an OAuth2 token before the first request and again when it expires (authlib, by the clock); a 401 from a
  token the partner revoked early re-fetches the token once and retries the request, a second 401 is fatal;
- maps failures to :mod:`tanpuhui.sdk.errors` with the adapter, method and URL in the message.

Tests pass ``transport=`` or use respx; ``sleep=`` lets a test observe waits instead of sleeping them.

:class:`OAuth2Settings` and :class:`RetrySettings` are the same knobs as settings fields (the ``[adapters.NAME]``
table of hub.toml), so every adapter spells them alike; ``Adapter.oauth2_client`` builds the client from them.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar

import httpx
import orjson
from authlib.integrations.base_client.errors import OAuthError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from .errors import PartnerAuthError, PartnerResponseError, PartnerUnavailable

with warnings.catch_warnings():
    # authlib >= 1.9 prefers the httpx2 fork and warns when it falls back to httpx; we use httpx on purpose
    # (respx, which CI replays cassettes with, patches httpx).
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

__all__ = [
    "ClientStats",
    "OAuth2ClientCredentials",
    "OAuth2Settings",
    "PartnerClient",
    "RetryPolicy",
    "RetrySettings",
    "parse_retry_after",
]

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all (first try included), backoff from ``initial`` to ``maximum`` seconds."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    max_retry_after: float = 120.0


@dataclass(frozen=True, slots=True)
class OAuth2ClientCredentials:
    """OAuth2 client-credentials grant settings (RFC 6749 §4.4)."""

    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    auth_method: str = "client_secret_basic"


class RetrySettings(BaseModel):
    """The :class:`RetryPolicy` and the per-request timeout as settings fields; :meth:`retry_policy` builds the policy.

    Mix it into an adapter's settings model (``class MySettings(AdapterSettings, RetrySettings)``), or use
    ``PartnerSettings``, which has these and :class:`OAuth2Settings` fields.
    """

    model_config = ConfigDict(extra="forbid")

    retry_attempts: int = Field(default=5, ge=1, le=20, description="attempts per request, the first included")
    retry_initial_backoff: float = Field(default=0.5, gt=0, le=60, description="first backoff, seconds (then doubling)")
    retry_max_backoff: float = Field(default=30.0, gt=0, le=600, description="longest backoff, seconds")
    max_retry_after: float = Field(default=120.0, ge=0, le=3600, description="cap on a partner's Retry-After, seconds")
    timeout: float = Field(default=30.0, gt=0, le=600, description="per-request timeout, seconds")

    def retry_policy(self) -> RetryPolicy:
        """The :class:`RetryPolicy` these settings describe."""
        return RetryPolicy(
            attempts=self.retry_attempts,
            initial=self.retry_initial_backoff,
            maximum=self.retry_max_backoff,
            max_retry_after=self.max_retry_after,
        )


class OAuth2Settings(BaseModel):
    """A partner API root and its OAuth2 client-credentials grant as settings; :meth:`credentials` builds the grant.

    ``token_url`` defaults to ``{base_url}/oauth/token``. ``base_url`` must be an http(s) URL (a trailing ``/`` is
    dropped), or empty where a subclass gives it the default ``""`` (a partner that may be left unconfigured).
    ``client_secret`` is a ``SecretStr``: in hub.toml it can only be an ``{ env = "NAME" }`` reference.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="Partner API root, e.g. https://api.partner.example")
    token_url: str = Field(default="", description="OAuth2 token endpoint; default {base_url}/oauth/token")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = None
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value and not cls.model_fields["base_url"].is_required():
            return value  # a subclass made the partner optional (e.g. push only): empty means not configured
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _default_token_url(self) -> Self:
        if self.base_url and not self.token_url:
            self.token_url = f"{self.base_url}/oauth/token"
        return self

    def credentials(self) -> OAuth2ClientCredentials:
        """The :class:`OAuth2ClientCredentials` these settings describe."""
        return OAuth2ClientCredentials(
            token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value(),
            scope=self.scope,
            auth_method=self.auth_method,
        )


@dataclass(slots=True)
class ClientStats:
    """Counters for metrics and summaries."""

    requests: int = 0
    retries: int = 0
    token_fetches: int = 0
    seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)


class RetryLater(Exception):
    """A try that failed transiently (:func:`retrying` tries again); ``reason`` goes in the message when the tries
    run out, ``retry_after`` is the wait the partner asked for (seconds), if it did."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retrying(
    policy: RetryPolicy, sleep: Callable[[float], Awaitable[None]], on_retry: Callable[[], None]
) -> AsyncRetrying:
    """Tenacity's loop over tries that may raise :class:`RetryLater`: ``policy.attempts`` in all, each wait the
    partner's ``retry_after`` (capped at ``max_retry_after``) or an exponential backoff from ``initial`` with up to
    1 s of jitter (capped at ``maximum``), ``on_retry`` called before it; the last failure is re-raised."""
    # Not wait_exponential_jitter(initial=...): tenacity 9.2 deprecated ``initial`` and older releases lack its
    # replacement ``multiplier``.
    backoff = wait_exponential(multiplier=policy.initial, max=policy.maximum) + wait_random(0, 1)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryLater) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_after)
        return min(float(backoff(state)), policy.maximum)

    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception_type(RetryLater),
        sleep=sleep,
        before_sleep=lambda _: on_retry(),
        reraise=True,
    )


async def retried(
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]],
    on_retry: Callable[[], None],
    where: str,
    once: Callable[[], Awaitable[T]],
) -> T:
    """``once()`` under :func:`retrying`; a :class:`PartnerUnavailable` naming ``where`` when the tries run out."""
    try:
        async for attempt in retrying(policy, sleep, on_retry):
            with attempt:
                return await once()
    except RetryLater as exc:
        raise PartnerUnavailable(f"{where}: gave up after {policy.attempts} attempts ({exc.reason})") from None
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class PartnerClient:
    """An HTTP client for one partner API, shared by the streams of one adapter."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        oauth: OAuth2ClientCredentials | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._sleep = sleep
        self._oauth = oauth
        common: dict[str, Any] = {
            "base_url": base_url,
            "timeout": timeout,
            "headers": dict(headers or {}),
            "transport": transport,
        }
        self._http: httpx.AsyncClient
        if oauth is None:
            self._http = httpx.AsyncClient(**common)
        else:
            self._http = AsyncOAuth2Client(
                client_id=oauth.client_id,
                client_secret=oauth.client_secret,
                token_endpoint=oauth.token_url,
                token_endpoint_auth_method=oauth.auth_method,
                grant_type="client_credentials",
                scope=oauth.scope,
                leeway=60,
                **common,
            )
        self._has_token = False

    async def _fetch_token(self) -> None:
        assert isinstance(self._http, AsyncOAuth2Client) and self._oauth is not None
        self.stats.token_fetches += 1
        try:
            async for attempt in retrying(self.retry, self._sleep, self._count_retry):
                with attempt:
                    try:
                        await self._http.fetch_token(self._oauth.token_url, grant_type="client_credentials")
                    except (httpx.TimeoutException, httpx.TransportError) as exc:
                        raise RetryLater(f"token endpoint: {type(exc).__name__}") from exc
                    except httpx.HTTPStatusError as exc:
                        # authlib raises this (not OAuthError) for an error status without an OAuth2 error body.
                        status = exc.response.status_code
                        if status in RETRYABLE_STATUS:
                            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                            raise RetryLater(f"HTTP {status}", retry_after) from exc
                        raise
        except RetryLater as exc:
            raise PartnerUnavailable(f"{self.name}: token endpoint {self._oauth.token_url}: {exc.reason}") from exc
        except httpx.HTTPStatusError as exc:
            raise PartnerAuthError(
                f"{self.name}: token endpoint {self._oauth.token_url} refused client {self._oauth.client_id!r}: "
                f"{exc.response.status_code} {_brief(exc.response)}"
            ) from None
        except OAuthError as exc:
            raise PartnerAuthError(
                f"{self.name}: token endpoint {self._oauth.token_url} refused client {self._oauth.client_id!r}: "
                f"{exc.error}{' - ' + exc.description if exc.description else ''}"
            ) from None
        except ValueError as exc:  # authlib raises on a token response that is not JSON / lacks access_token
            raise PartnerAuthError(f"{self.name}: token endpoint {self._oauth.token_url}: {exc}") from None
        self._has_token = True

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request with auth and retries; returns a 2xx/3xx response or raises a ``PartnerError``."""
        if self._oauth is not None and not self._has_token:
            await self._fetch_token()
        reauthed = False
        where = f"{self.name}: {method} {url}"
        while True:
            send = functools.partial(self._send, method, url, **kwargs)
            response = await retried(self.retry, self._sleep, self._count_retry, where, send)
            if response.status_code == 401 and self._oauth is not None and not reauthed:
                # A token revoked before its expiry: authlib only renews by the clock. Re-fetch once.
                reauthed = True
                await self._fetch_token()
                continue
            if response.status_code == 401 or response.status_code == 403:
                raise PartnerAuthError(f"{where}: {response.status_code} {_brief(response)}")
            if response.status_code >= 400:
                raise PartnerResponseError(f"{where}: {response.status_code} {_brief(response)}")
            return response

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One try of a request (:meth:`request` retries it)."""
        started = time.perf_counter()
        self.stats.requests += 1
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryLater(f"timeout ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise RetryLater(f"connection error ({type(exc).__name__}: {exc})") from exc
        finally:
            self.stats.seconds += time.perf_counter() - started
        status = response.status_code
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        if status in RETRYABLE_STATUS:
            await response.aread()
            raise RetryLater(f"HTTP {status}", parse_retry_after(response.headers.get("retry-after")))
        return response

    async def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET and parse JSON; a body that is not JSON is a :class:`PartnerResponseError` naming the URL."""
        response = await self.request("GET", url, params=params)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise PartnerResponseError(
                f"{self.name}: GET {response.request.url}: response is not JSON ({exc}); "
                f"first bytes: {response.content[:80]!r}"
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP connections (the adapter does it when the hub is done with it)."""
        await self._http.aclose()


def _brief(response: httpx.Response) -> str:
    text = response.text[:200].replace("\n", " ")
    return f"{response.reason_phrase}: {text}" if text else response.reason_phrase
