"""A simulator of the utility's billing API, to record cassettes from and to run ``tanpuhui demo`` against.

    partner = WaterSandbox(households=6, seed=7)
    transport = httpx.ASGITransport(app=partner.app)      # in-process
    with WaterSandbox() as sandbox:                        # or on a loopback port
        sandbox.url, sandbox.client_id, sandbox.client_secret

Deterministic (seeded) bills for October 2024; account numbers start with ``99`` and mobiles are ``199`` + a
serial: synthetic, nobody's real account. Built on the sandbox kit (:mod:`tanpuhui.testing.sandbox`): the token
endpoint, faults on demand (``fail_every``, ``throttle_every``, :meth:`WaterSandbox.fail_next`), paging and stats
come from there; this module holds only the bills and the bills endpoint.
"""

from __future__ import annotations

import base64
import binascii
import random
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tanpuhui.testing.sandbox import OffsetCursor, PartnerSandbox, SandboxStats, json_response, positive_int

__all__ = ["WaterSandbox", "WaterStats"]

DISTRICTS = ("340102", "340103", "340104", "340111")


class _BillCursor(OffsetCursor):
    """The utility's cursor: the position in decimal, base64 with padding."""

    def encode(self, offset: int) -> str:
        return base64.urlsafe_b64encode(str(offset).encode()).decode()

    def decode(self, cursor: str | None) -> int | None:
        if not cursor:
            return 0
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode()))
        except (binascii.Error, ValueError):
            return None
        return offset if offset >= 0 else None


_CURSOR = _BillCursor()


@dataclass(slots=True)
class WaterStats(SandboxStats):
    """What the sandbox served (the kit's counters, and the bills endpoint's)."""

    bills_requests: int = 0


class WaterSandbox(PartnerSandbox):
    """The utility's API as an ASGI app (:attr:`app`), with its credentials and bills; ``with`` serves it."""

    adapter = "hefei_water"
    server_name = "Hefei water sandbox"

    def __init__(
        self, households: int = 12, seed: int = 7, *, client_id: str = "anhui-carbon-hub", **options: Any
    ) -> None:
        rng = random.Random(seed)
        self.bills: list[dict[str, Any]] = []
        for n in range(households):
            last_year = round(rng.uniform(6.0, 16.0), 1)
            bill: dict[str, Any] = {
                "billId": f"HW202410A{n:05d}",
                "accountNo": f"99{rng.randrange(10**8):08d}",
                "period": "2024-10",
                "readDate": "2024-11-01",
                "usageM3": round(last_year * rng.uniform(0.7, 1.15), 1),
                "lastYearM3": last_year,
                "district": rng.choice(DISTRICTS),
            }
            if n % 3 == 0:
                bill["mobile"] = f"199{n:08d}"
            self.bills.append(bill)
        self.stats: WaterStats = WaterStats()
        super().__init__(
            self.stats,
            client_id=client_id,
            token_ttl=7200,
            realm="hfwater-sandbox",
            token_headers={},  # the utility's token answers carry no cache headers
            invalid_token={"code": 401, "message": "invalid token"},
            **options,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
            Route("/api/v2/bills", self._bills, methods=["GET"]),
        ]

    async def _bills(self, request: Request) -> Response:
        refused = self.refusal(request, "bills_requests")
        if refused is not None:
            return refused
        size = positive_int(request.query_params.get("pageSize"), 50)
        total = len(self.bills)
        window = (
            None
            if size is None
            else _CURSOR.window(request.query_params.get("cursor"), size, visible=total, total=total)
        )
        if window is None:
            return json_response(
                400, {"code": 400, "message": "pageSize must be a positive integer, cursor one we sent"}
            )
        self.stats.items_served += window.end - window.begin
        data = {
            "list": self.bills[window.begin : window.end],
            "nextCursor": window.next_cursor,
            "hasMore": window.has_more,
        }
        return json_response(200, {"code": 0, "message": "ok", "data": data})
