"""Recording partner exchanges into cassettes: an httpx transport that sends on and writes down.

    transport = RecordingTransport(rewrite={"https://water.sandbox.example": "http://127.0.0.1:8123"})
    adapter = HefeiWaterAdapter(settings, HttpOptions(transport=transport))
    ... run the adapter ...
    transport.save("tests/cassettes/readings/two_pages.json")

The adapter is configured with the cassette's stable base URL; ``rewrite`` sends its requests to wherever the
partner (or a sandbox) really is, and the cassette keeps the stable URL, so replays need no configuration change.
Exchanges are kept raw in memory and scrubbed (:class:`~tanpuhui.testing.scrub.Scrubber`) in request order when
the cassette is written: request headers and bodies are never written (requests match on method and URL).
A timeout or refused connection is recorded as ``{"error": "timeout"}`` / ``{"error": "connect"}``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .cassette import dump_cassette
from .scrub import Scrubber

__all__ = ["RecordingTransport"]


@dataclass(slots=True)
class _Exchange:
    method: str
    url: str
    status: int = 0
    headers: list[tuple[str, str]] | None = None
    content: bytes = b""
    error: str = ""


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards each request to ``inner`` (rewritten by ``rewrite``) and keeps the exchange for a cassette.

    Without ``inner`` it owns an :class:`httpx.AsyncHTTPTransport`, made anew for each event loop (tests often run
    several ``asyncio.run``) and after :meth:`aclose`, so one recorder can serve several adapters in turn.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        rewrite: Mapping[str, str] | None = None,
        scrubber: Scrubber | None = None,
        ignore_query: Iterable[str] = (),
    ) -> None:
        self._inner = inner
        self._owned: httpx.AsyncHTTPTransport | None = None
        self._owned_loop: asyncio.AbstractEventLoop | None = None
        self.rewrite = {k.rstrip("/"): v.rstrip("/") for k, v in (rewrite or {}).items()}
        self.scrubber = scrubber or Scrubber()
        self.ignore_query = set(ignore_query)
        self._exchanges: list[_Exchange] = []

    def _transport(self) -> httpx.AsyncBaseTransport:
        if self._inner is not None:
            return self._inner
        loop = asyncio.get_running_loop()
        if self._owned is None or self._owned_loop is not loop:
            self._owned, self._owned_loop = httpx.AsyncHTTPTransport(), loop
        return self._owned

    def _target(self, url: str) -> str:
        for recorded, live in self.rewrite.items():
            if url == recorded or url.startswith(recorded + "/") or url.startswith(recorded + "?"):
                return live + url[len(recorded) :]
        return url

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the partner (its base URL rewritten) and keep the exchange for the cassette."""
        exchange = _Exchange(request.method, str(request.url))
        self._exchanges.append(exchange)  # at send time: the cassette keeps request order
        body = await request.aread()
        forwarded = httpx.Request(request.method, self._target(str(request.url)), headers=request.headers, content=body)
        try:
            response = await self._transport().handle_async_request(forwarded)
            content = await response.aread()
            await response.aclose()
        except httpx.TimeoutException:
            exchange.error = "timeout"
            raise
        except httpx.TransportError:
            exchange.error = "connect"
            raise
        exchange.status, exchange.headers, exchange.content = (
            response.status_code,
            list(response.headers.items()),
            content,
        )
        # The body is already decoded: drop what describes the encoded form.
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=content, request=request)

    @property
    def count(self) -> int:
        """Exchanges recorded so far."""
        return len(self._exchanges)

    def interactions(self) -> list[dict[str, Any]]:
        """The recorded exchanges, scrubbed, in request order (the cassette's ``interactions``)."""
        scrubber = self.scrubber
        out: list[dict[str, Any]] = []
        for ex in self._exchanges:
            request = {"method": ex.method, "url": scrubber.scrub_url(ex.url)}
            if ex.error:
                out.append({"request": request, "response": {"error": ex.error}})
                continue
            headers = scrubber.scrub_headers(ex.headers or [])
            content_type = next((v for k, v in (ex.headers or []) if k.lower() == "content-type"), "")
            body = scrubber.scrub_body(ex.content, content_type)
            if "json" in body:
                headers.pop("Content-Type", None)  # replay sets it for "json" responses
            response: dict[str, Any] = {"status": ex.status, **body}
            if headers:
                response["headers"] = headers
            out.append({"request": request, "response": response})
        return out

    def document(self, about: str = "", **extra: Any) -> dict[str, Any]:
        """The cassette document: ``about``, ``extra`` keys, interactions and what matching must ignore."""
        doc: dict[str, Any] = {}
        if about:
            doc["about"] = about
        doc.update(extra)
        doc["interactions"] = self.interactions()
        ignored = sorted(self.ignore_query | self.scrubber.scrubbed_query)
        if ignored:
            doc["match"] = {"ignore_query": ignored}
        return doc

    def save(self, path: str | Path, about: str = "", **extra: Any) -> Path:
        """Write the cassette (scrubbed, stable) to ``path`` atomically, creating folders; returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: a crash mid-write never leaves a truncated cassette in place of a good one.
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(dump_cassette(self.document(about, **extra)), encoding="utf-8")
        os.replace(partial, target)
        return target

    async def aclose(self) -> None:
        """Close the transport this recorder sends through."""
        if self._inner is not None:
            await self._inner.aclose()
        elif self._owned is not None:
            owned, self._owned = self._owned, None
            await owned.aclose()
