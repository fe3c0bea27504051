"""Record the transit card cassettes from the sandbox partner.

    .venv/bin/python tests/transit_card/record_cassettes.py

Each scenario runs the real adapter against a :class:`TransitSandbox` on loopback through a recording transport:
requests go out to the sandbox, and each exchange is written down under the base URL
``https://transit.sandbox.example`` in the cassette format of :mod:`tanpuhui.testing.cassette`. Access tokens are
replaced by ``sandbox-token-N``; the client secret only ever travels in the token request's Authorization header,
which cassettes do not keep. Datasets are seeded, so re-recording gives the same files (tokens and cursors
included).
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter, TransitCardSettings
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.sdk import HttpOptions, Pseudonymiser, StreamContext

BASE_URL = "https://transit.sandbox.example"
OUT = Path(__file__).parent.parent / "cassettes" / "transit_card"
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
        self._tokens: dict[str, str] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url.copy_with(scheme=self.target.scheme, host=self.target.host, port=self.target.port)
        forwarded = httpx.Request(request.method, url, headers=request.headers, content=body)
        response = await self.inner.handle_async_request(forwarded)
        content = await response.aread()
        await response.aclose()
        self.interactions.append(self._record(request, response.status_code, response.headers, content))
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    def _record(self, request: httpx.Request, status: int, headers: httpx.Headers, content: bytes) -> dict[str, Any]:
        recorded_url = str(request.url.copy_with(scheme="https", host="transit.sandbox.example", port=None))
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
        return {"request": {"method": request.method, "url": recorded_url}, "response": spec}

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _no_sleep(seconds: float) -> None:
    return None


def _ctx() -> StreamContext:
    from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES

    methods = {m.id: m for m in BUILTIN_METHODOLOGIES}
    return StreamContext(
        adapter="transit_card",
        adapter_version=TransitCardAdapter.version,
        stream="transactions",
        pseudonymiser=Pseudonymiser.parse("v1:" + base64.b64encode(bytes(32)).decode()),
        methodologies=methods.__getitem__,
    )


async def _run(
    sandbox: TransitSandbox,
    transport: RecordingTransport,
    *,
    page_size: int,
    cursor: Any = None,
    after_page: Callable[[int], None] | None = None,
) -> Any:
    """One pull run with a fresh adapter (as a fresh hub process would); returns the last cursor."""
    settings = TransitCardSettings(
        base_url=BASE_URL,
        client_id=sandbox.client_id,
        client_secret=SecretStr(sandbox.client_secret),
        page_size=page_size,
    )
    adapter = TransitCardAdapter(settings, HttpOptions(transport=transport, sleep=_no_sleep))
    stream = adapter.stream("transactions")
    assert isinstance(stream, TransactionsStream)
    try:
        number = 0
        async for page in stream.pages(_ctx(), cursor):
            number += 1
            cursor = page.cursor
            if after_page is not None:
                after_page(number)
    finally:
        await adapter.aclose()
    return cursor


def _write(name: str, about: str, sandbox: TransitSandbox, transport: RecordingTransport) -> None:
    doc = {
        "about": about,
        "recorded_with": f"tests/transit_card/record_cassettes.py (TransitSandbox seed {sandbox.dataset.seed})",
        "interactions": transport.interactions,
    }
    path = OUT / f"{name}.json"
    path.write_text(_dump(doc) + "\n", encoding="utf-8")
    print(f"{path}: {len(transport.interactions)} interactions")


def _dump(value: Any, depth: int = 0) -> str:
    """JSON with one line per interaction part, per transaction and per network line (diffable, compact)."""
    compact = (
        not isinstance(value, dict | list) or depth >= 6 or not any(isinstance(v, dict | list) for v in _values(value))
    )
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
    name: str, about: str, sandbox: TransitSandbox, body: Callable[[RecordingTransport], Awaitable[Any]]
) -> None:
    with sandbox:
        transport = RecordingTransport(sandbox.url)
        try:
            await body(transport)
        finally:
            await transport.aclose()
        _write(name, about, sandbox, transport)


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)

    # Two pages, then (the operator cleared more transactions) a second run resuming from the saved cursor.
    resume = TransitSandbox(trips=8, seed=11, bad={}, visible=10)

    async def two_pages_then_resume(transport: RecordingTransport) -> None:
        cursor = await _run(resume, transport, page_size=5)
        resume.publish()
        await _run(resume, transport, page_size=5, cursor=cursor)

    await record(
        "two_pages_then_resume",
        "Run 1 reads two pages of 5 (has_more false after the second; its last item is a metro tap-in); the "
        "operator then clears more transactions and run 2 resumes from run 1's last next_cursor, starting with "
        "that journey's tap-out.",
        resume,
        two_pages_then_resume,
    )

    throttled = TransitSandbox(trips=4, seed=12, bad={})
    throttled.fail_next(429, retry_after=3)
    await record(
        "rate_limited_429",
        "The first transactions request gets 429 with Retry-After: 3; the retry succeeds.",
        throttled,
        lambda transport: _run(throttled, transport, page_size=50),
    )

    failing = TransitSandbox(trips=4, seed=13, bad={})
    failing.fail_next(500)
    await record(
        "server_error_then_success",
        "The first transactions request gets a 500; the retry after a backoff succeeds.",
        failing,
        lambda transport: _run(failing, transport, page_size=50),
    )

    revoked = TransitSandbox(trips=6, seed=14, bad={})

    def revoke_after_first(number: int) -> None:
        if number == 1:
            revoked.revoke_tokens()

    await record(
        "token_revoked_401",
        "The operator revokes the token after page 1 (before its expiry): page 2 gets a 401, the client fetches "
        "a new token once and repeats the request.",
        revoked,
        lambda transport: _run(revoked, transport, page_size=5, after_page=revoke_after_first),
    )

    malformed = TransitSandbox(trips=5, seed=15, bad={"no_offset": 1, "missing_card": 1, "unknown_deal_type": 1})
    await record(
        "malformed_items_quarantined",
        "One page holding valid transactions and three the trip schema rejects: a deal_time without UTC offset, "
        "a transaction without card_no and a card top-up (deal_type recharge).",
        malformed,
        lambda transport: _run(malformed, transport, page_size=50),
    )

    unclosed = TransitSandbox(trips=10, seed=_seed_with_timed_out_tap_in(), bad={"unclosed_tap_in": 1})
    await record(
        "tap_in_without_tap_out",
        "A metro tap-in whose tap-out never comes, followed by taps more than 240 minutes later.",
        unclosed,
        lambda transport: _run(unclosed, transport, page_size=6),
    )


def _seed_with_timed_out_tap_in() -> int:
    """The first seed whose unclosed tap-in is given up by time (not replaced by the card's next tap-in)."""
    from tanpuhui.adapters.transit_card.sandbox import SandboxPartner

    for seed in range(100, 200):
        partner = SandboxPartner(10, seed, bad={"unclosed_tap_in": 1})
        dataset = partner.dataset
        tap_in = dataset.bad["unclosed_tap_in"][0]
        cards = [i.get("card_no") for i in dataset.items if i["txn_id"] == tap_in]
        again = [i for i in dataset.items if i.get("card_no") == cards[0] and i["deal_type"] == "metro_in"]
        if dataset.expected()["abandoned"] == 1 and len(again) == 1:
            return seed
    raise SystemExit("no seed in 100..199 gives a tap-in that times out")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
