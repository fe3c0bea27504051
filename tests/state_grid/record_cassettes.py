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
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tanpuhui.adapters.state_grid import plugin
from tanpuhui.adapters.state_grid.sandbox import StateGridSandbox
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import HttpOptions, Pseudonymiser
from tanpuhui.testing.sandbox.recorder import SandboxRecorder, no_sleep

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # run as a script: the recording helpers live in tests/

from cassette_recording import Fault, Scenario, recording  # noqa: E402

BASE_URL = "https://sgcc-sandbox.example"
KEYS = Pseudonymiser.parse("v1:" + base64.b64encode(bytes(range(7, 39))).decode())
RECORDING = recording("state_grid", BASE_URL)


async def _pull(
    sandbox: StateGridSandbox,
    transport: SandboxRecorder,
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
        http=HttpOptions(transport=transport, sleep=no_sleep),
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


async def record(
    name: str,
    about: str,
    sandbox: StateGridSandbox,
    body: Callable[[SandboxRecorder, Path], Awaitable[object]],
) -> None:
    """Record one scenario whose hubs keep their store in a fresh temporary folder."""

    async def in_temporary_store(transport: SandboxRecorder) -> None:
        with tempfile.TemporaryDirectory() as folder:
            await body(transport, Path(folder) / "hub.db")

    print(name)
    await RECORDING.record(name, about, sandbox, in_temporary_store)


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
    plain: list[Scenario[StateGridSandbox]] = [
        Scenario(
            "rate_limited_429",
            "The first readings request gets 429 with Retry-After: 7; the retry succeeds.",
            StateGridSandbox(households=2, days=2, seed=22, faults={}, dr_bad=0),
            faults=[Fault(429, retry_after=7)],
        ),
        Scenario(
            "server_error_then_success",
            "The first readings request gets a 500, the retry a 503; the third attempt succeeds.",
            StateGridSandbox(households=2, days=2, seed=23, faults={}, dr_bad=0),
            faults=[Fault(500), Fault(503)],
        ),
        Scenario(
            "unauthorized_after_token_refetch",
            "The readings request gets a 401, and again after a fresh token: the credentials are refused and the "
            "run stops without moving the cursor.",
            StateGridSandbox(households=2, days=2, seed=25, faults={}, dr_bad=0),
            faults=[Fault(401, count=2)],
        ),
        Scenario(
            "envelope_error_code",
            'HTTP 200 whose envelope says {"code": "5001", "msg": "系统繁忙..."}: the run stops with the partner\'s '
            "code and message, nothing is committed.",
            StateGridSandbox(households=2, days=2, seed=28, faults={}, dr_bad=0),
            faults=[Fault(200, code="5001")],
        ),
    ]
    for scenario in plain:
        sandbox = scenario.prepared()
        await record(scenario.name, scenario.about, sandbox, partial(_pull, sandbox, page_size=50))

    resume = StateGridSandbox(households=2, days=9, seed=21, faults={}, dr_bad=0, visible_days=7)

    async def two_pages_then_resume(transport: SandboxRecorder, store: Path) -> None:
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

    revoked = StateGridSandbox(households=2, days=2, seed=24, faults={}, dr_bad=0)
    readings_seen = [0]

    def revoke_after_first_page(request: httpx.Request, status: int) -> None:
        if request.url.path.endswith("/readings/daily") and status == 200:
            readings_seen[0] += 1
            if readings_seen[0] == 1:
                revoked.revoke_tokens()

    async def token_revoked(transport: SandboxRecorder, store: Path) -> None:
        transport.after = revoke_after_first_page
        await _pull(revoked, transport, store, page_size=2)

    await record(
        "token_revoked_401",
        "The partner revokes the token after page 1 (before its expiry): page 2 gets a 401, the client fetches a "
        "new token once and repeats the request.",
        revoked,
        token_revoked,
    )

    malformed = StateGridSandbox(households=6, days=5, seed=26, faults={"malformed": 1, "backwards": 1}, dr_bad=0)

    async def malformed_items(transport: SandboxRecorder, store: Path) -> None:
        _check([await _pull(malformed, transport, store, page_size=50)], malformed)

    await record(
        "malformed_items_quarantined",
        "One page of 30 readings: one sends PAP_R as a string (schema-invalid), one has PAP_R and PAP_R2 lower "
        "than the day before on the same meter (quarantined by the adapter); the rest go through.",
        malformed,
        malformed_items,
    )

    empty = StateGridSandbox(households=2, days=2, seed=27, faults={}, dr_bad=0, visible_days=0)

    async def empty_then_resume(transport: SandboxRecorder, store: Path) -> None:
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


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
