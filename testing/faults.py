"""Partner failures on demand: an httpx transport that answers chosen page requests with an error.

A real partner rarely throttles or fails when a cassette is being recorded. :class:`FaultInjector` sits between the
recorder and the partner and answers, say, the second page request with a 503, so the cassette shows the failure
and the adapter's reaction to it exactly as they happen; replaying that cassette needs no injector.

Pages are counted per distinct request URL to ``path`` in order of first appearance: a retry of page 2 is still
page 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import orjson

__all__ = ["Fault", "FaultInjector"]

_BODIES = {
    401: {"error": "invalid_token", "error_description": "the access token was revoked (injected fault)"},
    429: {"error": "rate_limited", "error_description": "request rate limit exceeded (injected fault)"},
    500: {"error": "internal_error", "error_description": "internal server error (injected fault)"},
    502: {"error": "bad_gateway", "error_description": "upstream did not answer (injected fault)"},
    503: {"error": "unavailable", "error_description": "service temporarily unavailable (injected fault)"},
    504: {"error": "gateway_timeout", "error_description": "upstream timed out (injected fault)"},
}


@dataclass(frozen=True, slots=True)
class Fault:
    """Answer requests for page ``page`` of ``path`` with ``status``: the first ``times`` of them (None: all)."""

    path: str
    page: int = 1
    status: int = 503
    times: int | None = 1
    retry_after: int | None = None


class FaultInjector(httpx.AsyncBaseTransport):
    """Passes requests to ``inner`` except those a :class:`Fault` answers."""

    def __init__(self, inner: httpx.AsyncBaseTransport, faults: Iterable[Fault] = ()) -> None:
        self.inner = inner
        self.faults = list(faults)
        self._pages: dict[str, dict[str, int]] = {}
        self._served: dict[tuple[int, int], int] = {}
        self.injected = 0

    def clear(self) -> None:
        """Stop injecting (the partner recovered)."""
        self.faults = []

    def _page(self, path: str, url: str) -> int:
        pages = self._pages.setdefault(path, {})
        return pages.setdefault(url, len(pages) + 1)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` with the fault that matches it, or send it on to the inner transport."""
        for index, fault in enumerate(self.faults):
            if not request.url.path.endswith(fault.path):
                continue
            page = self._page(fault.path, str(request.url))
            served = self._served.get((index, page), 0)
            if page == fault.page and (fault.times is None or served < fault.times):
                self._served[(index, page)] = served + 1
                self.injected += 1
                headers = {"content-type": "application/json"}
                if fault.retry_after is not None:
                    headers["retry-after"] = str(fault.retry_after)
                if fault.status == 401:
                    headers["www-authenticate"] = 'Bearer error="invalid_token"'
                body = orjson.dumps(_BODIES.get(fault.status, {"error": "injected fault"}))
                return httpx.Response(fault.status, headers=headers, content=body, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()
