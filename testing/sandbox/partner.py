"""The base of a partner sandbox: OAuth2 client credentials, a JSON API, faults on demand, served on loopback.

A sandbox built on it holds only its data set and its endpoints::

    class WaterSandbox(PartnerSandbox):
        adapter = "hefei_water"
        server_name = "Hefei water sandbox"

        def __init__(self, households: int = 12, seed: int = 7, **options: Any) -> None:
            self.bills = make_bills(households, seed)
            super().__init__(SandboxStats(), client_id="anhui-carbon-hub", realm="hfwater-sandbox", **options)

        def routes(self) -> list[BaseRoute]:
            return [Route("/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
                    Route("/api/v2/bills", self._bills)]

        async def _bills(self, request: Request) -> Response:
            self.stats.requests += 1
            # a 401 for a missing, expired or revoked token; else a fault the schedule picks (fail_every, ...)
            refused = self.oauth.refuse(request) or self.scheduled_fault(self.stats.requests)
            if refused is not None:
                return refused
            window = OFFSET_CURSOR.window(request.query_params.get("cursor"), 50, visible=..., total=...)
            ...

:attr:`PartnerSandbox.app` is the ASGI app (in-process: ``httpx.ASGITransport(app=sandbox.app)``); ``start()``
or ``with`` serves it on loopback. The sandbox implements :class:`tanpuhui.sdk.Sandbox`, so a plugin can offer it
to ``tanpuhui demo`` through the ``register_sandboxes`` hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tanpuhui.sdk import WebhookRequest

from ..loopback import LoopbackServer
from .faults import FaultSchedule, ScheduledFault
from .oauth import INVALID_TOKEN, NO_STORE, ClientCredentials
from .responses import json_response
from .stats import SandboxStats

__all__ = ["PartnerSandbox", "SandboxServer"]


class SandboxServer(LoopbackServer):
    """A partner API as an ASGI app (:attr:`app`) with its stats and :class:`FaultSchedule`, served on loopback.

    Subclasses set :attr:`adapter` and ``server_name``, build their data set and stats, call this ``__init__`` (with
    ``fail_every``/``throttle_every``/``retry_after``, see :class:`FaultSchedule`, and ``host``/``port``, 0:
    ephemeral) and implement :meth:`routes` and :meth:`hub_settings`. :class:`PartnerSandbox` adds OAuth2 client
    credentials; a partner that authenticates otherwise (a signing gateway, say) builds on this class directly.
    """

    adapter: str = ""
    """The adapter whose partner this sandbox plays."""

    def __init__(
        self,
        stats: SandboxStats,
        *,
        fail_every: int = 0,
        throttle_every: int = 0,
        retry_after: float = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.stats = stats
        self.faults = FaultSchedule(fail_every=fail_every, throttle_every=throttle_every, retry_after=retry_after)
        self.app: Any = Starlette(routes=self.routes())
        """The ASGI app (replaceable before :meth:`start`, e.g. by a wrapper that injects transport faults)."""

    def routes(self) -> Sequence[BaseRoute]:
        """The partner's endpoints."""
        raise NotImplementedError

    def asgi_app(self) -> Any:
        """The ASGI app :meth:`start` serves: :attr:`app`."""
        return self.app

    def scheduled_fault(self, serial: int, scope: str | None = None) -> Response | None:
        """The error answer for data request number ``serial`` (of ``scope``) when the :attr:`faults` schedule
        picks it (counted in ``stats.faults`` by code, else status); None to serve the request."""
        fault = self.faults.next(serial, scope)
        if fault is None:
            return None
        self.stats.faults[fault.code or fault.status] += 1
        return self.fault_response(fault)

    def fault_response(self, fault: ScheduledFault) -> Response:
        """A scheduled fault as the partner answers it; override for the partner's own error format.

        By default an RFC 6749-style ``{"error", "error_description"}`` body, ``error`` the fault's code if it has
        one.
        """
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        doc = {
            "error": fault.code or phrase.lower().replace(" ", "_"),
            "error_description": f"{phrase} (sandbox fault)",
        }
        return json_response(fault.status, doc, fault.headers)

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The ``[adapters.NAME]`` table reaching this sandbox (secrets as ``{"env": VAR}``), and that environment."""
        raise NotImplementedError

    def webhook_requests(self) -> dict[str, list[WebhookRequest]]:
        """Push stream name -> the signed requests the partner would push (none unless a subclass says so)."""
        return {}


class PartnerSandbox(SandboxServer):
    """A :class:`SandboxServer` behind OAuth2 client credentials (:attr:`oauth`; its token endpoint is
    ``self.oauth.token_endpoint``, for :meth:`routes` to place).

    Keyword arguments: ``client_id``/``client_secret`` (random unless given), ``token_ttl`` seconds, ``realm``
    (``WWW-Authenticate``), ``token_headers`` and ``invalid_token`` (see :class:`ClientCredentials`); the rest go
    to :class:`SandboxServer` (faults, host, port).
    """

    def __init__(
        self,
        stats: SandboxStats,
        *,
        client_id: str,
        client_secret: str | None = None,
        token_ttl: int = 1800,
        realm: str = "sandbox",
        token_headers: Mapping[str, str] = NO_STORE,
        invalid_token: Mapping[str, Any] = INVALID_TOKEN,
        **server: Any,
    ) -> None:
        self.oauth = ClientCredentials(
            stats,
            client_id=client_id,
            client_secret=client_secret,
            ttl=token_ttl,
            realm=realm,
            token_headers=token_headers,
            invalid_token=invalid_token,
        )
        super().__init__(stats, **server)

    @property
    def client_id(self) -> str:
        """The OAuth2 client id the sandbox accepts."""
        return self.oauth.client_id

    @property
    def client_secret(self) -> str:
        """The OAuth2 client secret the sandbox accepts."""
        return self.oauth.client_secret

    def revoke_tokens(self) -> None:
        """Revoke every issued token before its expiry: the next API call with one gets a 401."""
        self.oauth.tokens.revoke_all()

    def refusal(self, request: Request, counter: str) -> Response | None:
        """Count a data request (in ``stats.requests`` and in ``stats.<counter>``, its endpoint's own) and answer
        what refuses it, if anything: a 401 for a missing, expired or revoked token, else the fault the schedule
        picks for the endpoint's request number. None: serve it."""
        self.stats.requests += 1
        serial: int = getattr(self.stats, counter) + 1
        setattr(self.stats, counter, serial)
        return self.oauth.refuse(request) or self.scheduled_fault(serial)

    def fail_next(
        self, status: int, *, count: int = 1, retry_after: float | None = None, code: str | None = None
    ) -> None:
        """Answer the next ``count`` data requests with ``status`` (and ``Retry-After`` when given).

        ``code``: the partner's error code in the answer (with status 200: a well-formed answer reporting an error).
        """
        self.faults.fail_next(status, count=count, retry_after=retry_after, code=code)

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """``base_url``, ``client_id`` and ``client_secret`` (as ``{"env": env_prefix + "CLIENT_SECRET"}``)."""
        var = f"{env_prefix}CLIENT_SECRET"
        table = {"base_url": self.url, "client_id": self.client_id, "client_secret": {"env": var}}
        return table, {var: self.client_secret}
