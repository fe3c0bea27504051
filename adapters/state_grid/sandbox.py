"""A sandbox State Grid metering partner: the interface of :mod:`.adapter`, serving synthetic Hefei households.

    with StateGridSandbox(households=200, days=30, seed=7) as sandbox:
        settings = StateGridSettings(**sandbox.settings())
        ...
        for headers, body in sandbox.signed_demand_response():
            hub.receive("state_grid", "demand_response", headers, body)
        print(sandbox.stats.readings_requests, sandbox.dataset.expected())

What it serves (see docs/adapters/state_grid.md):

- ``POST /oauth/token``: client credentials (Basic auth, or ``client_id``/``client_secret`` form fields); opaque
  bearer tokens valid ``token_ttl`` seconds; :meth:`SandboxPartner.revoke_tokens` revokes them early.
- ``GET /api/v1/readings/daily?size=N[&cursor=C]``: ``{"code": "0000", "msg": "success", "data": {"records":
  [...], "next_cursor": "...", "has_more": ...}}``, readings ordered by ``read_date`` then ``cons_no``, ``size``
  capped at ``page_size_cap``. ``visible_days`` hides later days until :meth:`SandboxPartner.publish` (daily runs).

The dataset: ``households`` households in Hefei's districts, one daily frozen reading each for ``days`` days from
``start``. Each household has its own level (5-15 kWh a day) and peak share (30-50 %), varying day to day and a
little higher at weekends; registers are cumulative and split over four tariff periods (sharp, peak, flat,
valley). Customer numbers start with ``99`` and meter numbers with ``990``: synthetic, nobody's real account.
Faults are mixed in (one each by default, each on a household of its own, in the second half of the period):
:data:`FAULT_KINDS`. :meth:`Dataset.expected` says what a correct pull makes of the whole dataset, computed from
the generator's own record of which days are clean, not by running the adapter.

Demand response: :attr:`Dataset.demand_response` holds results of two peak-shaving events (evenings, about
``dr_share`` of the households each) and one valley-filling event, plus ``dr_bad`` results missing
``actual_kwh``; :meth:`SandboxPartner.signed_demand_response` signs them with Standard Webhooks under
:attr:`SandboxPartner.webhook_secret`, and :meth:`StateGridSandbox.deliver_demand_response` posts them to a URL.

Faults on the wire: ``fail_every=N`` answers every N-th readings request with a 500, ``throttle_every=N`` with a
429 and ``Retry-After: retry_after``; :meth:`SandboxPartner.fail_next` queues one-off answers (any status, or a
200 whose envelope carries an error ``code``).
"""

from __future__ import annotations

import base64
import binascii
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tanpuhui.sdk import WebhookSigner
from tanpuhui.testing.loopback import LoopbackServer

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
        unknown = set(faults or ()) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
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
class SandboxStats:
    """What the sandbox served."""

    requests: int = 0
    token_requests: int = 0
    tokens_issued: int = 0
    readings_requests: int = 0
    items_served: int = 0
    unauthorized: int = 0
    faults: Counter[int] = field(default_factory=Counter)
    """Injected error answers by HTTP status (an envelope error counts under 200)."""


class SandboxPartner:
    """The sandbox partner's API as an ASGI app (:attr:`app`) plus the knobs to steer it.

    Keyword arguments other than the ones below go to :class:`Dataset`. ``visible_days`` hides the dataset's later
    days until :meth:`publish`; ``page_size_cap`` caps ``size``; ``fail_every``/``throttle_every`` inject 500s/429s
    on every N-th readings request.
    """

    def __init__(
        self,
        households: int = 200,
        days: int = 30,
        seed: int = 7,
        *,
        page_size_cap: int = 1000,
        fail_every: int = 0,
        throttle_every: int = 0,
        retry_after: int = 1,
        token_ttl: int = 1800,
        client_id: str = "tanpuhui-sandbox",
        client_secret: str | None = None,
        webhook_secret: str | None = None,
        visible_days: int | None = None,
        **dataset: Any,
    ) -> None:
        self.dataset = Dataset(households, days, seed, **dataset)
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.webhook_secret = webhook_secret or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.page_size_cap = page_size_cap
        self.fail_every = fail_every
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self.token_ttl = token_ttl
        self.stats = SandboxStats()
        self.visible_days = days if visible_days is None else max(0, min(visible_days, days))
        self._encoded = [orjson.dumps(item) for item in self.dataset.items]
        self._tokens: dict[str, float] = {}
        self._faults: deque[tuple[int, int | None, str | None]] = deque()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/api/v1/readings/daily", self._readings, methods=["GET"]),
            ]
        )

    @property
    def visible(self) -> int:
        """Number of readings currently published."""
        return self.dataset.day_ends[self.visible_days - 1] if self.visible_days else 0

    # -- knobs -------------------------------------------------------------------------------------------------

    def publish(self, days: int | None = None) -> None:
        """Publish ``days`` more days of readings (all when None), as the next daily freezes would."""
        total = self.dataset.days
        self.visible_days = total if days is None else min(total, self.visible_days + days)

    def revoke_tokens(self) -> None:
        """Revoke every issued token before its expiry: the next API call with one gets a 401."""
        with self._lock:
            self._tokens.clear()

    def fail_next(
        self, status: int, *, count: int = 1, retry_after: int | None = None, code: str | None = None
    ) -> None:
        """Answer the next ``count`` readings requests with ``status`` (and ``Retry-After`` when given).

        ``code`` with status 200 answers a well-formed HTTP response whose envelope carries that error code.
        """
        with self._lock:
            self._faults.extend([(status, retry_after, code)] * count)

    def signed_demand_response(
        self, batch_size: int = 100, timestamp: int | None = None
    ) -> list[tuple[dict[str, str], bytes]]:
        """The demand-response results as signed webhook requests: ``(headers, body)``, ``batch_size`` per body."""
        signer = WebhookSigner(self.webhook_secret)
        results = self.dataset.demand_response
        out = []
        for number, i in enumerate(range(0, len(results), batch_size), start=1):
            body = orjson.dumps({"items": results[i : i + batch_size]})
            out.append((signer.headers(f"msg_sgdr_{self.dataset.seed}_{number:04d}", body, timestamp), body))
        return out

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.token_requests += 1
        form = dict(parse_qsl((await request.body()).decode("latin-1")))
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                decoded = ""
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, client_secret = unquote(basic_id), unquote(basic_secret)
        if not (
            secrets.compare_digest(client_id.encode(), self.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            self.stats.unauthorized += 1
            return _json(
                401,
                {"error": "invalid_client", "error_description": "unknown client or wrong secret"},
                {"WWW-Authenticate": 'Basic realm="sgcc-sandbox"'},
            )
        if form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type", "error_description": "use client_credentials"})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        self.stats.tokens_issued += 1
        doc: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        if form.get("scope"):
            doc["scope"] = form["scope"]
        return _json(200, doc, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        expiry = self._tokens.get(token)
        if expiry is not None and expiry > time.monotonic():
            return None
        self.stats.unauthorized += 1
        return _json(
            401,
            {"code": "4010", "msg": "access token is missing, expired or revoked"},
            {"WWW-Authenticate": 'Bearer realm="sgcc-sandbox", error="invalid_token"'},
        )

    async def _readings(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.readings_requests += 1
        refused = self._authorized(request)
        if refused is not None:
            return refused
        fault = self._fault(self.stats.readings_requests)
        if fault is not None:
            return fault
        try:
            size = int(request.query_params.get("size", "100"))
            if size < 1:
                raise ValueError
        except ValueError:
            return _json(400, {"code": "4000", "msg": "size must be a positive integer"})
        offset = _decode_cursor(request.query_params.get("cursor"))
        if offset is None or offset > len(self._encoded):
            return _json(400, {"code": "4001", "msg": "cursor is not one this API issued"})
        visible = self.visible
        end = min(offset + min(size, self.page_size_cap), max(visible, offset))
        self.stats.items_served += end - offset
        body = b"".join(
            (
                b'{"code":"0000","msg":"success","data":{"records":[',
                b",".join(self._encoded[offset:end]),
                b'],"next_cursor":',
                orjson.dumps(_encode_cursor(end)),
                b',"has_more":',
                b"true" if end < visible else b"false",
                b"}}",
            )
        )
        return Response(body, media_type="application/json")

    def _fault(self, serial: int) -> Response | None:
        with self._lock:
            queued = self._faults.popleft() if self._faults else None
        code: str | None = None
        if queued is not None:
            status, retry_after, code = queued
        elif self.fail_every and serial % self.fail_every == 0:
            status, retry_after = 500, None
        elif self.throttle_every and serial % self.throttle_every == 0:
            status, retry_after = 429, self.retry_after
        else:
            return None
        self.stats.faults[status] += 1
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        messages = {
            200: "系统繁忙，请稍后重试 (system busy)",
            401: "access token is missing, expired or revoked",
            429: "too many requests",
            500: "internal error",
            502: "bad gateway",
            503: "service unavailable",
        }
        doc = {"code": code or f"{status}0", "msg": f"{messages.get(status, 'error')} (sandbox fault injection)"}
        return _json(status, doc, headers)


def _json(status: int, doc: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, headers=dict(headers or {}), media_type="application/json")


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": 1, "o": offset})).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        return None
    offset = doc.get("o") if isinstance(doc, dict) and doc.get("v") == 1 else None
    return offset if isinstance(offset, int) and offset >= 0 else None


class StateGridSandbox(LoopbackServer):
    """:class:`SandboxPartner` served by uvicorn in a background thread on ``127.0.0.1`` (ephemeral port).

    Keyword arguments go to :class:`SandboxPartner` (and on to :class:`Dataset`). Use as a context manager, or
    call :meth:`start`/:meth:`stop`.
    """

    server_name = "State Grid sandbox"

    def __init__(
        self, households: int = 200, days: int = 30, seed: int = 7, *, host: str = "127.0.0.1", **options: Any
    ) -> None:
        self.partner = SandboxPartner(households, days, seed, **options)
        self.host = host
        self.url = ""
        """``http://127.0.0.1:<port>`` once started."""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def client_id(self) -> str:
        return self.partner.client_id

    @property
    def client_secret(self) -> str:
        return self.partner.client_secret

    @property
    def webhook_secret(self) -> str:
        """The ``whsec_`` secret the sandbox signs demand-response pushes with."""
        return self.partner.webhook_secret

    @property
    def stats(self) -> SandboxStats:
        return self.partner.stats

    @property
    def dataset(self) -> Dataset:
        return self.partner.dataset

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

    def hub_table(self, **overrides: Any) -> dict[str, Any]:
        """An ``[adapters.state_grid]`` table for this sandbox, secrets as references to :meth:`environ`."""
        return {
            "base_url": self.url,
            "client_id": self.client_id,
            "client_secret": {"env": "STATE_GRID_CLIENT_SECRET"},
            "webhook_secrets": [{"env": "STATE_GRID_WEBHOOK_SECRET"}],
            **overrides,
        }

    def environ(self) -> dict[str, str]:
        """The environment variables :meth:`hub_table` refers to."""
        return {"STATE_GRID_CLIENT_SECRET": self.client_secret, "STATE_GRID_WEBHOOK_SECRET": self.webhook_secret}

    def asgi_app(self) -> Any:
        return self.partner.app

    def publish(self, days: int | None = None) -> None:
        """See :meth:`SandboxPartner.publish`."""
        self.partner.publish(days)

    def revoke_tokens(self) -> None:
        """See :meth:`SandboxPartner.revoke_tokens`."""
        self.partner.revoke_tokens()

    def fail_next(
        self, status: int, *, count: int = 1, retry_after: int | None = None, code: str | None = None
    ) -> None:
        """See :meth:`SandboxPartner.fail_next`."""
        self.partner.fail_next(status, count=count, retry_after=retry_after, code=code)

    def signed_demand_response(
        self, batch_size: int = 100, timestamp: int | None = None
    ) -> list[tuple[dict[str, str], bytes]]:
        """See :meth:`SandboxPartner.signed_demand_response`."""
        return self.partner.signed_demand_response(batch_size, timestamp)

    def deliver_demand_response(self, url: str, batch_size: int = 100) -> list[int]:
        """POST the signed demand-response batches to ``url`` (e.g. the sidecar's webhook); the HTTP statuses."""
        statuses = []
        with httpx.Client(timeout=30) as client:
            for headers, body in self.signed_demand_response(batch_size):
                response = client.post(url, content=body, headers={**headers, "Content-Type": "application/json"})
                statuses.append(response.status_code)
        return statuses
