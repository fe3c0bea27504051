"""Record the provincial big-data cassettes from the sandbox gateway.

    .venv/bin/python tests/provincial_bigdata/record_cassettes.py

Each scenario runs the real adapter against a :class:`ProvincialSandbox` on loopback through a recording transport:
requests are signed for ``https://gateway.sandbox.example`` (the signature covers the path, not the host), forwarded
to the sandbox, which verifies them, and each exchange is written down in the cassette format of
:mod:`tanpuhui.testing.cassette`. Access tokens are replaced by ``sandbox-token-N``; the app secret only ever
travels as signatures in request headers, which cassettes do not keep. Sealed pages are sealed with the published
test keys :data:`SM4_KEY` / :data:`MAC_KEY` (never use them for anything else), so tests can open them. Data is
seeded; the SM4 IVs, nonces and sealed-answer timestamps differ between recordings.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from tanpuhui.adapters.provincial_bigdata.adapter import ProvincialBigDataAdapter, ProvincialBigDataSettings
from tanpuhui.adapters.provincial_bigdata.sandbox import ProvincialSandbox
from tanpuhui.sdk import HttpOptions, Methodology, PartnerError, Pseudonymiser, PullStream, StreamContext

BASE_URL = "https://gateway.sandbox.example"
OUT = Path(__file__).parent.parent / "cassettes" / "provincial_bigdata"
APP_KEY = "ak-sandbox-340000"
APP_SECRET = "cassette-recording-app-secret"
SM4_KEY = "5a0c9e1f3b7d4a6c8e2f0b1d3c5e7a9f"
MAC_KEY = "c4e1a7b39d2f5e8a0b6c1d4f7e9a2b5c8d0e3f6a9b1c4d7e"
KEEP_HEADERS = {"content-type": "Content-Type", "retry-after": "Retry-After"}


class RecordingTransport(httpx.AsyncBaseTransport):
    """Sends each request to the sandbox and keeps the exchange as the gateway's base URL would show it."""

    def __init__(self, target: str, after: Callable[[httpx.Request, int], None] | None = None) -> None:
        self.target = httpx.URL(target)
        self.inner = httpx.AsyncHTTPTransport()
        self.interactions: list[dict[str, Any]] = []
        self.after = after
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
            self.after(request, len(self.interactions))
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    def _record(self, request: httpx.Request, status: int, headers: httpx.Headers, content: bytes) -> dict[str, Any]:
        kept = {title: headers[name] for name, title in KEEP_HEADERS.items() if name in headers}
        spec: dict[str, Any] = {"status": status, "headers": kept}
        kept.pop("Content-Type", None)  # replay sets it for "json" responses
        doc = orjson.loads(content)
        data = doc.get("data") if isinstance(doc, dict) else None
        if isinstance(data, dict) and "accessToken" in data:
            data["accessToken"] = self._tokens.setdefault(data["accessToken"], f"sandbox-token-{len(self._tokens) + 1}")
        spec["json"] = doc
        if not kept:
            del spec["headers"]
        return {"request": {"method": request.method, "url": str(request.url)}, "response": spec}

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _no_sleep(seconds: float) -> None:
    return None


def _no_methodology(methodology_id: str) -> Methodology:
    raise AssertionError(f"recording only pages; nothing asks for {methodology_id}")


def _ctx(stream: str) -> StreamContext:
    return StreamContext(
        adapter="provincial_bigdata",
        adapter_version=ProvincialBigDataAdapter.version,
        stream=stream,
        pseudonymiser=Pseudonymiser.parse("v1:" + base64.b64encode(bytes(32)).decode()),
        methodologies=_no_methodology,
    )


async def _run(
    transport: RecordingTransport, stream_name: str, *, cursor: Any = None, **settings: Any
) -> tuple[Any, str | None]:
    """One pull run of one stream with a fresh adapter; returns (last cursor, error message or None)."""
    values: dict[str, Any] = {
        "base_url": BASE_URL,
        "app_key": APP_KEY,
        "app_secret": APP_SECRET,
        "sm4_key_secret": SM4_KEY,
        "mac_key_secret": MAC_KEY,
        **settings,
    }
    adapter = ProvincialBigDataAdapter(
        ProvincialBigDataSettings(**values), HttpOptions(transport=transport, sleep=_no_sleep)
    )
    stream = adapter.stream(stream_name)
    assert isinstance(stream, PullStream)
    error = None
    try:
        async for page in stream.pages(_ctx(stream_name), cursor):
            cursor = page.cursor
    except PartnerError as exc:
        error = str(exc)
    finally:
        await adapter.aclose()
    return cursor, error


def _sandbox(seed: int, **options: Any) -> ProvincialSandbox:
    small: dict[str, Any] = {"days": 4, "purchases": 12, "households": 3, "installations": 3}
    return ProvincialSandbox(
        seed, app_key=APP_KEY, app_secret=APP_SECRET, sm4_key=SM4_KEY, mac_key=MAC_KEY, **{**small, **options}
    )


def _dump(value: Any, depth: int = 0) -> str:
    """JSON with one line per interaction part and per record (diffable, compact)."""
    compact = (
        not isinstance(value, dict | list) or depth >= 7 or not any(isinstance(v, dict | list) for v in _values(value))
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
    name: str,
    about: str,
    sandbox: ProvincialSandbox,
    body: Callable[[RecordingTransport], Awaitable[str | None]],
    after: Callable[[httpx.Request, int], None] | None = None,
) -> None:
    with sandbox:
        transport = RecordingTransport(sandbox.url, after)
        try:
            error = await body(transport)
        finally:
            await transport.aclose()
    doc: dict[str, Any] = {
        "about": about,
        "recorded_with": f"tests/provincial_bigdata/record_cassettes.py (ProvincialSandbox seed {sandbox.data.seed})",
        "interactions": transport.interactions,
    }
    if error:
        doc["error_seen_when_recording"] = error
    path = OUT / f"{name}.json"
    path.write_text(_dump(doc) + "\n", encoding="utf-8")
    print(f"{path}: {len(transport.interactions)} interactions{' (' + error + ')' if error else ''}")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)

    green = _sandbox(21)
    await record(
        "green_appliances_with_bad_items",
        "Twelve purchases in pages of 5 (token, then 3 pages; hasMore false on the third). Three are bad: an "
        "appliance category outside the schema's enum, a purchase time without offset, a resident ID with a wrong "
        "check character.",
        green,
        lambda t: _last_async(_run(t, "green_appliances", page_size=5)),
    )

    water = _sandbox(22, bad={"duplicate_day": 1, "negative_usage": 1})
    await record(
        "water_usage_sealed",
        "Three households over 4 days in pages of 5, every page SM4-CBC sealed with an HMAC-SM3 tag (test keys "
        "SM4_KEY/MAC_KEY of record_cassettes.py). One reading is repeated for the same account and day, one is "
        "negative.",
        water,
        lambda t: _last_async(_run(t, "water_usage", page_size=5)),
    )

    gas = _sandbox(23, bad={"bad_date": 1})
    await record(
        "gas_usage_pages",
        "Three households over 4 days in pages of 6 (clear); some readings carry the utility's baselineM3, one has "
        "its date written 2024/11/03.",
        gas,
        lambda t: _last_async(_run(t, "gas_usage", page_size=6)),
    )

    pv = _sandbox(24, bad={"implausible_generation": 1})
    await record(
        "rooftop_pv_numbered_pages",
        "Three installations over 4 days, {flag, data} envelopes paged by pageNo with pageSize 5: pages 1 and 2 "
        "are full, page 3 holds the last 2 records. One day's generation is 14 full-load hours.",
        pv,
        lambda t: _last_async(_run(t, "rooftop_pv", page_size=5)),
    )

    throttled = _sandbox(25, bad={})
    throttled.fail_next(429, retry_after=3)
    await record(
        "rate_limited_429",
        "The first records request gets HTTP 429 with Retry-After: 3; the retry (re-signed) succeeds.",
        throttled,
        lambda t: _last_async(_run(t, "green_appliances", page_size=50)),
    )

    failing = _sandbox(26, bad={})
    failing.fail_next(503, count=2)
    await record(
        "server_error_503",
        "Two HTTP 503 answers from the gateway, then the page.",
        failing,
        lambda t: _last_async(_run(t, "gas_usage", page_size=50)),
    )

    busy = _sandbox(27, bad={})
    busy.fail_next("1001", count=2)
    await record(
        "system_busy_code",
        'Two HTTP 200 answers {"code": "1001", "msg": "系统繁忙，请稍后重试"}, then the page: retried by code.',
        busy,
        lambda t: _last_async(_run(t, "rooftop_pv", page_size=50)),
    )

    expiring = _sandbox(28, bad={})

    def expire_after_first_page(request: httpx.Request, count: int) -> None:
        if count == 2:  # token, page 1
            expiring.expire_tokens()

    await record(
        "token_expired_code",
        "Page 1 succeeds; the gateway then expires the token early, so page 2 answers code 2001; the client fetches "
        "a new token once and asks for page 2 again.",
        expiring,
        lambda t: _last_async(_run(t, "green_appliances", page_size=6)),
        after=expire_after_first_page,
    )

    wrong = _sandbox(29, bad={})
    await record(
        "bad_signature",
        "The client signs with an app secret that is not the gateway's: the token endpoint answers code 3001 "
        "(签名错误); no data request is made.",
        wrong,
        lambda t: _last_async(_run(t, "green_appliances", app_secret="not-the-gateways-secret")),
    )

    empty = _sandbox(30, bad={}, visible={"green_appliances": 0})
    await record(
        "empty_page",
        "Nothing published yet: one page with no records, hasMore false, nextCursor at offset 0.",
        empty,
        lambda t: _last_async(_run(t, "green_appliances", page_size=50)),
    )

    tampered = _sandbox(31, bad={})
    tampered.tamper_next()
    await record(
        "bad_integrity_tag",
        "A sealed water_usage page whose signData (HMAC-SM3 tag) does not match its encData: refused before "
        "decrypting.",
        tampered,
        lambda t: _last_async(_run(t, "water_usage", page_size=50)),
    )


async def _last_async(run: Awaitable[tuple[Any, str | None]]) -> str | None:
    """The error a recorded run ended with (None when it completed)."""
    return (await run)[1]


if __name__ == "__main__":
    asyncio.run(main())
