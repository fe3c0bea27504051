"""Shared fixtures for the State Grid adapter tests: a real hub on a SQLite file, a household's meter, signing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tanpuhui.adapters.state_grid import plugin
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.pipeline import PageResult
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import HttpOptions, Pseudonymiser, WebhookSigner
from tanpuhui.testing import SleepRecorder as FakeSleep

CASSETTES = Path(__file__).parent.parent / "cassettes" / "state_grid"
BASE_URL = "https://sgcc-sandbox.example"
KEY_SPEC = "v1:" + base64.b64encode(bytes(range(7, 39))).decode()
KEYS = Pseudonymiser.parse(KEY_SPEC)
CLIENT_SECRET = "sandbox-client-secret-for-tests"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"state-grid-dr-webhook-secret-32b").decode()
ENVIRON = {"SG_CLIENT_SECRET": CLIENT_SECRET, "SG_WEBHOOK_SECRET": WEBHOOK_SECRET}

CONS_NO = "3401234567"
METER_ID = "3340001000100012345678"
NEW_METER_ID = "3340001000100098765432"


def hub_table(**overrides: Any) -> dict[str, Any]:
    """An ``[adapters.state_grid]`` table reaching the cassettes' base URL; secrets by environment reference."""
    return {
        "base_url": BASE_URL,
        "client_id": "tanpuhui-sandbox",
        "client_secret": {"env": "SG_CLIENT_SECRET"},
        "webhook_secrets": [{"env": "SG_WEBHOOK_SECRET"}],
        "page_size": 5,
        **overrides,
    }


HubFactory = Callable[..., Hub]


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def make_hub(tmp_path: Path, fake_sleep: FakeSleep) -> Iterator[HubFactory]:
    """Build hubs sharing one SQLite store in tmp_path (a second hub is the next process run)."""
    hubs: list[Hub] = []

    def make(
        table: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
        hub_options: dict[str, Any] | None = None,
        methodologies: dict[str, Any] | None = None,
        keys: Pseudonymiser = KEYS,
        **overrides: Any,
    ) -> Hub:
        """``hub_options``: keys of the ``[hub]`` table (e.g. another store, overlap rules); ``methodologies``: the
        ``[methodologies]`` table (factor overrides); ``keys``: the pseudonym keys (rotated: the next run after a
        key rotation)."""
        hub_table_ = {"store": str(tmp_path / "hub.db"), **(hub_options or {})}
        config = HubConfig.from_dict(
            {
                "hub": hub_table_,
                "adapters": {"state_grid": table or hub_table(**overrides)},
                "methodologies": methodologies or {},
            },
            source="test hub.toml",
            environ=environ or ENVIRON,
        )
        hub = Hub(
            config,
            plugins=load_plugins([plugin], entry_points=False),
            pseudonymiser=keys,
            http=HttpOptions(sleep=fake_sleep),
        )
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        asyncio.run(hub.aclose())


def feed(hub: Hub, items: list[dict[str, Any]], stream: str = "readings") -> PageResult:
    """Run one page of raw items through the hub's pipeline, resuming from and saving the stream's state."""
    rt = hub.stream("state_grid", stream)
    checkpoint = hub.store.load_checkpoint("state_grid", stream)
    ctx = rt.context(dict(checkpoint.state))
    return hub.pulls.commit_page(rt, ctx, items, checkpoint.cursor)


def outbox(hub: Hub) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in hub.store.read_outbox(0, 100_000)]


def quarantine(hub: Hub) -> list[tuple[str, str, list[dict[str, str]]]]:
    """``(partner_record_id, stage, problems)`` of the open quarantine entries, oldest first."""
    return [(e.partner_record_id, e.stage, e.problems) for e in hub.store.quarantine_list(limit=1000)]


def household_state(hub: Hub, cons_no: str = CONS_NO) -> dict[str, Any]:
    state = hub.store.load_checkpoint("state_grid", "readings").state
    found: dict[str, Any] = state["households"][KEYS.pseudonym("account", cons_no)]
    return found


class Household:
    """One enrolled household's meter: :meth:`use` a day's electricity, :meth:`reading` the frozen registers.

    Registers: PAP_R1 sharp, PAP_R2 peak, PAP_R3 flat, PAP_R4 valley. A day's peak use goes a quarter to sharp and
    three quarters to peak, the rest to valley.
    """

    def __init__(
        self,
        cons_no: str = CONS_NO,
        meter_id: str = METER_ID,
        start: date = date(2024, 11, 4),
        registers: tuple[float, float, float, float] = (402.18, 4811.07, 0.0, 7660.21),
        region: str = "340104",
    ) -> None:
        self.cons_no = cons_no
        self.meter_id = meter_id
        self.day = start
        self.parts = list(registers)
        self.region = region

    def use(self, peak: float, total: float = 10.0, *, days: int = 1) -> Household:
        """Consume ``peak`` kWh in the peak periods and ``total`` in all, per day, for ``days`` days."""
        for _ in range(days):
            self.parts[0] += peak / 4
            self.parts[1] += peak * 3 / 4
            self.parts[3] += total - peak
            self.day += timedelta(days=1)
        return self

    def skip(self, days: int = 1) -> Household:
        """Days pass with no consumption recorded (used when a reading is replaced by hand)."""
        self.day += timedelta(days=days)
        return self

    def replace_meter(self, meter_id: str = NEW_METER_ID, already_used: float = 3.2) -> Household:
        """A new meter: registers restart near zero (``already_used`` kWh since it went in, all off-peak)."""
        self.meter_id = meter_id
        self.parts = [0.0, 0.0, 0.0, already_used]
        return self

    def reading(self, status: str = "normal", **override: Any) -> dict[str, Any]:
        regs = [round(p, 2) for p in self.parts]
        item: dict[str, Any] = {
            "reading_id": f"SG{self.day:%Y%m%d}{self.cons_no[-6:]}",
            "cons_no": self.cons_no,
            "meter_id": self.meter_id,
            "read_date": self.day.isoformat(),
            "status": status,
            "PAP_R": round(sum(regs), 2),
            "PAP_R1": regs[0],
            "PAP_R2": regs[1],
            "PAP_R3": regs[2],
            "PAP_R4": regs[3],
            "region_code": self.region,
        }
        if status == "missing":
            item.update({k: None for k in ("PAP_R", "PAP_R1", "PAP_R2", "PAP_R3", "PAP_R4")})
        item.update(override)
        return item

    def week(self, peaks: list[float], total: float = 10.0) -> list[dict[str, Any]]:
        """The current reading, then one reading after each day's use: ``len(peaks) + 1`` readings."""
        items = [self.reading()]
        for peak in peaks:
            items.append(self.use(peak, total).reading())
        return items


def signed(body: bytes, msg_id: str | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """Standard Webhooks headers; one webhook id per body unless given (a partner's retry reuses its id)."""
    return WebhookSigner(secret).headers(msg_id or f"msg_sgdr_{hashlib.sha256(body).hexdigest()[:16]}", body)


def dr_result(n: int = 1, **override: Any) -> dict[str, Any]:
    """A demand-response result as the partner pushes it: the evening event of 8 November 2024 in Hefei."""
    item: dict[str, Any] = {
        "result_id": f"DR2024110801-{n:06d}",
        "event_id": "AHDR2024110801",
        "cons_no": f"34012{n:05d}",
        "meter_id": f"33400010001000{n:08d}",
        "response_type": "peak_shaving",
        "window_start": "2024-11-08T18:00:00+08:00",
        "window_end": "2024-11-08T20:00:00+08:00",
        "baseline_kwh": 1.86,
        "actual_kwh": 1.12,
        "baseline_method": "mean of the same hours on the 5 working days before the event",
        "region_code": "340104",
    }
    item.update(override)
    return item
