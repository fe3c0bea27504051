"""A sandbox transit card operator: the partner API of :mod:`.adapter`, serving synthetic data on loopback.

    with TransitSandbox(trips=5000, seed=7) as sandbox:
        settings = TransitCardSettings(base_url=sandbox.url, client_id=sandbox.client_id,
                                       client_secret=sandbox.client_secret)
        ...
        print(sandbox.stats.requests, sandbox.stats.bad_items)

What it serves (see docs/adapters/transit_card.md):

- ``POST /oauth/token``: client credentials (Basic auth, or ``client_id``/``client_secret`` form fields); issues
  opaque bearer tokens valid ``token_ttl`` seconds; :meth:`TransitSandbox.revoke_tokens` revokes them early.
- ``GET /v1/network``: a Hefei-like network: 5 metro lines (15-20 stations, 8 transfer stations) and 20 bus
  lines. Station names are Hefei's style; the geometry is illustrative, not survey data.
- ``GET /v1/transactions?limit=N[&cursor=C][&segment=I&segments=N]``: a deterministic dataset (seeded), ordered
  by ``deal_time``, paged by an opaque cursor, ``limit`` capped at ``page_size_cap``. With ``segments``, only the
  transactions of segment ``I``: those whose holder (``account_mobile``, else ``card_no``) has CRC-32 modulo ``N``
  equal to ``I`` (a parallel scan's part, for a partitioned stream); the cursor stays a position in the whole feed.

The dataset (:class:`Dataset`, in :mod:`.sandbox_data`): ``trips`` seeded journeys, metro journeys a tap-in and a
tap-out (which may fall on different pages), bus journeys one tap, with a few bad items of the kinds in
:data:`BAD_KINDS`; :meth:`Dataset.expected` says what a correct pull makes of the whole dataset.

Faults: ``fail_every=N`` answers every N-th transactions request with a 500, ``throttle_every=N`` with a 429
and ``Retry-After: retry_after``; :meth:`TransitSandbox.fail_next` queues one-off answers (any status).

:class:`TransitSandbox` (also known as ``SandboxPartner``) is the ASGI app and its state, usable in-process with
``httpx.ASGITransport``; ``with`` serves it on loopback. It is built on the sandbox kit
(:mod:`tanpuhui.testing.sandbox`): token endpoint, faults, cursors and stats come from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tanpuhui.testing.sandbox import (
    OFFSET_CURSOR,
    EncodedItems,
    FirstServed,
    PartnerSandbox,
    ScheduledFault,
    json_response,
    non_negative_int,
    positive_int,
    segment_of,
)
from tanpuhui.testing.sandbox import SandboxStats as KitStats

from .network import Network
from .sandbox_data import BAD_KINDS, Dataset, hefei_network

__all__ = ["BAD_KINDS", "Dataset", "SandboxPartner", "SandboxStats", "TransitSandbox", "hefei_network"]


@dataclass(slots=True)
class SandboxStats(KitStats):
    """What the sandbox served (the kit's counters, and one per endpoint)."""

    network_requests: int = 0
    transactions_requests: int = 0


class TransitSandbox(PartnerSandbox):
    """The sandbox operator's API as an ASGI app (:attr:`app`) plus the knobs to steer it; ``with`` (or
    :meth:`start`) serves it on ``host`` (``127.0.0.1``), ``port`` (ephemeral by default).

    ``visible`` hides the dataset's tail until :meth:`publish` (for incremental runs); ``page_size_cap`` caps
    ``limit``. Other keyword arguments go to the kit (:class:`~tanpuhui.testing.sandbox.PartnerSandbox`):
    ``client_secret``, ``token_ttl``, ``fail_every``/``throttle_every``/``retry_after`` (500s/429s on every N-th
    transactions request), ``host``, ``port``.
    """

    adapter = "transit_card"
    server_name = "transit sandbox"

    def __init__(
        self,
        trips: int = 1000,
        seed: int = 7,
        *,
        days: int = 1,
        start: date = date(2024, 11, 5),
        bad: Mapping[str, int] | None = None,
        mobile_share: float = 0.1,
        page_size_cap: int = 1000,
        visible: int | None = None,
        client_id: str = "tanpuhui-sandbox",
        **options: Any,
    ) -> None:
        self.network_doc = hefei_network()
        self.network = Network.from_document(self.network_doc, "sandbox network")
        self.dataset = Dataset(
            trips,
            seed,
            network=self.network,
            network_doc=self.network_doc,
            days=days,
            start=start,
            bad=bad,
            mobile_share=mobile_share,
        )
        self.page_size_cap = page_size_cap
        self.visible = len(self.dataset.items) if visible is None else min(visible, len(self.dataset.items))
        self._items = EncodedItems(self.dataset.items)
        self._segments: dict[int, list[int]] = {}
        """segments -> each transaction's segment, worked out on the first request that asks for that split."""
        self._network_body = orjson.dumps(self.network_doc)
        self._bad = FirstServed(self.dataset.bad_positions)
        self.stats: SandboxStats = SandboxStats()
        super().__init__(self.stats, client_id=client_id, realm="transit-sandbox", **options)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
            Route("/v1/network", self._network, methods=["GET"]),
            Route("/v1/transactions", self._transactions, methods=["GET"]),
        ]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``[adapters.transit_card]`` settings that reach this sandbox (``overrides`` added)."""
        return {"base_url": self.url, "client_id": self.client_id, "client_secret": self.client_secret, **overrides}

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The kit's table, asking pages as large as the sandbox serves."""
        table, env = super().hub_settings(env_prefix)
        return {**table, "page_size": self.page_size_cap}, env

    def publish(self, count: int | None = None) -> None:
        """Make ``count`` more items visible (all when None), as if the operator cleared more transactions."""
        total = len(self.dataset.items)
        self.visible = total if count is None else min(total, self.visible + count)

    def fault_response(self, fault: ScheduledFault) -> Response:
        error, description = _FAULTS.get(fault.status, ("error", "the request failed"))
        doc = {"error": fault.code or error, "error_description": description}
        return json_response(fault.status, doc, fault.headers)

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def _network(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.network_requests += 1
        refused = self.oauth.refuse(request)
        if refused is not None:
            return refused
        return Response(self._network_body, media_type="application/json")

    async def _transactions(self, request: Request) -> Response:
        refused = self.refusal(request, "transactions_requests")
        if refused is not None:
            return refused
        limit = positive_int(request.query_params.get("limit"), 100)
        if limit is None:
            return json_response(
                400, {"error": "invalid_request", "error_description": "limit must be a positive integer"}
            )
        split = self._segment_request(request)
        if isinstance(split, Response):
            return split
        cursor = request.query_params.get("cursor")
        total = len(self.dataset.items)
        served: range | list[int]
        if split is None:
            window = OFFSET_CURSOR.window(cursor, limit, visible=self.visible, total=total, cap=self.page_size_cap)
            served = range(window.begin, window.end) if window is not None else range(0)
        else:
            segment, of = split
            found = OFFSET_CURSOR.segment_window(
                cursor,
                limit,
                lambda position: of[position] == segment,
                visible=self.visible,
                total=total,
                cap=self.page_size_cap,
            )
            window = found[1] if found is not None else None
            served = found[0] if found is not None else []
        if window is None:
            return json_response(
                400, {"error": "invalid_cursor", "error_description": "cursor is not one this API issued"}
            )
        self.stats.items_served += len(served)
        self.stats.bad_items += self._bad.serve(served)
        page = {"data": self._items.array(served), "next_cursor": window.next_cursor, "has_more": window.has_more}
        return json_response(200, page)

    def _segment_request(self, request: Request) -> tuple[int, list[int]] | Response | None:
        """``segment``/``segments`` of a request: (the segment, each transaction's segment), None when the request
        asks for the whole feed, or a 400 naming the parameter."""
        params = request.query_params
        if "segment" not in params and "segments" not in params:
            return None
        segments = positive_int(params.get("segments"), 0)
        segment = non_negative_int(params.get("segment"), -1)
        if not segments or segments > 64:
            return _bad_request("segments must be a whole number from 1 to 64, given with segment")
        if segment is None or not 0 <= segment < segments:
            return _bad_request(f"segment must be a whole number from 0 to {segments - 1}, given with segments")
        of = self._segments.get(segments)
        if of is None:
            of = self._segments[segments] = [
                segment_of(str(item.get("account_mobile") or item.get("card_no") or ""), segments)
                for item in self.dataset.items
            ]
        return segment, of


def _bad_request(description: str) -> Response:
    return json_response(400, {"error": "invalid_request", "error_description": description})


_FAULTS = {
    429: ("rate_limited", "request rate limit exceeded for this client"),
    500: ("internal_error", "internal server error"),
    502: ("bad_gateway", "upstream clearing service did not answer"),
    503: ("unavailable", "service temporarily unavailable"),
}

SandboxPartner = TransitSandbox
"""The same class by the name in-process users know it by (``httpx.ASGITransport(app=SandboxPartner(...).app)``)."""
