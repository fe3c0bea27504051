"""State Grid electricity adapter: daily frozen readings become peak-hour saving records; DR results are pushed.

Partner interface
=================
No public interface document of State Grid's metering data service (用电信息采集) for third parties was found.
What follows is the interface this adapter speaks, modelled on the conventions of State Grid's data services (daily
frozen registers PAP_R / PAP_R1..R4, cons_no, meter_id; OAuth2 client credentials; a ``{"code": "0000", "msg",
"data"}`` envelope). **A real partner's interface document rules**: paths, the auth method, the success codes, which
register is the peak one and the methodologies are settings. docs/adapters/state_grid.md has the same with
examples.

``POST {token_url}`` (default ``{base_url}/oauth/token``)
    OAuth2 client credentials (``client_secret_basic``; ``client_secret_post`` configurable), optional ``scope``.

``GET {readings_path}?size=N[&cursor=C]`` (default ``/api/v1/readings/daily``)
    ``{"code": "0000", "msg": "success", "data": {"records": [reading, ...], "next_cursor": "...",
    "has_more": true|false}}``; readings (schema ``state-grid-reading``) ordered by ``read_date``, then household.
    The cursor is opaque; the hub stores ``next_cursor`` with the page's records, and a run that ends with
    ``has_more: false`` keeps it for the next (daily) run. A ``code`` other than the success codes stops the run
    with :class:`~tanpuhui.sdk.PartnerResponseError` (the cursor stays where it was). 429/5xx/timeouts are
    retried, a 401 from a revoked token re-fetches the token once (:class:`~tanpuhui.sdk.PartnerClient`).

Push ``demand_response``
    Demand-response event results (schema ``state-grid-demand-response``), signed with Standard Webhooks under the
    ``webhook_secrets`` setting; verified and parsed by :class:`~tanpuhui.sdk.PushStream`.

Readings: what is credited
==========================
Per household (keyed by the pseudonym of ``cons_no``) the stream keeps in ``ctx.state``: the last reading used
(the chain's anchor: a keyed hash of ``meter_id``, the date and the five registers) and the trailing window of
daily peak kWh. For each ``normal`` reading of the anchor's meter exactly one day after the anchor:

- consumption of the day = reading - anchor, per register; peak kWh = the sum over ``peak_registers``;
- baseline = mean peak kWh of that household's days in the ``baseline_window_days`` days before (its own
  trailing average, as Shenzhen's household methodology does), needing ``baseline_min_days`` of them;
- a day whose peak kWh is below the baseline gets one ``peak_electricity_saving`` record (methodology
  ``tph.electricity.peak-saving``, ``max(baseline - activity, 0) * ef_grid``); a day at or above the baseline
  gets **no record**; the day joins the window either way.

Data faults:

- ``estimated`` and ``missing`` readings: no record, and the chain does not move (an estimate never becomes the
  anchor, so it cannot leak into the next difference); the next normal reading spans two days and is a gap.
- a gap (readings more than one day apart, e.g. a day the partner never sent): the difference spans several days
  and is **not credited** (not spread over the days); the chain moves on to the new reading.
- a meter replacement (new ``meter_id`` for the household): the chain restarts at the new meter's first reading
  (no difference across meters, that day not credited); the baseline window is kept.
- a register lower than the anchor's on the same meter, or a total jump above ``max_daily_kwh`` per day:
  quarantined (``ItemRejected``, a JSON pointer per register), the chain stays on the anchor. If the *next*
  reading is also inconsistent with the anchor but consistent with the quarantined one, the anchor was the
  outlier (or the meter was reset without a new meter_id): the chain restarts there, the anchor's day leaves
  the window, and the first day after the restart is not credited (probation).
- a reading dated before the anchor (whatever its meter), or a second different reading for the anchor's date:
  quarantined (``/read_date``); the same reading delivered again is ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    ConfigError,
    HttpOptions,
    ItemRejected,
    Page,
    PartnerClient,
    PartnerResponseError,
    PartnerSettings,
    Problem,
    PullStream,
    PushStream,
    RecordLike,
    StreamContext,
    WebhookVerifier,
    as_objects,
    cursor_fields,
    cursor_pages,
    describe_shape,
)

__all__ = ["DemandResponseStream", "ReadingsStream", "StateGridAdapter", "StateGridSettings"]

CST = timezone(timedelta(hours=8))
"""China Standard Time: registers freeze at 00:00 UTC+8."""

REGISTERS = ("PAP_R", "PAP_R1", "PAP_R2", "PAP_R3", "PAP_R4")
TariffRegister = Literal["PAP_R1", "PAP_R2", "PAP_R3", "PAP_R4"]
DEFAULT_PEAK_REGISTERS: tuple[TariffRegister, ...] = ("PAP_R1", "PAP_R2")
"""Sharp + peak: registers 1 and 2 on the usual four-period meter; the mapping varies by meter (a setting)."""
_ROUND = 4  # kWh decimals kept in differences (meters report 2-4)


class StateGridSettings(PartnerSettings):
    """``[adapters.state_grid]`` in hub.toml. The pull settings may be left out when only pushes are used."""

    # Optional here (a push-only deployment has none); _consistent wants all three once base_url is set.
    base_url: str = Field("", description="Partner API root for the readings pull, e.g. https://api.sgcc-ah.example")
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    readings_path: str = "/api/v1/readings/daily"
    page_size: int = Field(500, ge=1, le=5000, description="size= asked per readings page")
    success_codes: list[str] = Field(default_factory=lambda: ["0000"], min_length=1)
    peak_registers: list[TariffRegister] = Field(
        default_factory=lambda: list(DEFAULT_PEAK_REGISTERS),
        min_length=1,
        description="tariff registers whose sum is the day's peak consumption (sharp + peak by default)",
    )
    baseline_window_days: int = Field(7, ge=1, le=90, description="trailing window of the household's own baseline")
    baseline_min_days: int = Field(5, ge=1, le=90, description="days needed in the window before crediting")
    max_daily_kwh: float = Field(200.0, gt=0, description="a household using more per day is a register fault")
    max_event_hours: float = Field(24.0, gt=0, le=72, description="longest plausible demand-response window")
    readings_methodology: str = "tph.electricity.peak-saving"
    demand_response_methodology: str = "tph.electricity.demand-response"
    webhook_secrets: list[SecretStr] = Field(default_factory=list, description="Standard Webhooks secrets (whsec_...)")

    @field_validator("peak_registers")
    @classmethod
    def _distinct(cls, value: list[TariffRegister]) -> list[TariffRegister]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a register twice: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StateGridSettings:
        if self.baseline_min_days > self.baseline_window_days:
            raise ValueError(
                f"baseline_min_days ({self.baseline_min_days}) cannot exceed baseline_window_days "
                f"({self.baseline_window_days})"
            )
        if self.base_url:
            if not self.client_id or not self.client_secret.get_secret_value():
                raise ValueError("base_url is set, so client_id and client_secret are needed for the readings pull")
        elif not self.webhook_secrets:
            raise ValueError(
                "nothing to do: set base_url, client_id and client_secret (readings pull) and/or webhook_secrets "
                "(demand_response push)"
            )
        return self


class ReadingsStream(PullStream):
    """Daily frozen readings (``GET /api/v1/readings/daily``): one record per household-day below its baseline."""

    name = "readings"
    schema = "state-grid-reading"
    id_field = "reading_id"
    description = "Daily frozen register readings; peak-hour saving against the household's trailing average"

    adapter: StateGridAdapter

    def __init__(self, adapter: StateGridAdapter) -> None:
        super().__init__(adapter)
        config = adapter.config
        self._peak = tuple(REGISTERS.index(r) for r in config.peak_registers)
        self._peak_text = "+".join(config.peak_registers)
        self._window = config.baseline_window_days
        self._min_days = config.baseline_min_days
        self._max_daily = config.max_daily_kwh

    # -- pulling -----------------------------------------------------------------------------------------------

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        config = self.adapter.config
        client = self.adapter.client
        path = config.readings_path

        async def fetch(params: dict[str, Any], described: str) -> tuple[list[dict[str, Any]], str | None, bool]:
            return self._envelope(await client.get_json(path, params=params), described, params.get("cursor"))

        async for page in cursor_pages(path, cursor, fetch, size=config.page_size):
            yield page

    def _envelope(self, doc: Any, described: str, asked: Any) -> tuple[list[dict[str, Any]], str | None, bool]:
        where = f"{self.adapter.name}: {described}"
        if not isinstance(doc, dict) or "code" not in doc:
            raise PartnerResponseError(
                f'{where}: expected {{"code": ..., "msg": ..., "data": ...}}, got {describe_shape(doc)}'
            )
        code = str(doc["code"])
        if code not in self.adapter.config.success_codes:
            raise PartnerResponseError(
                f"{where}: partner answered code {code!r} ({str(doc.get('msg', ''))[:200]!r}); success is "
                f"{' or '.join(repr(c) for c in self.adapter.config.success_codes)}"
            )
        data = doc.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise PartnerResponseError(
                f'{where}: /data must be {{"records": [...], "next_cursor": ..., "has_more": ...}}, got {describe_shape(data)}'
            )
        next_cursor, has_more = cursor_fields(data, where, "/data", asked)
        return as_objects(data["records"]), next_cursor, has_more

    # -- normalizing -------------------------------------------------------------------------------------------

    @staticmethod
    def _kept_before_rotation(
        households: dict[str, dict[str, Any]], item: dict[str, Any], key: str, meter: str, ctx: StreamContext
    ) -> dict[str, Any] | None:
        """After a pseudonym key rotation: the household's anchor and window kept under its pseudonym by an earlier
        key, moved to the current one (the meter's too), so its chain and trailing baseline go on."""
        earlier = ctx.earlier_pseudonyms("account", item["cons_no"])
        for i, old in enumerate(earlier):
            hh = households.pop(old, None)
            if hh is not None:
                if hh["m"] == ctx.earlier_pseudonyms("account", f"meter:{item['meter_id']}")[i][:16]:
                    hh["m"] = meter
                households[key] = hh
                return hh
        return None

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        if item["status"] != "normal":
            return ()  # estimated / missing: never credited, never the chain's anchor
        read_date = item["read_date"]
        day = date.fromisoformat(read_date).toordinal()
        regs = [float(item[r]) for r in REGISTERS]
        households: dict[str, dict[str, Any]] = ctx.state.setdefault("households", {})
        key = ctx.pseudonym("account", item["cons_no"])
        meter = ctx.pseudonym("account", f"meter:{item['meter_id']}")[:16]
        hh = households.get(key)
        if hh is None:
            hh = self._kept_before_rotation(households, item, key, meter, ctx)
        if hh is None:
            households[key] = {"m": meter, "d": day, "r": regs, "w": []}
            return ()
        span = day - hh["d"]
        if span <= 0:
            if span == 0 and regs == hh["r"] and meter == hh["m"]:
                return ()  # the same reading delivered again
            anchor_date = date.fromordinal(hh["d"]).isoformat()
            raise ItemRejected(
                f"reading for {read_date} arrived after this household's reading for {anchor_date}, which is "
                "already used; readings must arrive in read_date order"
                if span < 0
                else f"a second, different reading for {read_date} of this household; the first one is already used",
                "/read_date",
            )
        if hh["m"] != meter:
            # Meter replaced: the new meter's registers start near zero. Restart the chain, keep the window.
            hh.update(m=meter, d=day, r=regs)
            hh.pop("s", None)
            hh.pop("p", None)
            return ()
        problems = self._chain_problems(hh["r"], hh["d"], regs, day)
        if problems:
            return self._inconsistent(hh, day, regs, problems)
        anchor_regs, anchor_day = hh["r"], hh["d"]
        hh["d"], hh["r"] = day, regs
        hh.pop("s", None)
        if hh.pop("p", None) is not None or span > 1:
            return ()  # first day after a restart, or a gap: not credited, not in the window
        diffs = [round(c - p, _ROUND) for c, p in zip(regs, anchor_regs, strict=True)]
        peak = round(sum(diffs[i] for i in self._peak), _ROUND)
        consumption_day = anchor_day
        earliest = consumption_day - self._window
        window = [w for w in hh["w"] if w[0] >= earliest]
        hh["w"] = [*window, [consumption_day, peak]]
        if len(window) < self._min_days:
            return ()
        baseline = round(sum(w[1] for w in window) / len(window), _ROUND)
        if peak >= baseline:
            return ()
        method = ctx.methodology(self.adapter.config.readings_methodology)
        start = datetime.combine(date.fromordinal(consumption_day), time(), CST)
        return (
            ctx.record(
                raw={
                    "previous": {"read_date": date.fromordinal(anchor_day).isoformat(), "registers": anchor_regs},
                    "reading": item,
                },
                partner_record_id=item["reading_id"],
                subject={"kind": "person", "pseudonym": key, "key_version": ctx.key_version},
                scenario=method.scenario,
                start=start,
                end=start + timedelta(days=1),
                region=item["region_code"],
                activity=peak,
                unit="kWh",
                methodology=method,
                baseline=baseline,
                baseline_method=(
                    f"household's own mean daily peak consumption ({self._peak_text}) over {len(window)} of the "
                    f"{self._window} preceding days"
                ),
                details={
                    "read_date": read_date,
                    "total_kwh": diffs[0],
                    "peak_registers": self._peak_text,
                    "baseline_days": len(window),
                },
            ),
        )

    def _chain_problems(self, prev: list[float], prev_day: int, regs: list[float], day: int) -> list[Problem]:
        """Why ``regs`` cannot follow ``prev`` on the same meter (registers going backwards, an implausible jump)."""
        span = day - prev_day
        backwards = [i for i in range(len(REGISTERS)) if regs[i] < prev[i]]
        if not backwards and regs[0] - prev[0] <= self._max_daily * span:
            return []
        before, after = date.fromordinal(prev_day).isoformat(), date.fromordinal(day).isoformat()
        if not backwards:
            return [
                Problem(
                    "/PAP_R",
                    f"PAP_R rose {round(regs[0] - prev[0], _ROUND)} kWh in {span} day(s) since {before}: more than "
                    f"max_daily_kwh ({self._max_daily:g}) per day for a household. The reading is not used",
                    "register",
                )
            ]
        problems = [
            Problem(
                f"/{REGISTERS[i]}",
                f"{REGISTERS[i]} went backwards on the same meter: {prev[i]} kWh on {before}, {regs[i]} kWh on "
                f"{after}; meter_id is unchanged, so this is not a meter replacement. The reading is not used",
                "register",
            )
            for i in backwards
        ]
        return problems

    def _inconsistent(
        self, hh: dict[str, Any], day: int, regs: list[float], problems: list[Problem]
    ) -> Iterable[RecordLike]:
        suspect = hh.get("s")
        if suspect is not None and suspect[0] < day and not self._chain_problems(suspect[1], suspect[0], regs, day):
            # Two readings in a row agree with each other and not with the anchor: the anchor was the outlier (or
            # the register was reset without a new meter_id). Restart here; the anchor's day leaves the window.
            bad_day = hh["d"] - 1
            hh["w"] = [w for w in hh["w"] if w[0] != bad_day]
            hh.update(d=day, r=regs, p=1)
            del hh["s"]
            return ()
        hh["s"] = [day, regs]
        raise ItemRejected(problems)


class DemandResponseStream(PushStream):
    """Demand-response event results pushed by the partner; peak-shaving results below baseline are credited."""

    name = "demand_response"
    schema = "state-grid-demand-response"
    id_field = "result_id"
    description = "Demand-response event results (Standard Webhooks push), credited against the event baseline"
    void_when_empty = True  # a result re-sent at or above its baseline (or as valley filling) credits nothing now

    adapter: StateGridAdapter

    def verifier(self) -> WebhookVerifier:
        return WebhookVerifier([s.get_secret_value() for s in self.adapter.config.webhook_secrets])

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        start = datetime.fromisoformat(item["window_start"])
        end = datetime.fromisoformat(item["window_end"])
        hours = (end - start).total_seconds() / 3600
        if hours <= 0:
            raise ItemRejected(
                f"window_end {item['window_end']} is not after window_start {item['window_start']}", "/window_end"
            )
        limit = self.adapter.config.max_event_hours
        if hours > limit:
            raise ItemRejected(
                f"event window of {hours:g} h is longer than max_event_hours ({limit:g}); not a demand-response "
                "event window",
                "/window_end",
            )
        if item["response_type"] != "peak_shaving":
            return ()  # valley filling moves consumption into the window: no reduction to credit
        baseline, actual = float(item["baseline_kwh"]), float(item["actual_kwh"])
        if actual >= baseline:
            return ()
        method = ctx.methodology(self.adapter.config.demand_response_methodology)
        return (
            ctx.record(
                raw=item,
                partner_record_id=item["result_id"],
                subject=ctx.subject("account", item["cons_no"]),
                scenario=method.scenario,
                start=start,
                end=end,
                region=item["region_code"],
                activity=actual,
                unit="kWh",
                methodology=method,
                baseline=baseline,
                baseline_method=item.get("baseline_method") or "partner's settled event baseline",
                details={"event_id": item["event_id"], "response_type": "peak_shaving", "window_hours": hours},
            ),
        )


class StateGridAdapter(Adapter):
    """State Grid metering data: a readings pull stream and a demand-response push stream."""

    name = "state_grid"
    version = "1.0.0"
    title = "State Grid electricity (用电信息采集): daily frozen readings and demand-response results"
    Settings = StateGridSettings
    schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "state-grid-reading": load_builtin("state-grid-reading"),
        "state-grid-demand-response": load_builtin("state-grid-demand-response"),
    }
    stream_types = (ReadingsStream, DemandResponseStream)

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        super().__init__(settings, http)
        self.config = self.settings_as(StateGridSettings)

    @cached_property
    def client(self) -> PartnerClient:
        """The partner client of the readings pull (created on first use, closed by :meth:`aclose`)."""
        if not self.config.base_url:
            raise ConfigError(
                "adapter state_grid: the readings pull needs base_url, client_id and client_secret in "
                "[adapters.state_grid]"
            )
        return self.oauth2_client(self.config)
