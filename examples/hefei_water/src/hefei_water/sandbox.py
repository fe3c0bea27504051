"""An in-process simulator of the utility's billing API (an ASGI app), to record cassettes and run demos from.

    partner = WaterSandbox(households=6, seed=7)
    transport = httpx.ASGITransport(app=partner.app)

Deterministic (seeded) bills for October 2024; account numbers start with ``99`` and mobiles are ``199`` + a
serial: synthetic, nobody's real account.
"""

from __future__ import annotations

import base64
import random
import secrets
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["WaterSandbox"]

DISTRICTS = ("340102", "340103", "340104", "340111")


class WaterSandbox:
    """The utility's API as an ASGI app (:attr:`app`), with its credentials and bills."""

    def __init__(self, households: int = 12, seed: int = 7, *, client_id: str = "anhui-carbon-hub") -> None:
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
        self.client_id = client_id
        self.client_secret = secrets.token_urlsafe(18)
        self._tokens: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/api/v2/bills", self._bills, methods=["GET"]),
            ]
        )

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return _json(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(18)
        self._tokens.add(token)
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 7200})

    async def _bills(self, request: Request) -> Response:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self._tokens:
            return _json(401, {"code": 401, "message": "invalid token"})
        size = int(request.query_params.get("pageSize", "50"))
        cursor = request.query_params.get("cursor")
        offset = int(base64.urlsafe_b64decode(cursor.encode())) if cursor else 0
        end = min(offset + size, len(self.bills))
        data = {
            "list": self.bills[offset:end],
            "nextCursor": base64.urlsafe_b64encode(str(end).encode()).decode(),
            "hasMore": end < len(self.bills),
        }
        return _json(200, {"code": 0, "message": "ok", "data": data})


def _json(status: int, doc: Any) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")
