"""A sandbox partner's API-key check: a key issued to the hub, sent in a header on every request.

key = ApiKey(stats, header="X-API-Key")        # key.key: random unless given
refused = key.refuse(request)                  # in each API endpoint: None, or the 401 to answer
if refused is not None:
    return refused
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from .responses import json_response
from .stats import SandboxStats

__all__ = ["ApiKey"]


class ApiKey:
    """The key the sandbox accepts in ``header`` (random unless ``key`` is given); refusals count into ``stats``."""

    def __init__(self, stats: SandboxStats, *, header: str = "X-API-Key", key: str | None = None) -> None:
        self.stats = stats
        self.header = header
        self.key = key or secrets.token_urlsafe(24)

    def refuse(self, request: Request) -> Response | None:
        """None when the request carries the key; else the 401 to answer (counted as unauthorized)."""
        given = request.headers.get(self.header, "")
        if secrets.compare_digest(given.encode(), self.key.encode()):
            return None
        self.stats.unauthorized += 1
        return json_response(
            401, {"error": "invalid_api_key", "error_description": f"missing or wrong {self.header} header"}
        )
