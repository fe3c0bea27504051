"""Record the State Grid cassettes from the sandbox partner.

    .venv/bin/python tests/state_grid/record_cassettes.py

Each scenario pulls through a real hub (SQLite store in a temporary folder) against a :class:`StateGridSandbox`
on loopback, through a recording transport: requests go out to the sandbox and each exchange is written down
under the base URL ``https://sgcc-sandbox.example`` in the cassette format of :mod:`tanpuhui.testing.cassette`.
Access tokens become ``sandbox-token-N``; the client secret only travels in the token request's Authorization
header, which cassettes do not keep. Datasets are seeded, so re-recording gives the same files. Where a scenario
reads a whole dataset, the script checks the hub's result against :meth:`Dataset.expected` before writing.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from tanpuhui.adapters.state_grid import plugin
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import HttpOptions, Pseudonymiser

BASE_URL = "https://sgcc-sandbox.example"
OUT = Path(__file__).parent.parent / "cassettes" / "state_grid"
KEYS = Pseudonymiser.parse("v1:" + base64.b64encode(bytes(range(7, 39))).decode())
KEEP_HEADERS = {
    "content-type": "Content-Type",
    "retry-after": "Retry-After",
    "www-authenticate": "WWW-Authenticate",
    "cache-control": "Cache-Control",
}


class RecordingTransport(httpx.AsyncBaseTransport):
    """Sends each request to the sandbox and keeps the exchange as the partner's base URL would show it."""

    def __init__(self, target: str) -> None:
        self.target = httpx.URL(target)
        self.inner = httpx.AsyncHTTPTransport()
        self.interactions: list[dict[str, Any]] = []
        self.after_response: Callable[[httpx.Request, int], None] | None = None
        self._tokens: dict[str, str] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url.copy_with(scheme=self.target.scheme, host=self.target.host, port=self.target.port)
        forwarded = httpx.Request(request.method, url, headers=request.headers, content=body)
        response = await self.inner.handle_async_request(forwarded)
        content = await response.aread()
        await response.aclose()
        self.interactions.append(self._record(request, response.status_code, response.headers, content))
        if self.after_response is not None:
            self.after_response(request, response.status_code)
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    def _record(self, request: httpx.Request, status: int, headers: httpx.Headers, content: bytes) -> dict[str, Any]:
        kept = {title: headers[name] for name, title in KEEP_HEADERS.items() if name in headers}
        spec: dict[str, Any] = {"status": status, "headers": kept}
        if headers.get("content-type", "").startswith("application/json"):
            del kept["Content-Type"]  # replay sets it for "json" responses
            doc = orjson.loads(content)
            if isinstance(doc, dict) and "access_token" in doc:
                doc["access_token"] = self._tokens.setdefault(
                    doc["access_token"], f"sandbox-token-{len(self._tokens) + 1}"
                )
            spec["json"] = doc
        else:
            spec["body"] = content.decode()
        if not kept:
            del spec["headers"]
        return {"request": {"method": request.method, "url": str(request.url)}, "response": spec}

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _no_sleep(seconds: float) -> None:
    return None


async def _pull(
    sandbox: StateGridSandbox,
    transport: RecordingTransport,
    store: Path,
    *,
    page_size: int,
    max_pages: int | None = None,
) -> PullSummary:
    """One pull run by a fresh hub (as a fresh process would), resuming from the store's checkpoint."""
    table = {**sandbox.hub_table(), "base_url": BASE_URL, "page_size": page_size}
    config = HubConfig.from_dict(
        {"hub": {"store": str(store)}, "adapters": {"state_grid": table}}, source="recorder", environ=sandbox.environ()
    )
    hub = Hub(
        config,
        plugins=load_plugins([plugin], entry_points=False),
        pseudonymiser=KEYS,
        http=HttpOptions(transport=transport, sleep=_no_sleep),
    )
    try:
        (summary,) = await hub.pull("state_grid", "readings", max_pages=max_pages)
    finally:
        await hub.aclose()
    print(
        f"  pages {summary.pages} pulled {summary.pulled} records {summary.records} quarantined "
        f"{summary.quarantined} error {summary.error}"
    )
    return summary


def _dump(value: Any, depth: int = 0) -> str:
    """JSON with one line per interaction part and per reading (diffable, compact)."""
    compact = not isinstance(value, dict | list) or not any(isinstance(v, dict | list) for v in _values(value))
    if compact:
        return orjson.dumps(value).decode()
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, list):
        return "[\n" + ",\n".join(inner + _dump(v, depth + 1) for v in value) + "\n" + pad + "]"
    parts = [f"{inner}{orjson.dumps(k).decode()}: {_dump(v, depth + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(parts) + "\n" + pad + "}"


def _values(value: Any) -> list[Any]:
    return list(value.values()) if isinstance(value, dict) else list(value)


async def record(
    name: str,
    about: str,
    sandbox: StateGridSandbox,
    body: Callable[[RecordingTransport, Path], Awaitable[object]],
) -> None:
    print(name)
    with sandbox, tempfile.TemporaryDirectory() as folder:
        transport = RecordingTransport(sandbox.url)
        try:
            await body(transport, Path(folder) / "hub.db")
        finally:
            await transport.aclose()
    doc = {
        "about": about,
        "recorded_with": f"tests/state_grid/record_cassettes.py (StateGridSandbox seed {sandbox.dataset.seed})",
        "interactions": transport.interactions,
    }
    path = OUT / f"{name}.json"
    path.write_text(_dump(doc) + "\n", encoding="utf-8")
    print(f"  {path.name}: {len(transport.interactions)} interactions")


def _check(summaries: list[PullSummary], sandbox: StateGridSandbox, **settings: Any) -> None:
    expected = sandbox.dataset.expected(**settings)
    got = {
        "items": sum(s.pulled for s in summaries),
        "records": sum(s.inserted for s in summaries),
        "quarantined": sum(s.quarantined for s in summaries),
    }
    want = {k: expected[k] for k in got}
    if got != want:
        raise SystemExit(f"the hub made {got} of the dataset, Dataset.expected() says {want}")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)

    resume = StateGridSandbox(households=2, days=9, seed=21, faults={}, dr_bad=0, visible_days=7)

    async def two_pages_then_resume(transport: RecordingTransport, store: Path) -> None:
        first = await _pull(resume, transport, store, page_size=8)
        resume.publish()
        second = await _pull(resume, transport, store, page_size=8)
        _check([first, second], resume)

    await record(
        "two_pages_then_resume",
        "Run 1 reads 7 days of 2 households in two pages of 8 (has_more false after the second); the next two "
        "days are then published and run 2 resumes from run 1's last next_cursor.",
        resume,
        two_pages_then_resume,
    )

    throttled = StateGridSandbox(households=2, days=2, seed=22, faults={}, dr_bad=0)
    throttled.fail_next(429, retry_after=7)
    await record(
        "rate_limited_429",
        "The first readings request gets 429 with Retry-After: 7; the retry succeeds.",
        throttled,
        lambda transport, store: _pull(throttled, transport, store, page_size=50),
    )

    failing = StateGridSandbox(households=2, days=2, seed=23, faults={}, dr_bad=0)
    failing.fail_next(500)
    failing.fail_next(503)
    await record(
        "server_error_then_success",
        "The first readings request gets a 500, the retry a 503; the third attempt succeeds.",
        failing,
        lambda transport, store: _pull(failing, transport, store, page_size=50),
    )

    revoked = StateGridSandbox(households=2, days=2, seed=24, faults={}, dr_bad=0)
    readings_seen = [0]

    def revoke_after_first_page(request: httpx.Request, status: int) -> None:
        if request.url.path.endswith("/readings/daily") and status == 200:
            readings_seen[0] += 1
            if readings_seen[0] == 1:
                revoked.revoke_tokens()

    async def token_revoked(transport: RecordingTransport, store: Path) -> None:
        transport.after_response = revoke_after_first_page
        await _pull(revoked, transport, store, page_size=2)

    await record(
        "token_revoked_401",
        "The partner revokes the token after page 1 (before its expiry): page 2 gets a 401, the client fetches a "
        "new token once and repeats the request.",
        revoked,
        token_revoked,
    )

    refused = StateGridSandbox(households=2, days=2, seed=25, faults={}, dr_bad=0)
    refused.fail_next(401, count=2)
    await record(
        "unauthorized_after_token_refetch",
        "The readings request gets a 401, and again after a fresh token: the credentials are refused and the run "
        "stops without moving the cursor.",
        refused,
        lambda transport, store: _pull(refused, transport, store, page_size=50),
    )

    malformed = StateGridSandbox(households=6, days=5, seed=26, faults={"malformed": 1, "backwards": 1}, dr_bad=0)

    async def malformed_items(transport: RecordingTransport, store: Path) -> None:
        _check([await _pull(malformed, transport, store, page_size=50)], malformed)

    await record(
        "malformed_items_quarantined",
        "One page of 30 readings: one sends PAP_R as a string (schema-invalid), one has PAP_R and PAP_R2 lower "
        "than the day before on the same meter (quarantined by the adapter); the rest go through.",
        malformed,
        malformed_items,
    )

    empty = StateGridSandbox(households=2, days=2, seed=27, faults={}, dr_bad=0, visible_days=0)

    async def empty_then_resume(transport: RecordingTransport, store: Path) -> None:
        await _pull(empty, transport, store, page_size=50)
        empty.publish()
        await _pull(empty, transport, store, page_size=50)

    await record(
        "empty_page_then_resume",
        "Run 1 finds no readings yet (an empty page, has_more false, a next_cursor to keep); after the partner "
        "publishes two days, run 2 resumes from that cursor.",
        empty,
        empty_then_resume,
    )

    busy = StateGridSandbox(households=2, days=2, seed=28, faults={}, dr_bad=0)
    busy.fail_next(200, code="5001")
    await record(
        "envelope_error_code",
        'HTTP 200 whose envelope says {"code": "5001", "msg": "系统繁忙..."}: the run stops with the partner\'s code '
        "and message, nothing is committed.",
        busy,
        lambda transport, store: _pull(busy, transport, store, page_size=50),
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
