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
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tanpuhui.adapters.provincial_bigdata.adapter import ProvincialBigDataAdapter, ProvincialBigDataSettings
from tanpuhui.adapters.provincial_bigdata.sandbox import ProvincialSandbox
from tanpuhui.sdk import HttpOptions, Methodology, PartnerError
from tanpuhui.testing.sandbox.recorder import SandboxRecorder, no_sleep, pull_pages, recording_context

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # run as a script: the recording helpers live in tests/

from cassette_recording import Fault, Scenario, recording  # noqa: E402

BASE_URL = "https://gateway.sandbox.example"
APP_KEY = "ak-sandbox-340000"
APP_SECRET = "cassette-recording-app-secret"
SM4_KEY = "5a0c9e1f3b7d4a6c8e2f0b1d3c5e7a9f"
MAC_KEY = "c4e1a7b39d2f5e8a0b6c1d4f7e9a2b5c8d0e3f6a9b1c4d7e"
SETTINGS: dict[str, Any] = {
    "base_url": BASE_URL,
    "app_key": APP_KEY,
    "app_secret": APP_SECRET,
    "sm4_key_secret": SM4_KEY,
    "mac_key_secret": MAC_KEY,
}
"""The adapter's settings for the sandbox gateway (the tests' too)."""
RECORDING = recording(
    "provincial_bigdata",
    BASE_URL,
    seed=lambda sandbox: sandbox.data.seed,
    max_depth=7,
    keep_headers={"content-type": "Content-Type", "retry-after": "Retry-After"},
    token_at=("data", "accessToken"),
)


def _no_methodology(methodology_id: str) -> Methodology:
    raise AssertionError(f"recording only pages; nothing asks for {methodology_id}")


async def _run(transport: SandboxRecorder, stream_name: str, **settings: Any) -> None:
    """One pull run of one stream with a fresh adapter; a partner error it ends with goes into the cassette."""
    adapter = ProvincialBigDataAdapter(
        ProvincialBigDataSettings(**{**SETTINGS, **settings}), HttpOptions(transport=transport, sleep=no_sleep)
    )
    ctx = recording_context("provincial_bigdata", ProvincialBigDataAdapter.version, stream_name, _no_methodology)

    def keep(exc: Exception) -> None:
        if not isinstance(exc, PartnerError):
            raise exc
        transport.error = str(exc)

    await pull_pages(adapter, ctx, on_error=keep)


def _sandbox(seed: int, **options: Any) -> ProvincialSandbox:
    small: dict[str, Any] = {"days": 4, "purchases": 12, "households": 3, "installations": 3}
    return ProvincialSandbox(
        seed, app_key=APP_KEY, app_secret=APP_SECRET, sm4_key=SM4_KEY, mac_key=MAC_KEY, **{**small, **options}
    )


async def main() -> None:
    plain: list[Scenario[ProvincialSandbox]] = [
        Scenario(
            "green_appliances_with_bad_items",
            "Twelve purchases in pages of 5 (token, then 3 pages; hasMore false on the third). Three are bad: an "
            "appliance category outside the schema's enum, a purchase time without offset, a resident ID with a "
            "wrong check character.",
            _sandbox(21),
            run={"stream_name": "green_appliances", "page_size": 5},
        ),
        Scenario(
            "water_usage_sealed",
            "Three households over 4 days in pages of 5, every page SM4-CBC sealed with an HMAC-SM3 tag (test keys "
            "SM4_KEY/MAC_KEY of record_cassettes.py). One reading is repeated for the same account and day, one is "
            "negative.",
            _sandbox(22, bad={"duplicate_day": 1, "negative_usage": 1}),
            run={"stream_name": "water_usage", "page_size": 5},
        ),
        Scenario(
            "gas_usage_pages",
            "Three households over 4 days in pages of 6 (clear); some readings carry the utility's baselineM3, one "
            "has its date written 2024/11/03.",
            _sandbox(23, bad={"bad_date": 1}),
            run={"stream_name": "gas_usage", "page_size": 6},
        ),
        Scenario(
            "rooftop_pv_numbered_pages",
            "Three installations over 4 days, {flag, data} envelopes paged by pageNo with pageSize 5: pages 1 and 2 "
            "are full, page 3 holds the last 2 records. One day's generation is 14 full-load hours.",
            _sandbox(24, bad={"implausible_generation": 1}),
            run={"stream_name": "rooftop_pv", "page_size": 5},
        ),
        Scenario(
            "rate_limited_429",
            "The first records request gets HTTP 429 with Retry-After: 3; the retry (re-signed) succeeds.",
            _sandbox(25, bad={}),
            faults=[Fault(429, retry_after=3)],
            run={"stream_name": "green_appliances", "page_size": 50},
        ),
        Scenario(
            "server_error_503",
            "Two HTTP 503 answers from the gateway, then the page.",
            _sandbox(26, bad={}),
            faults=[Fault(503, count=2)],
            run={"stream_name": "gas_usage", "page_size": 50},
        ),
        Scenario(
            "system_busy_code",
            'Two HTTP 200 answers {"code": "1001", "msg": "系统繁忙，请稍后重试"}, then the page: retried by code.',
            _sandbox(27, bad={}),
            faults=[Fault("1001", count=2)],
            run={"stream_name": "rooftop_pv", "page_size": 50},
        ),
        Scenario(
            "bad_signature",
            "The client signs with an app secret that is not the gateway's: the token endpoint answers code 3001 "
            "(签名错误); no data request is made.",
            _sandbox(29, bad={}),
            run={"stream_name": "green_appliances", "app_secret": "not-the-gateways-secret"},
        ),
        Scenario(
            "empty_page",
            "Nothing published yet: one page with no records, hasMore false, nextCursor at offset 0.",
            _sandbox(30, bad={}, visible={"green_appliances": 0}),
            run={"stream_name": "green_appliances", "page_size": 50},
        ),
    ]
    for scenario in plain:
        sandbox = scenario.prepared()
        await RECORDING.record(scenario.name, scenario.about, sandbox, partial(_run, **scenario.run))

    expiring = _sandbox(28, bad={})

    exchanges = [0]

    def expire_after_first_page(request: httpx.Request, status: int) -> None:
        exchanges[0] += 1
        if exchanges[0] == 2:  # token, page 1
            expiring.expire_tokens()

    await RECORDING.record(
        "token_expired_code",
        "Page 1 succeeds; the gateway then expires the token early, so page 2 answers code 2001; the client fetches "
        "a new token once and asks for page 2 again.",
        expiring,
        lambda t: _run(t, "green_appliances", page_size=6),
        after=expire_after_first_page,
    )

    tampered = _sandbox(31, bad={})
    tampered.tamper_next()
    await RECORDING.record(
        "bad_integrity_tag",
        "A sealed water_usage page whose signData (HMAC-SM3 tag) does not match its encData: refused before "
        "decrypting.",
        tampered,
        lambda t: _run(t, "water_usage", page_size=50),
    )


if __name__ == "__main__":
    asyncio.run(main())
