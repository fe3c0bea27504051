"""Recording the bundled adapters' cassettes from their sandbox partners (the ``tests/*/record_cassettes.py`` scripts).

    RECORDING = SandboxRecording(OUT, BASE_URL, "tests/transit_card/record_cassettes.py", max_depth=6)
    await RECORDING.record("rate_limited_429", "The first request gets 429...", sandbox, body)

Each scenario runs the real adapter, configured with the partner's stable base URL, through a
:class:`SandboxRecorder`: requests go on to the sandbox on loopback, and each exchange is written down as that
base URL would show it, in the cassette format of :mod:`tanpuhui.testing.cassette`. Access tokens become
``sandbox-token-N``; request headers (where client secrets and signatures travel) are never kept. The documents
are written one line per interaction part (diffable, compact), so re-recording a seeded dataset gives the same
files byte for byte.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import httpx
import orjson

from ...sdk import Adapter, Methodology, Pseudonymiser, PullStream, StreamContext

__all__ = [
    "KEEP_HEADERS",
    "SandboxRecorder",
    "SandboxRecording",
    "dump_lines",
    "no_sleep",
    "pull_pages",
    "recording_context",
]

KEEP_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "content-type": "Content-Type",
        "retry-after": "Retry-After",
        "www-authenticate": "WWW-Authenticate",
        "cache-control": "Cache-Control",
    }
)
"""Response headers a cassette keeps (lower-case name: as written)."""


class _Sandbox(Protocol):
    """What a recording needs of a sandbox: a context manager serving on ``url``."""

    @property
    def url(self) -> str: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


class SandboxRecorder(httpx.AsyncBaseTransport):
    """Sends each request to the sandbox at ``target`` and keeps the exchange as the partner's base URL shows it.

    ``recorded_host``: write request URLs with this host (https, no port) whatever host the adapter used, for
    partners whose settings point some endpoints straight at the sandbox. ``token_at``: the JSON path of the access
    token in token responses. ``after``: called with each request and its response status, once it is recorded.
    ``error``: set by the scenario when its run ended in a partner error, kept in the cassette.
    """

    def __init__(
        self,
        target: str,
        *,
        recorded_host: str | None = None,
        keep_headers: Mapping[str, str] = KEEP_HEADERS,
        token_at: tuple[str, ...] = ("access_token",),
        after: Callable[[httpx.Request, int], None] | None = None,
    ) -> None:
        self.target = httpx.URL(target)
        self.inner = httpx.AsyncHTTPTransport()
        self.interactions: list[dict[str, Any]] = []
        self.recorded_host = recorded_host
        self.keep_headers = keep_headers
        self.token_at = token_at
        self.after = after
        self.error: str | None = None
        self._tokens: dict[str, str] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url.copy_with(scheme=self.target.scheme, host=self.target.host, port=self.target.port)
        forwarded = httpx.Request(request.method, url, headers=request.headers, content=body)
        response = await self.inner.handle_async_request(forwarded)
        content = await response.aread()
        await response.aclose()
        self.interactions.append(self._record(request, response.status_code, response.headers, content))
        if self.after is not None:
            self.after(request, response.status_code)
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    def _record(self, request: httpx.Request, status: int, headers: httpx.Headers, content: bytes) -> dict[str, Any]:
        url = request.url
        if self.recorded_host is not None:
            url = url.copy_with(scheme="https", host=self.recorded_host, port=None)
        kept = {title: headers[name] for name, title in self.keep_headers.items() if name in headers}
        spec: dict[str, Any] = {"status": status, "headers": kept}
        if headers.get("content-type", "").startswith("application/json"):
            del kept["Content-Type"]  # replay sets it for "json" responses
            doc = orjson.loads(content)
            self._scrub_token(doc)
            spec["json"] = doc
        else:
            spec["body"] = content.decode()
        if not kept:
            del spec["headers"]
        return {"request": {"method": request.method, "url": str(url)}, "response": spec}

    def _scrub_token(self, doc: Any) -> None:
        """Replace the access token at ``token_at`` by ``sandbox-token-N`` (the same token, the same N)."""
        *parents, name = self.token_at
        for key in parents:
            doc = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(doc, dict) and name in doc:
            doc[name] = self._tokens.setdefault(doc[name], f"sandbox-token-{len(self._tokens) + 1}")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def no_sleep(seconds: float) -> None:
    """A sleep that returns at once: recordings do not wait out backoffs."""
    return None


def recording_context(
    adapter: str, version: str, stream: str, methodologies: Callable[[str], Methodology] | None = None
) -> StreamContext:
    """A stream context with a fixed all-zero pseudonymisation key; methodologies default to the hub's built-ins."""
    if methodologies is None:
        from ...hub.methodologies import BUILTIN_METHODOLOGIES

        methodologies = {m.id: m for m in BUILTIN_METHODOLOGIES}.__getitem__
    return StreamContext(
        adapter=adapter,
        adapter_version=version,
        stream=stream,
        pseudonymiser=Pseudonymiser.parse("v1:" + base64.b64encode(bytes(32)).decode()),
        methodologies=methodologies,
    )


async def pull_pages(
    adapter: Adapter,
    ctx: StreamContext,
    cursor: Any = None,
    *,
    after_page: Callable[[int], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> Any:
    """One pull run of ``ctx.stream`` with a fresh adapter (as a fresh hub process would); returns the last cursor.

    ``after_page`` is called with each page's number (from 1). With ``on_error``, a run that fails is handed to it
    and ends there (fault scenarios end in a partner error: that is what they record); the adapter is closed.
    """
    stream = adapter.stream(ctx.stream)
    assert isinstance(stream, PullStream)
    try:
        number = 0
        async for page in stream.pages(ctx, cursor):
            number += 1
            cursor = page.cursor
            if after_page is not None:
                after_page(number)
    except Exception as exc:
        if on_error is None:
            raise
        on_error(exc)
    finally:
        await adapter.aclose()
    return cursor


def dump_lines(value: Any, max_depth: int | None = None, depth: int = 0) -> str:
    """JSON with one line per innermost object or list (and everything below ``max_depth`` on one line)."""
    compact = (
        not isinstance(value, dict | list)
        or (max_depth is not None and depth >= max_depth)
        or not any(isinstance(v, dict | list) for v in (value.values() if isinstance(value, dict) else value))
    )
    if compact:
        return orjson.dumps(value).decode()
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, list):
        return "[\n" + ",\n".join(inner + dump_lines(v, max_depth, depth + 1) for v in value) + "\n" + pad + "]"
    parts = [f"{inner}{orjson.dumps(k).decode()}: {dump_lines(v, max_depth, depth + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(parts) + "\n" + pad + "}"


@dataclass
class SandboxRecording:
    """Where and how one partner's recording script writes its cassettes.

    ``script`` and ``seed`` (the seed of a sandbox's dataset) make each cassette's ``recorded_with``;
    ``max_depth`` is where :func:`dump_lines` puts the rest on one line. The other fields go to each
    :class:`SandboxRecorder`.
    """

    out: Path
    base_url: str
    script: str
    seed: Callable[[Any], int]
    max_depth: int | None = None
    rewrite_host: bool = False
    keep_headers: Mapping[str, str] = field(default_factory=lambda: KEEP_HEADERS)
    token_at: tuple[str, ...] = ("access_token",)

    def recorder(self, sandbox_url: str, after: Callable[[httpx.Request, int], None] | None = None) -> SandboxRecorder:
        """A recorder sending on to the sandbox at ``sandbox_url``."""
        return SandboxRecorder(
            sandbox_url,
            recorded_host=httpx.URL(self.base_url).host if self.rewrite_host else None,
            keep_headers=self.keep_headers,
            token_at=self.token_at,
            after=after,
        )

    async def record(
        self,
        name: str,
        about: str,
        sandbox: _Sandbox,
        body: Callable[[SandboxRecorder], Awaitable[object]],
        after: Callable[[httpx.Request, int], None] | None = None,
    ) -> Path:
        """Run ``body`` against the running ``sandbox`` and write what it exchanged to ``<out>/<name>.json``."""
        with sandbox:
            transport = self.recorder(sandbox.url, after)
            try:
                await body(transport)
            finally:
                await transport.aclose()
        doc: dict[str, Any] = {
            "about": about,
            "recorded_with": f"{self.script} ({type(sandbox).__name__} seed {self.seed(sandbox)})",
            "interactions": transport.interactions,
        }
        if transport.error:
            doc["error_seen_when_recording"] = transport.error
        path = self.write(name, doc)
        error = transport.error
        print(f"{path}: {len(transport.interactions)} interactions{' (' + error + ')' if error else ''}")
        return path

    def write(self, name: str, doc: Mapping[str, Any]) -> Path:
        """Write ``doc`` to ``<out>/<name>.json``, one line per innermost part."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{name}.json"
        path.write_text(dump_lines(doc, self.max_depth) + "\n", encoding="utf-8")
        return path
