"""A sandbox State Grid metering partner: the interface of :mod:`.adapter`, serving synthetic Hefei households.

    with StateGridSandbox(households=200, days=30, seed=7) as sandbox:
        settings = StateGridSettings(**sandbox.settings())
        ...
        for headers, body in sandbox.signed_demand_response():
            hub.receive("state_grid", "demand_response", headers, body)
        print(sandbox.stats.readings_requests, sandbox.dataset.expected())

What it serves (see docs/adapters/state_grid.md):

- ``POST /oauth/token``: client credentials (Basic auth, or ``client_id``/``client_secret`` form fields); opaque
  bearer tokens valid ``token_ttl`` seconds; :meth:`StateGridSandbox.revoke_tokens` revokes them early.
- ``GET /api/v1/readings/daily?size=N[&cursor=C]``: ``{"code": "0000", "msg": "success", "data": {"records":
  [...], "next_cursor": "...", "has_more": ...}}``, readings ordered by ``read_date`` then ``cons_no``, ``size``
  capped at ``page_size_cap``. ``visible_days`` hides later days until :meth:`StateGridSandbox.publish` (daily runs).

The dataset: ``households`` households in Hefei's districts, one daily frozen reading each for ``days`` days from
``start``. Each household has its own level (5-15 kWh a day) and peak share (30-50 %), varying day to day and a
little higher at weekends; registers are cumulative and split over four tariff periods (sharp, peak, flat,
valley). Customer numbers start with ``99`` and meter numbers with ``990``: synthetic, nobody's real account.
Faults are mixed in (one each by default, each on a household of its own, in the second half of the period):
:data:`FAULT_KINDS`. :meth:`Dataset.expected` says what a correct pull makes of the whole dataset, computed from
the generator's own record of which days are clean, not by running the adapter.

Demand response: :attr:`Dataset.demand_response` holds results of two peak-shaving events (evenings, about
``dr_share`` of the households each) and one valley-filling event, plus ``dr_bad`` results missing
``actual_kwh``; :meth:`StateGridSandbox.signed_demand_response` signs them with Standard Webhooks under
:attr:`StateGridSandbox.webhook_secret`, and :meth:`StateGridSandbox.deliver_demand_response` posts them to a URL.

Faults on the wire: ``fail_every=N`` answers every N-th readings request with a 500, ``throttle_every=N`` with a
429 and ``Retry-After: retry_after``; :meth:`StateGridSandbox.fail_next` queues one-off answers (any status, or a
200 whose envelope carries an error ``code``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tanpuhui.sdk import WebhookRequest
from tanpuhui.testing.sandbox import (
    OFFSET_CURSOR,
    EncodedItems,
    PartnerSandbox,
    ScheduledFault,
    json_response,
    new_webhook_secret,
    positive_int,
    signed_batches,
)
from tanpuhui.testing.sandbox import SandboxStats as KitStats
from tanpuhui.testing.sandbox.kinds import check_kinds

__all__ = ["FAULT_KINDS", "Dataset", "SandboxPartner", "SandboxStats", "StateGridSandbox"]

CST = timezone(timedelta(hours=8))
REGISTERS = ("PAP_R", "PAP_R1", "PAP_R2", "PAP_R3", "PAP_R4")
HEFEI_DISTRICTS = ("340102", "340103", "340104", "340111", "340121", "340122", "340123")
"""瑶海区, 庐阳区, 蜀山区, 包河区, 长丰县, 肥东县, 肥西县 (GB/T 2260)."""

FAULT_KINDS = ("meter_replacement", "missing_day", "missing_status", "estimated", "backwards", "malformed")
"""``meter_replacement``: a new meter_id whose registers start near zero; ``missing_day``: a day with no reading
at all; ``missing_status``: a reading sent with status ``missing`` and null registers; ``estimated``: a reading
the partner filled in; ``backwards``: PAP_R and PAP_R2 lower than the day before on the same meter (a glitch; the
next day is right again); ``malformed``: PAP_R sent as a string (the schema rejects it)."""

DEFAULT_PEAK = ("PAP_R1", "PAP_R2")


@dataclass(slots=True)
class _Reading:
    day: int
    meter: int
    registers: tuple[float, ...]  # served values (rounded), PAP_R first
    status: str = "normal"
    fault: str = ""


@dataclass(slots=True)
class _Household:
    index: int
    cons_no: str
    region: str
    base_kwh: float
    peak_share: float
    readings: list[_Reading] = field(default_factory=list)


class Dataset:
    """The readings and demand-response results the sandbox serves, and what a correct pull makes of them."""

    def __init__(
        self,
        households: int = 200,
        days: int = 30,
        seed: int = 7,
        *,
        start: date = date(2024, 11, 4),
        faults: Mapping[str, int] | None = None,
        dr_share: float = 0.3,
        dr_bad: int = 1,
    ) -> None:
        if households < 0 or days < 1:
            raise ValueError("households must be >= 0 and days >= 1")
        check_kinds(faults, FAULT_KINDS, "fault kinds")
        if faults is None:
            faults = {k: 1 for k in FAULT_KINDS} if households >= len(FAULT_KINDS) and days >= 4 else {}
        wanted = sum(faults.values())
        if wanted and (days < 4 or wanted > households):
            raise ValueError(f"{wanted} faults need at least {wanted} households and 4 days")
        rng = random.Random(seed)
        self.seed = seed
        self.start = start
        self.days = days
        self._iso = [(start + timedelta(days=d)).isoformat() for d in range(days)]
        self._compact = [d.replace("-", "") for d in self._iso]
        self.households: list[_Household] = []
        self.faults: dict[str, list[str]] = {k: [] for k in FAULT_KINDS}
        """Fault kind -> reading ids of the faulty readings (``missing_day``: the id the absent reading would have)."""

        for h in range(households):
            hh = _Household(
                index=h,
                cons_no=f"99{h + 1:08d}",
                region=rng.choice(HEFEI_DISTRICTS),
                base_kwh=rng.uniform(5.0, 15.0),
                peak_share=rng.uniform(0.30, 0.50),
            )
            sharp_frac = rng.choice((0.0, rng.uniform(0.05, 0.2)))
            flat_share = rng.choice((0.0, rng.uniform(0.05, 0.15)))
            total = rng.uniform(2000.0, 30000.0)
            parts = [
                total * hh.peak_share * sharp_frac,
                total * hh.peak_share * (1 - sharp_frac),
                total * flat_share,
                total * (1 - hh.peak_share - flat_share),
            ]
            meter = 1
            for d in range(days):
                hh.readings.append(_Reading(d, meter, _served(parts)))
                weekday = (start + timedelta(days=d)).weekday()
                used = hh.base_kwh * (1.1 if weekday >= 5 else 1.0) * min(max(rng.gauss(1.0, 0.15), 0.55), 1.6)
                share = min(max(hh.peak_share + rng.gauss(0.0, 0.06), 0.15), 0.7)
                sharp, peak, flat = used * share * sharp_frac, used * share * (1 - sharp_frac), used * flat_share
                day_parts = (sharp, peak, flat, used - sharp - peak - flat)
                parts = [p + q for p, q in zip(parts, day_parts, strict=True)]
            self.households.append(hh)

        self._inject(faults, rng)
        self.items: list[dict[str, Any]] = []
        self.day_ends: list[int] = []
        """``day_ends[d]``: number of items up to and including day ``d`` (for publishing day by day)."""
        by_day: dict[int, list[tuple[_Household, _Reading]]] = {}
        for hh in self.households:
            for reading in hh.readings:
                by_day.setdefault(reading.day, []).append((hh, reading))
        for d in range(days):
            for hh, reading in by_day.get(d, ()):
                self.items.append(self._item(hh, reading))
            self.day_ends.append(len(self.items))
        self.demand_response = self._demand_response(rng, dr_share, dr_bad)

    # -- generation --------------------------------------------------------------------------------------------

    def reading_id(self, hh: _Household, day: int) -> str:
        return f"SG{self._compact[day]}{hh.index + 1:06d}"

    def meter_id(self, hh: _Household, meter: int) -> str:
        return f"990{hh.region}{hh.index + 1:09d}{meter:02d}00"

    def _inject(self, faults: Mapping[str, int], rng: random.Random) -> None:
        queue = [kind for kind in FAULT_KINDS for _ in range(faults.get(kind, 0))]
        chosen = rng.sample(self.households, len(queue))
        lo, hi = max(1, self.days // 2), self.days - 2
        for kind, hh in zip(queue, chosen, strict=True):
            k = rng.randint(lo, hi)
            reading = hh.readings[k]
            prev = hh.readings[k - 1]
            self.faults[kind].append(self.reading_id(hh, k))
            if kind == "meter_replacement":
                # The new meter went in during day k-1: its first reading holds only the hours since.
                partial = rng.uniform(0.2, 0.6)
                used = [
                    max(0.0, c - p) * partial for c, p in zip(reading.registers[1:], prev.registers[1:], strict=True)
                ]
                for later in hh.readings[k:]:
                    later.meter = 2
                offset = [c - u for c, u in zip(reading.registers[1:], used, strict=True)]
                for later in hh.readings[k:]:
                    later.registers = _served([c - o for c, o in zip(later.registers[1:], offset, strict=True)])
            elif kind == "missing_day":
                hh.readings.remove(reading)
            elif kind == "missing_status":
                reading.status, reading.fault = "missing", kind
            elif kind == "estimated":
                estimate = [
                    p + hh.base_kwh * s for p, s in zip(prev.registers[1:], (0.05, 0.3, 0.0, 0.65), strict=True)
                ]
                reading.registers, reading.status, reading.fault = _served(estimate), "estimated", kind
            elif kind == "backwards":
                drop = rng.uniform(5.0, 40.0)
                regs = list(reading.registers)
                regs[0] = round(prev.registers[0] - drop, 2)
                regs[2] = round(max(0.0, prev.registers[2] - drop), 2)
                reading.registers, reading.fault = tuple(regs), kind
            else:  # malformed
                reading.fault = kind

    def _item(self, hh: _Household, reading: _Reading) -> dict[str, Any]:
        item: dict[str, Any] = {
            "reading_id": self.reading_id(hh, reading.day),
            "cons_no": hh.cons_no,
            "meter_id": self.meter_id(hh, reading.meter),
            "read_date": self._iso[reading.day],
            "status": reading.status,
        }
        if reading.status == "missing":
            item.update(dict.fromkeys(REGISTERS))
        else:
            item.update(zip(REGISTERS, reading.registers, strict=True))
        if reading.fault == "malformed":
            item["PAP_R"] = f"{reading.registers[0]:.2f}"
        item["region_code"] = hh.region
        return item

    def _demand_response(self, rng: random.Random, share: float, bad: int) -> list[dict[str, Any]]:
        if self.days < 3:
            return []
        events = (
            (self.days // 3, 18, "peak_shaving"),
            (2 * self.days // 3, 19, "peak_shaving"),
            (2 * self.days // 3, 12, "valley_filling"),
        )
        results: list[dict[str, Any]] = []
        for number, (day, hour, kind) in enumerate(events, start=1):
            when = datetime.combine(self.start + timedelta(days=day), datetime.min.time(), CST) + timedelta(hours=hour)
            event_id = f"AHDR{when:%Y%m%d}{number:02d}"
            for hh in self.households:
                if rng.random() >= (share if kind == "peak_shaving" else share / 4):
                    continue
                baseline = round(hh.base_kwh * hh.peak_share * 2 / 14 * rng.uniform(0.9, 1.3), 2)
                factor = rng.uniform(0.5, 1.1) if kind == "peak_shaving" else rng.uniform(1.1, 1.8)
                results.append(
                    {
                        "result_id": f"DR{when:%Y%m%d}{number:02d}-{hh.index + 1:06d}",
                        "event_id": event_id,
                        "cons_no": hh.cons_no,
                        "meter_id": self.meter_id(hh, hh.readings[-1].meter),
                        "response_type": kind,
                        "window_start": when.isoformat(),
                        "window_end": (when + timedelta(hours=2)).isoformat(),
                        "baseline_kwh": baseline,
                        "actual_kwh": round(baseline * factor, 2),
                        "baseline_method": "mean of the same hours on the 5 working days before the event",
                        "region_code": hh.region,
                    }
                )
        for result in rng.sample(results, min(bad, len(results))):
            del result["actual_kwh"]
        return results

    # -- expectations ------------------------------------------------------------------------------------------

    def clean_days(self, peak_registers: tuple[str, ...] = DEFAULT_PEAK) -> dict[str, list[tuple[int, float, float]]]:
        """cons_no -> ``(day index, peak kWh, total kWh)`` of each day bounded by two clean readings of one meter.

        Clean: status normal, served well-formed, registers not going backwards. These are the days that may be
        credited and that make up each household's baseline window.
        """
        peak_idx = [REGISTERS.index(r) for r in peak_registers]
        out: dict[str, list[tuple[int, float, float]]] = {}
        for hh in self.households:
            days: list[tuple[int, float, float]] = []
            for a, b in zip(hh.readings, hh.readings[1:], strict=False):
                if b.day != a.day + 1 or a.meter != b.meter or any(r.status != "normal" or r.fault for r in (a, b)):
                    continue
                diffs = [round(c - p, 4) for c, p in zip(b.registers, a.registers, strict=True)]
                days.append((a.day, round(sum(diffs[i] for i in peak_idx), 4), diffs[0]))
            out[hh.cons_no] = days
        return out

    def expected(
        self,
        *,
        window_days: int = 7,
        min_days: int = 5,
        peak_registers: tuple[str, ...] = DEFAULT_PEAK,
    ) -> dict[str, Any]:
        """What a pull of the whole dataset makes of it with these settings.

        ``records``: household-days credited; ``saved_kwh``: their summed baseline - peak; ``quarantined``: the
        malformed and backwards readings; ``not_credited``: well-formed readings that gave no record.
        """
        records = 0
        saved = 0.0
        for days in self.clean_days(peak_registers).values():
            window: dict[int, float] = {}
            for day, peak, _ in days:
                recent = [v for d, v in window.items() if day - window_days <= d < day]
                window[day] = peak
                if len(recent) >= min_days:
                    baseline = round(sum(recent) / len(recent), 4)
                    if peak < baseline:
                        records += 1
                        saved += baseline - peak
        quarantined = len(self.faults["malformed"]) + len(self.faults["backwards"])
        return {
            "items": len(self.items),
            "records": records,
            "saved_kwh": round(saved, 4),
            "quarantined": quarantined,
            "not_credited": len(self.items) - quarantined - records,
        }

    def expected_demand_response(self) -> dict[str, int]:
        """``results`` pushed, ``records`` credited (peak shaving below baseline), ``quarantined`` (schema-invalid)."""
        bad = sum(1 for r in self.demand_response if "actual_kwh" not in r)
        credited = sum(
            1
            for r in self.demand_response
            if "actual_kwh" in r and r["response_type"] == "peak_shaving" and r["actual_kwh"] < r["baseline_kwh"]
        )
        return {"results": len(self.demand_response), "records": credited, "quarantined": bad}


def _served(parts: list[float]) -> tuple[float, ...]:
    """Registers as a meter reports them: tariff registers to 0.01 kWh, the total their rounded sum."""
    rounded = [round(p, 2) for p in parts]
    return (round(sum(parts), 2), *rounded)


@dataclass(slots=True)
class SandboxStats(KitStats):
    """What the sandbox served (the kit's counters, and the readings endpoint's)."""

    readings_requests: int = 0


_FAULT_MESSAGES = {
    200: "系统繁忙，请稍后重试 (system busy)",
    401: "access token is missing, expired or revoked",
    429: "too many requests",
    500: "internal error",
    502: "bad gateway",
    503: "service unavailable",
}


class StateGridSandbox(PartnerSandbox):
    """The sandbox partner's API as an ASGI app (:attr:`app`) plus the knobs to steer it; ``with`` (or
    :meth:`start`) serves it on ``host`` (``127.0.0.1``), ``port`` (ephemeral by default).

    ``households``, ``days``, ``seed``, ``start``, ``faults``, ``dr_share`` and ``dr_bad`` make the :class:`Dataset`.
    ``visible_days`` hides its later days until :meth:`publish`; ``page_size_cap`` caps ``size``;
    ``webhook_secret`` signs the demand-response pushes (random by default). Other keyword arguments go to the kit
    (:class:`~tanpuhui.testing.sandbox.PartnerSandbox`: credentials, ``token_ttl``, ``fail_every``/
    ``throttle_every``/``retry_after`` on readings requests, ``host``, ``port``).
    """

    adapter = "state_grid"
    server_name = "State Grid sandbox"

    def __init__(
        self,
        households: int = 200,
        days: int = 30,
        seed: int = 7,
        *,
        start: date = date(2024, 11, 4),
        faults: Mapping[str, int] | None = None,
        dr_share: float = 0.3,
        dr_bad: int = 1,
        page_size_cap: int = 1000,
        webhook_secret: str | None = None,
        visible_days: int | None = None,
        client_id: str = "tanpuhui-sandbox",
        **options: Any,
    ) -> None:
        self.dataset = Dataset(households, days, seed, start=start, faults=faults, dr_share=dr_share, dr_bad=dr_bad)
        self.webhook_secret = webhook_secret or new_webhook_secret()
        """The ``whsec_`` secret the sandbox signs demand-response pushes with."""
        self.page_size_cap = page_size_cap
        self.visible_days = days if visible_days is None else max(0, min(visible_days, days))
        self._items = EncodedItems(self.dataset.items)
        self.stats: SandboxStats = SandboxStats()
        invalid_token = {"code": "4010", "msg": "access token is missing, expired or revoked"}
        super().__init__(self.stats, client_id=client_id, realm="sgcc-sandbox", invalid_token=invalid_token, **options)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/oauth/token", self.oauth.token_endpoint, methods=["POST"]),
            Route("/api/v1/readings/daily", self._readings, methods=["GET"]),
        ]

    @property
    def visible(self) -> int:
        """Number of readings currently published."""
        return self.dataset.day_ends[self.visible_days - 1] if self.visible_days else 0

    # -- settings ----------------------------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Values for :class:`~tanpuhui.adapters.state_grid.StateGridSettings` that reach this sandbox.

        Secrets are literal here; a hub.toml table refers to them by environment variable: see :meth:`hub_table`.
        """
        return {
            "base_url": self.url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "webhook_secrets": [self.webhook_secret],
            **overrides,
        }

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The kit's table plus the demand-response webhook secret (``env_prefix + "WEBHOOK_SECRET"``)."""
        table, env = super().hub_settings(env_prefix)
        var = f"{env_prefix}WEBHOOK_SECRET"
        return {**table, "webhook_secrets": [{"env": var}]}, {**env, var: self.webhook_secret}

    def hub_table(self, **overrides: Any) -> dict[str, Any]:
        """An ``[adapters.state_grid]`` table for this sandbox, secrets as references to :meth:`environ`."""
        return {**self.hub_settings("STATE_GRID_")[0], **overrides}

    def environ(self) -> dict[str, str]:
        """The environment variables :meth:`hub_table` refers to."""
        return self.hub_settings("STATE_GRID_")[1]

    # -- knobs -------------------------------------------------------------------------------------------------

    def publish(self, days: int | None = None) -> None:
        """Publish ``days`` more days of readings (all when None), as the next daily freezes would."""
        total = self.dataset.days
        self.visible_days = total if days is None else min(total, self.visible_days + days)

    def signed_demand_response(self, batch_size: int = 100, timestamp: int | None = None) -> list[WebhookRequest]:
        """The demand-response results as signed webhook requests: ``(headers, body)``, ``batch_size`` per body."""
        seed = self.dataset.seed
        return signed_batches(
            self.webhook_secret,
            self.dataset.demand_response,
            batch=batch_size,
            message_id=lambda n: f"msg_sgdr_{seed}_{n + 1:04d}",
            timestamp=timestamp,
        )

    def webhook_requests(self) -> dict[str, list[WebhookRequest]]:
        """The demand-response results, 100 per request."""
        return {"demand_response": self.signed_demand_response(100)}

    def deliver_demand_response(self, url: str, batch_size: int = 100) -> list[int]:
        """POST the signed demand-response batches to ``url`` (e.g. the sidecar's webhook); the HTTP statuses."""
        statuses = []
        with httpx.Client(timeout=30) as client:
            for headers, body in self.signed_demand_response(batch_size):
                response = client.post(url, content=body, headers={**headers, "Content-Type": "application/json"})
                statuses.append(response.status_code)
        return statuses

    def fault_response(self, fault: ScheduledFault) -> Response:
        message = _FAULT_MESSAGES.get(fault.status, "error")
        doc = {"code": fault.code or f"{fault.status}0", "msg": f"{message} (sandbox fault injection)"}
        return json_response(fault.status, doc, fault.headers)

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def _readings(self, request: Request) -> Response:
        refused = self.refusal(request, "readings_requests")
        if refused is not None:
            return refused
        size = positive_int(request.query_params.get("size"), 100)
        if size is None:
            return json_response(400, {"code": "4000", "msg": "size must be a positive integer"})
        window = OFFSET_CURSOR.window(
            request.query_params.get("cursor"),
            size,
            visible=self.visible,
            total=len(self._items),
            cap=self.page_size_cap,
        )
        if window is None:
            return json_response(400, {"code": "4001", "msg": "cursor is not one this API issued"})
        served = range(window.begin, window.end)
        self.stats.items_served += len(served)
        data = {"records": self._items.array(served), "next_cursor": window.next_cursor, "has_more": window.has_more}
        return json_response(200, {"code": "0000", "msg": "success", "data": data})


SandboxPartner = StateGridSandbox
"""The same class by the name in-process users know it by (``httpx.ASGITransport(app=SandboxPartner(...).app)``)."""
