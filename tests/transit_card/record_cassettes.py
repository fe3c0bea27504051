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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tanpuhui.adapters.transit_card import TransitCardAdapter, TransitCardSettings
from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.sdk import HttpOptions
from tanpuhui.testing.sandbox.recorder import SandboxRecorder, no_sleep, pull_pages, recording_context

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # run as a script: the recording helpers live in tests/

from cassette_recording import Fault, Scenario, recording, resume_after_publish, revoke_after_page_1  # noqa: E402

BASE_URL = "https://transit.sandbox.example"
RECORDING = recording("transit_card", BASE_URL, max_depth=6, rewrite_host=True)


async def _run(
    sandbox: TransitSandbox,
    transport: SandboxRecorder,
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
    adapter = TransitCardAdapter(settings, HttpOptions(transport=transport, sleep=no_sleep))
    ctx = recording_context("transit_card", TransitCardAdapter.version, "transactions")
    return await pull_pages(adapter, ctx, cursor, after_page=after_page)


async def main() -> None:
    scenarios: list[Scenario[TransitSandbox]] = [
        Scenario(
            "two_pages_then_resume",
            "Run 1 reads two pages of 5 (has_more false after the second; its last item is a metro tap-in); the "
            "operator then clears more transactions and run 2 resumes from run 1's last next_cursor, starting with "
            "that journey's tap-out.",
            TransitSandbox(trips=8, seed=11, bad={}, visible=10),
            run={"page_size": 5},
            body=resume_after_publish,
        ),
        Scenario(
            "rate_limited_429",
            "The first transactions request gets 429 with Retry-After: 3; the retry succeeds.",
            TransitSandbox(trips=4, seed=12, bad={}),
            faults=[Fault(429, retry_after=3)],
            run={"page_size": 50},
        ),
        Scenario(
            "server_error_then_success",
            "The first transactions request gets a 500; the retry after a backoff succeeds.",
            TransitSandbox(trips=4, seed=13, bad={}),
            faults=[Fault(500)],
            run={"page_size": 50},
        ),
        Scenario(
            "token_revoked_401",
            "The operator revokes the token after page 1 (before its expiry): page 2 gets a 401, the client "
            "fetches a new token once and repeats the request.",
            TransitSandbox(trips=6, seed=14, bad={}),
            run={"page_size": 5},
            body=revoke_after_page_1,
        ),
        Scenario(
            "malformed_items_quarantined",
            "One page holding valid transactions and three the trip schema rejects: a deal_time without UTC "
            "offset, a transaction without card_no and a card top-up (deal_type recharge).",
            TransitSandbox(trips=5, seed=15, bad={"no_offset": 1, "missing_card": 1, "unknown_deal_type": 1}),
            run={"page_size": 50},
        ),
        Scenario(
            "tap_in_without_tap_out",
            "A metro tap-in whose tap-out never comes, followed by taps more than 240 minutes later.",
            TransitSandbox(trips=10, seed=_seed_with_timed_out_tap_in(), bad={"unclosed_tap_in": 1}),
            run={"page_size": 6},
        ),
    ]
    for scenario in scenarios:
        await RECORDING.record(scenario.name, scenario.about, scenario.sandbox, scenario.recording_body(_run))


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
