"""A sandbox YRD data exchange: the partner API of :mod:`.adapter`, serving synthetic data on loopback.

    with YrdSandbox(records=2000, seed=7) as sandbox:
        settings = YrdScenariosSettings(**sandbox.settings())
        ...
        print(sandbox.stats.records_requests, sandbox.dataset.expected())

What it serves (see docs/adapters/yrd_scenarios.md):

- ``POST /oauth/token``: client credentials (Basic auth, or ``client_id``/``client_secret`` form fields); opaque
  bearer tokens valid ``token_ttl`` seconds; :meth:`YrdSandbox.revoke_tokens` revokes them early.
- ``GET /v1/scenarios``: the catalog of the three platforms (:data:`SCENARIOS`), in the ``{"code", "msg", "data"}``
  envelope.
- ``GET /v1/records?limit=N[&cursor=C]``: the records change feed, ordered by ``updated_at``, paged by an opaque
  cursor, ``limit`` capped at ``page_size_cap``.
- The same three under ``/platforms/<platform>/...``: one platform's own API (its catalog and records only), for
  per-platform deployments (``sandbox.settings(per_platform=True)``).

The dataset (:class:`Dataset`, in :mod:`.sandbox_data`): ``records`` seeded records of Anhui residents on the
scenarios of :data:`SCENARIOS`, with ``bad`` items of the kinds in :data:`BAD_KINDS` and withdrawn ones of
:data:`WITHDRAWN_KINDS` mixed in; :meth:`Dataset.expected` says what a correct pull makes of them.

Faults: ``fail_every=N`` answers every N-th records request with a 500, ``throttle_every=N`` with a 429 and
``Retry-After: retry_after``; :meth:`YrdSandbox.fail_next` queues one-off answers (any status, or a 200 whose
envelope ``code`` is an error).

:class:`YrdSandbox` (also known as ``SandboxExchange``) is the ASGI app and its state, usable in-process with
``httpx.ASGITransport``; ``with`` serves it on loopback. It is built on the sandbox kit
(:mod:`tanpuhui.testing.sandbox`): token endpoint, faults, cursors and stats come from there.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tanpuhui.sdk import WebhookRequest
from tanpuhui.testing.sandbox import (
    OFFSET_CURSOR,
    EncodedItems,
    FirstServed,
    PartnerSandbox,
    ScheduledFault,
    json_response,
    new_webhook_secret,
    positive_int,
    signed_batches,
)
from tanpuhui.testing.sandbox import SandboxStats as KitStats

from .sandbox_data import (
    BAD_KINDS,
    CATALOG_VERSION,
    PLATFORM_PREFIX,
    SCENARIOS,
    WITHDRAWN_KINDS,
    Dataset,
    Scenario,
    sandbox_recognition,
)

__all__ = [
    "BAD_KINDS",
    "CATALOG_VERSION",
    "PLATFORM_PREFIX",
    "SCENARIOS",
    "WITHDRAWN_KINDS",
    "Dataset",
    "SandboxExchange",
    "SandboxStats",
    "Scenario",
    "YrdSandbox",
    "sandbox_recognition",
]


@dataclass(slots=True)
class SandboxStats(KitStats):
    """What the sandbox served (the kit's counters, and one per endpoint)."""

    catalog_requests: int = 0
    records_requests: int = 0


class YrdSandbox(PartnerSandbox):
    """The sandbox YRD data exchange as an ASGI app (:attr:`app`) plus the knobs to steer it; ``with`` (or
    :meth:`start`) serves it on ``host`` (``127.0.0.1``), ``port`` (ephemeral by default).

    ``visible`` hides the feed's tail until :meth:`publish` (for incremental runs); ``page_size_cap`` caps
    ``limit``; ``webhook_secret`` signs the pushes of :meth:`webhook_requests` (random by default). Other keyword
    arguments go to the kit (:class:`~tanpuhui.testing.sandbox.PartnerSandbox`): ``client_secret``, ``token_ttl``,
    ``fail_every``/``throttle_every``/``retry_after`` (500s/429s on every N-th records request), ``host``, ``port``.
    """

    adapter = "yrd_scenarios"
    server_name = "YRD sandbox"

    def __init__(
        self,
        records: int = 1000,
        seed: int = 7,
        *,
        days: int = 1,
        start: date = date(2024, 11, 5),
        bad: Mapping[str, int] | None = None,
        withdrawn: Mapping[str, int] | None = None,
        page_size_cap: int = 1000,
        visible: int | None = None,
        webhook_secret: str | None = None,
        client_id: str = "anhui-tanpuhui-sandbox",
        **options: Any,
    ) -> None:
        self.dataset = Dataset(records, seed, days=days, start=start, bad=bad, withdrawn=withdrawn)
        self.page_size_cap = page_size_cap
        self.webhook_secret = webhook_secret or new_webhook_secret()
        """The ``whsec_`` secret :meth:`webhook_requests` signs with (the hub's ``webhook_secrets``)."""
        items = self.dataset.items
        self.visible = len(items) if visible is None else min(visible, len(items))
        self._items = EncodedItems(items)
        self._by_platform: dict[str, list[int]] = {p: [] for p in PLATFORM_PREFIX}
        for position, item in enumerate(items):
            self._by_platform.setdefault(item["platform"], []).append(position)
        self._bad = FirstServed(self.dataset.bad_positions)
        self.stats: SandboxStats = SandboxStats()
        super().__init__(self.stats, client_id=client_id, realm="yrd-exchange-sandbox", **options)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
            Route("/v1/scenarios", self._scenarios, methods=["GET"]),
            Route("/v1/records", self._records, methods=["GET"]),
            Route("/platforms/{platform}/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
            Route("/platforms/{platform}/v1/scenarios", self._scenarios, methods=["GET"]),
            Route("/platforms/{platform}/v1/records", self._records, methods=["GET"]),
        ]

    # -- settings ----------------------------------------------------------------------------------------------

    def platform_url(self, platform: str) -> str:
        """Base URL of one platform's own API on this sandbox."""
        return f"{self.url}/platforms/{platform}"

    def settings(
        self, *, per_platform: bool = False, client_secret_env: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """``[adapters.yrd_scenarios]`` settings reaching this sandbox, with :func:`sandbox_recognition`.

        ``per_platform``: one endpoint per platform instead of the exchange. ``client_secret_env``: refer to the
        secret by environment variable (for a hub.toml) instead of carrying it. ``overrides`` are added.
        """
        secret: Any = {"env": client_secret_env} if client_secret_env else self.client_secret
        credentials = {"client_id": self.client_id, "client_secret": secret}
        if per_platform:
            endpoints = {
                p: {"base_url": self.platform_url(p), **credentials, "platforms": [p]} for p in PLATFORM_PREFIX
            }
        else:
            endpoints = {"exchange": {"base_url": self.url, **credentials, "platforms": list(PLATFORM_PREFIX)}}
        return {"endpoints": endpoints, **sandbox_recognition(), **overrides}

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """:meth:`settings` for the exchange, the client and webhook secrets as ``{"env": ...}`` references."""
        client_var, webhook_var = f"{env_prefix}CLIENT_SECRET", f"{env_prefix}WEBHOOK_SECRET"
        table = self.settings(client_secret_env=client_var, webhook_secrets=[{"env": webhook_var}])
        return table, {client_var: self.client_secret, webhook_var: self.webhook_secret}

    # -- knobs -------------------------------------------------------------------------------------------------

    def publish(self, count: int | None = None) -> None:
        """Make ``count`` more feed items visible (all when None), as if the platforms shared more records."""
        total = len(self.dataset.items)
        self.visible = total if count is None else min(total, self.visible + count)

    def signed_pushes(self, secret: str, *, batch: int = 100, timestamp: int | None = None) -> list[WebhookRequest]:
        """The visible feed as Standard Webhooks requests (headers, body) of ``{"items": [...]}`` batches.

        What the platforms would push to ``/webhooks/yrd_scenarios/records_push``; ``timestamp`` defaults to now.
        """
        seed = self.dataset.seed
        return signed_batches(
            secret,
            self.dataset.items[: self.visible],
            batch=batch,
            message_id=lambda n: f"msg_yrd_{seed}_{n:06d}",
            timestamp=timestamp,
        )

    def webhook_requests(self) -> dict[str, list[WebhookRequest]]:
        """The visible feed pushed to ``records_push``, 100 records a request, signed with :attr:`webhook_secret`."""
        return {"records_push": self.signed_pushes(self.webhook_secret, batch=100)}

    def fault_response(self, fault: ScheduledFault) -> Response:
        code = fault.code or {429: "4290", 500: "5000", 502: "5020", 503: "5030"}.get(fault.status, str(fault.status))
        what = f"code {fault.code}" if fault.code else str(fault.status)
        return _envelope(fault.status, code, f"sandbox fault injection ({what})", fault.headers)

    # -- endpoints ---------------------------------------------------------------------------------------------

    def _unknown_platform(self, request: Request) -> Response | None:
        platform = request.path_params.get("platform")
        if platform is not None and platform not in self._by_platform:
            return _envelope(404, "4040", f"no platform {platform!r} on this exchange")
        return None

    async def _scenarios(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.catalog_requests += 1
        refused = self.oauth.refuse(request) or self._unknown_platform(request)
        if refused is not None:
            return refused
        data = {"version": CATALOG_VERSION, "items": self.dataset.catalog(request.path_params.get("platform"))}
        return json_response(200, {"code": "0000", "msg": "success", "data": data})

    async def _records(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.records_requests += 1
        refused = (
            self.oauth.refuse(request)
            or self._unknown_platform(request)
            or self.scheduled_fault(self.stats.records_requests)
        )
        if refused is not None:
            return refused
        platform = request.path_params.get("platform")
        limit = positive_int(request.query_params.get("limit"), 100)
        if limit is None:
            return _envelope(400, "4001", "limit must be a positive integer")
        # The feed's positions this API serves: all of them (the exchange) or one platform's.
        positions = range(self.visible) if platform is None else self._by_platform[platform]
        visible = len(positions) if platform is None else bisect.bisect_left(positions, self.visible)
        window = OFFSET_CURSOR.window(
            request.query_params.get("cursor"), limit, visible=visible, total=len(positions), cap=self.page_size_cap
        )
        if window is None:
            return _envelope(400, "4002", "cursor is not one this API issued")
        chosen = positions[window.begin : window.end]
        self.stats.items_served += len(chosen)
        self.stats.bad_items += self._bad.serve(chosen)
        data = {"items": self._items.array(chosen), "next_cursor": window.next_cursor, "has_more": window.has_more}
        return json_response(200, {"code": "0000", "msg": "success", "data": data})


def _envelope(status: int, code: str, msg: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, {"code": code, "msg": msg, "data": None}, headers)


SandboxExchange = YrdSandbox
"""The same class by the name in-process users know it by (``httpx.ASGITransport(app=SandboxExchange(...).app)``)."""
