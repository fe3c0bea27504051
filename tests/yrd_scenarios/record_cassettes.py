"""Record the YRD scenario cassettes from the sandbox exchange.

    .venv/bin/python tests/yrd_scenarios/record_cassettes.py

Each scenario runs the real adapter against a :class:`YrdSandbox` on loopback through a recording transport:
requests go to the sandbox, and each exchange is written down under the base URL
``https://yrd-exchange.sandbox.example`` in the cassette format of :mod:`tanpuhui.testing.cassette`. Access
tokens are replaced by ``sandbox-token-N``; the client secret only travels in the token request's Authorization
header, which cassettes do not keep. Datasets are seeded, so re-recording gives the same files.

``push_signatures.json`` is not an HTTP cassette: it holds webhook requests as a YRD platform would send them
(headers and raw body), signed at a fixed timestamp with a test-only secret, one of them tampered with.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tanpuhui.adapters.yrd_scenarios import YrdScenariosAdapter, YrdScenariosSettings
from tanpuhui.adapters.yrd_scenarios.sandbox import YrdSandbox
from tanpuhui.sdk import HttpOptions, WebhookSigner
from tanpuhui.testing.sandbox.recorder import SandboxRecorder, no_sleep, pull_pages, recording_context

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # run as a script: the recording helpers live in tests/

from cassette_recording import Fault, Scenario, recording, resume_after_publish, revoke_after_page_1  # noqa: E402

BASE_URL = "https://yrd-exchange.sandbox.example"
PUSH_SECRET = "whsec_" + base64.b64encode(b"yrd-sandbox-push-secret-for-tests").decode()
"""Test-only secret of push_signatures.json (it signs nothing real)."""
PUSH_TIMESTAMP = 1730769600  # 2024-11-05T09:20:00+08:00
RECORDING = recording("yrd_scenarios", BASE_URL, max_depth=7, rewrite_host=True)


async def _run(
    sandbox: YrdSandbox,
    transport: SandboxRecorder,
    *,
    page_size: int,
    stream_name: str = "records",
    cursor: Any = None,
    after_page: Callable[[int], None] | None = None,
) -> Any:
    """One pull run with a fresh adapter (as a fresh hub process would); returns the last cursor."""
    values = sandbox.settings(page_size=page_size)
    values["endpoints"]["exchange"]["base_url"] = BASE_URL
    adapter = YrdScenariosAdapter(
        YrdScenariosSettings.model_validate(values), HttpOptions(transport=transport, sleep=no_sleep)
    )
    ctx = recording_context("yrd_scenarios", YrdScenariosAdapter.version, stream_name)
    return await pull_pages(adapter, ctx, cursor, after_page=after_page, on_error=_report)


def _report(exc: Exception) -> None:
    """Fault scenarios end in a PartnerError: that is what they record."""
    print(f"  (run ended with {type(exc).__name__}: {exc})")


def _push_signatures() -> None:
    sandbox = YrdSandbox(records=3, seed=31, bad={}, withdrawn={})
    signer = WebhookSigner(PUSH_SECRET)
    other = WebhookSigner("whsec_" + base64.b64encode(b"a-secret-the-hub-does-not-know").decode())
    items = sandbox.dataset.items
    body = orjson.dumps({"items": items})
    tampered = body.replace(b'"reduction_kgco2e":', b'"reduction_kgco2e":1', 1)
    requests = [
        {
            "name": "valid",
            "expect": "accepted",
            "headers": signer.headers("msg_yrd_0001", body, PUSH_TIMESTAMP),
            "body": body.decode(),
        },
        {
            "name": "tampered_body",
            "expect": "no webhook signature matches",
            "headers": signer.headers("msg_yrd_0002", body, PUSH_TIMESTAMP),
            "body": tampered.decode(),
        },
        {
            "name": "unknown_secret",
            "expect": "no webhook signature matches",
            "headers": other.headers("msg_yrd_0003", body, PUSH_TIMESTAMP),
            "body": body.decode(),
        },
        {
            "name": "malformed_signature_header",
            "expect": "no well-formed",
            "headers": {**signer.headers("msg_yrd_0004", body, PUSH_TIMESTAMP), "webhook-signature": "v1,@@@"},
            "body": body.decode(),
        },
    ]
    doc = {
        "about": "Webhook requests a YRD platform pushes to records_push, signed (Standard Webhooks) at "
        f"{PUSH_TIMESTAMP} with the test-only secret below; verify them with now={PUSH_TIMESTAMP}.",
        "recorded_with": "tests/yrd_scenarios/record_cassettes.py (YrdSandbox seed 31)",
        "webhook_secret": PUSH_SECRET,
        "timestamp": PUSH_TIMESTAMP,
        "requests": requests,
    }
    path = RECORDING.write("push_signatures", doc)
    print(f"{path}: {len(requests)} requests")


async def main() -> None:
    scenarios: list[Scenario[YrdSandbox]] = [
        Scenario(
            "two_pages_then_resume",
            "Run 1 reads two pages of 3 records (has_more false after the second); the platforms then share two "
            "more and run 2 (a fresh process: new token) resumes from run 1's last cursor.",
            YrdSandbox(records=8, seed=21, bad={}, withdrawn={}, visible=6),
            run={"page_size": 3},
            body=resume_after_publish,
        ),
        Scenario(
            "rate_limited_429",
            "The first records request gets 429 with Retry-After: 7; the retry succeeds.",
            YrdSandbox(records=3, seed=22, bad={}, withdrawn={}),
            faults=[Fault(429, retry_after=7)],
        ),
        Scenario(
            "server_error_then_success",
            "The first records request gets a 503, the second a 502; the third (after two backoffs) succeeds.",
            YrdSandbox(records=3, seed=23, bad={}, withdrawn={}),
            faults=[Fault(503), Fault(502)],
        ),
        Scenario(
            "server_error_gives_up",
            "Every records request gets a 500: after 5 attempts (the default retry_attempts) the run stops.",
            YrdSandbox(records=3, seed=24, bad={}, withdrawn={}),
            faults=[Fault(500, count=5)],
        ),
        Scenario(
            "token_expired_401",
            "The exchange expires the token after page 1 (before its expires_in): page 2 gets a 401, the client "
            "fetches a new token once and repeats the request.",
            YrdSandbox(records=6, seed=25, bad={}, withdrawn={}),
            run={"page_size": 4},
            body=revoke_after_page_1,
        ),
        Scenario(
            "malformed_items_quarantined",
            "One page: valid records, one with a start_time without UTC offset (schema), one with a resident ID "
            "whose check character is wrong, one of an unrecognised methodology without activity, one already "
            "credited on its origin platform and one cancelled.",
            YrdSandbox(
                records=9,
                seed=26,
                bad={"no_offset": 1, "bad_resident_id": 1, "unrecognised_no_activity": 1},
                withdrawn={"credited": 1, "cancelled": 1},
            ),
        ),
        Scenario(
            "empty_page",
            "The platforms shared nothing yet: one page with no items and has_more false.",
            YrdSandbox(records=0, seed=27, bad={}, withdrawn={}),
        ),
        Scenario(
            "envelope_error_code",
            'The exchange answers HTTP 200 with {"code": "5001"} (a gateway business error) instead of "0000".',
            YrdSandbox(records=3, seed=28, bad={}, withdrawn={}),
            faults=[Fault(200, code="5001")],
        ),
        Scenario(
            "catalog",
            "The three platforms' scenario catalog from the exchange (GET /v1/scenarios).",
            YrdSandbox(records=0, seed=29, bad={}, withdrawn={}),
            run={"stream_name": "catalog"},
        ),
    ]
    for scenario in scenarios:
        await RECORDING.record(
            scenario.name, scenario.about, scenario.sandbox, scenario.recording_body(_run, page_size=500)
        )

    _push_signatures()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
