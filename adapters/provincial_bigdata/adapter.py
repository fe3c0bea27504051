"""Anhui provincial big-data (data-sharing) platform adapter: four datasets pulled through the platform's API gateway.

Partner interface
=================
No public interface document of the Anhui data-sharing platform was found. This adapter speaks the conventions
of Chinese government data-sharing gateways seen in the field, implemented in :mod:`tanpuhui.sdk.gateway`:
signed requests (``X-Ca-*`` headers, HMAC-SHA256 or HMAC-SM3, ±15 min replay window, single-use nonces), a
client-credentials token service, ``{code, msg, data}`` and ``{flag, data}`` envelopes with error codes, and
SM4-sealed, HMAC-SM3-tagged payloads. **The real platform's interface document rules**: paths, dataset codes,
the signature method, success and error codes, which datasets are sealed and how each is paged are settings.
docs/adapters/provincial_bigdata.md describes the interface with examples.

``POST {token_path}`` (default ``/auth/v1/token``): the access token, cached and renewed before expiry.

``GET {records_path}`` (default ``/share/v1/datasets/{dataset}/records``), ``{dataset}`` = the dataset code:

- cursor datasets (default: all but ``rooftop_pv``): ``?pageSize=N[&cursor=C]`` answers
  ``{"code": "0000", "data": {"records": [...], "nextCursor": "...", "hasMore": true|false}}``; the cursor is
  opaque and stored with the page's records;
- numbered-page datasets (default: ``rooftop_pv``): ``?pageNo=P&pageSize=N`` answers
  ``{"flag": "200", "data": [...]}``; a page shorter than ``pageSize`` is the last. The stored cursor is
  ``{"page": P, "skip": K}``: a short last page is asked for again on the next run and its first ``K`` items (already
  ingested) skipped, so the dataset must be append-only in page order (a page that shrinks stops the run).
- sealed datasets (default: ``water_usage``) must answer SM4-sealed; a clear answer is refused.

Datasets and normalization
==========================
- ``green_appliances`` -> scenario ``green_appliance``: one record per purchase line of a credited energy grade
  (``credited_grades``, default grade 1 only; other grades give no record and are not looked at further),
  activity = units bought, methodology ``tph.appliance.green.<category>`` (one per category, see
  :mod:`.methodologies`). Buyer: resident ID when present (a wrong check character is rejected), else mobile.
- ``water_usage`` / ``gas_usage`` -> ``peak_water_saving`` / ``peak_gas_saving``: activity = the day's peak-hour
  m3, baseline = the dataset's ``baselineM3`` when sent, else the household's own trailing mean over the previous
  ``baseline_days`` days (at least ``baseline_min_days`` of them) kept in the stream state. A record is made only
  for a day with a saving (usage below baseline); a household's first days only build its baseline. A second
  reading of the same account and day is rejected.
- ``rooftop_pv`` -> ``rooftop_pv``: activity = kWh generated that day, methodology ``tph.pv.rooftop``; a day above
  ``capacityKw * pv_max_full_load_hours`` is rejected as implausible.
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
    CodeAction,
    GatewayClient,
    GatewayConfig,
    GMError,
    HttpOptions,
    ItemRejected,
    Page,
    PartnerResponseError,
    PayloadCipher,
    PrivacyError,
    PullStream,
    RecordLike,
    RetrySettings,
    StreamContext,
    as_objects,
    cursor_pages,
    describe_shape,
)

from .baseline import TrailingBaseline
from .methodologies import APPLIANCE_PREFIX, appliance_methodology_id

__all__ = [
    "DATASETS",
    "GasUsageStream",
    "GreenAppliancesStream",
    "ProvincialBigDataAdapter",
    "ProvincialBigDataSettings",
    "RooftopPVStream",
    "WaterUsageStream",
]

CST = timezone(timedelta(hours=8))
DATASETS = ("green_appliances", "water_usage", "gas_usage", "rooftop_pv")


class ProvincialBigDataSettings(AdapterSettings, RetrySettings):
    """``[adapters.provincial_bigdata]`` in hub.toml; the retry fields come from ``RetrySettings``."""

    base_url: str = Field(description="Gateway root, e.g. https://api.data.ah.gov.cn/gateway")
    app_key: str = Field(min_length=1, description="X-Ca-Key issued by the platform")
    app_secret: SecretStr = Field(description="HMAC key issued with the app key")
    sign_method: Literal["HMAC-SHA256", "HMAC-SM3"] = "HMAC-SHA256"
    token_path: str = Field("/auth/v1/token", description="token service path; empty when there is none")
    token_leeway: float = Field(60.0, ge=0, le=3600, description="renew the token this many seconds before expiry")
    records_path: str = Field("/share/v1/datasets/{dataset}/records", description="'{dataset}' = the dataset code")
    dataset_codes: dict[str, str] = Field(
        default_factory=dict, description="stream name -> the platform's dataset code (default: the stream name)"
    )
    numbered_datasets: list[str] = Field(
        default_factory=lambda: ["rooftop_pv"], description="datasets paged by pageNo ({flag, data} arrays)"
    )
    encrypted_datasets: list[str] = Field(
        default_factory=lambda: ["water_usage"], description="datasets that must answer SM4-sealed"
    )
    sm4_key_secret: SecretStr | None = Field(None, description="SM4 key for sealed datasets, 32 hex characters")
    mac_key_secret: SecretStr | None = Field(None, description="HMAC-SM3 key for the payload tag, hex (>= 16 bytes)")
    success_codes: list[str] = Field(default_factory=lambda: ["0000", "200"])
    code_actions: dict[str, Literal["retry", "reauth", "auth", "fail"]] = Field(
        default_factory=dict, description="gateway code -> action, over the SDK's defaults"
    )
    page_size: int = Field(500, ge=1, le=5000)
    credited_grades: list[int] = Field(
        default_factory=lambda: [1], description="energy grades credited; the factors are grade-1 savings"
    )
    appliance_methodology_prefix: str = APPLIANCE_PREFIX
    water_methodology: str = "tph.water.peak-saving"
    gas_methodology: str = "tph.gas.peak-saving"
    pv_methodology: str = "tph.pv.rooftop"
    baseline_days: int = Field(7, ge=1, le=90, description="trailing baseline window, days")
    baseline_min_days: int = Field(3, ge=1, le=90, description="days of history needed before crediting")
    pv_max_full_load_hours: float = Field(
        10.0, gt=0, le=24, description="a day above capacityKw x this many hours is rejected as implausible"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("records_path")
    @classmethod
    def _has_dataset(cls, value: str) -> str:
        if "{dataset}" not in value:
            raise ValueError("must contain '{dataset}' (replaced by the dataset code)")
        return value

    @field_validator("numbered_datasets", "encrypted_datasets")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(DATASETS))
        if unknown:
            raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; datasets: {', '.join(DATASETS)}")
        return value

    @field_validator("credited_grades")
    @classmethod
    def _grades(cls, value: list[int]) -> list[int]:
        if any(not 1 <= g <= 5 for g in value):
            raise ValueError("energy grades are 1 to 5")
        return value

    @model_validator(mode="after")
    def _keys(self) -> ProvincialBigDataSettings:
        unknown = sorted(set(self.dataset_codes) - set(DATASETS))
        if unknown:
            raise ValueError(f"dataset_codes: unknown dataset(s) {', '.join(unknown)}; datasets: {', '.join(DATASETS)}")
        if self.baseline_min_days > self.baseline_days:
            raise ValueError("baseline_min_days must not exceed baseline_days")
        if self.encrypted_datasets and (self.sm4_key_secret is None or self.mac_key_secret is None):
            raise ValueError(
                f"sm4_key_secret and mac_key_secret are required because encrypted_datasets lists "
                f"{', '.join(self.encrypted_datasets)} (set encrypted_datasets = [] if none is sealed)"
            )
        if self.sm4_key_secret is not None and self.mac_key_secret is not None:
            try:
                PayloadCipher.from_hex(self.sm4_key_secret.get_secret_value(), self.mac_key_secret.get_secret_value())
            except GMError as exc:
                raise ValueError(f"sm4_key_secret / mac_key_secret: {exc}") from None
        return self


# -- streams ----------------------------------------------------------------------------------------------------------


class _DatasetStream(PullStream):
    """A gateway dataset pulled page by page (cursor or numbered pages, clear or sealed)."""

    adapter: ProvincialBigDataAdapter

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        if self.name in self.adapter.config.numbered_datasets:
            pages = self._numbered_pages(cursor)
        else:
            pages = self._cursor_pages(cursor)
        async for page in pages:
            yield page

    def _path(self) -> str:
        return self.adapter.config.records_path.replace("{dataset}", self.adapter.dataset_code(self.name))

    async def _fetch(self, params: dict[str, Any]) -> Any:
        return await self.adapter.gateway.call(
            "GET",
            self._path(),
            dataset=self.name,
            params=params,
            encrypted=self.name in self.adapter.config.encrypted_datasets,
        )

    async def _cursor_pages(self, cursor: Any) -> AsyncIterator[Page]:
        cursor = cursor if isinstance(cursor, str) and cursor else None
        size = self.adapter.config.page_size
        async for page in cursor_pages(self._path(), cursor, self._cursor_page, size=size, size_param="pageSize"):
            yield page

    async def _cursor_page(
        self, params: dict[str, Any], described: str
    ) -> tuple[list[dict[str, Any]], str | None, bool]:
        """One page of a cursor dataset: its records, ``nextCursor`` and ``hasMore``, checked."""
        where = f"{self.adapter.name}: dataset {self.name!r}: {described}"
        data = await self._fetch(params)
        if data is None:  # some gateways answer an exhausted dataset with data: null
            return [], None, False
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise PartnerResponseError(
                f'{where}: expected data {{"records": [...], "nextCursor": ..., "hasMore": ...}}, got {describe_shape(data)}'
            )
        has_more = data.get("hasMore")
        next_cursor = data.get("nextCursor")
        if not isinstance(has_more, bool):
            raise PartnerResponseError(f"{where}: /data/hasMore must be true or false, got {has_more!r}")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise PartnerResponseError(f"{where}: /data/nextCursor must be a string, got {describe_shape(next_cursor)}")
        if has_more and (not next_cursor or next_cursor == params.get("cursor")):
            raise PartnerResponseError(
                f"{where}: hasMore is true but nextCursor is {next_cursor!r}; stopping instead of asking for the "
                "same page forever"
            )
        return as_objects(data["records"]), next_cursor, has_more

    async def _numbered_pages(self, cursor: Any) -> AsyncIterator[Page]:
        size = self.adapter.config.page_size
        page_no, skip = 1, 0
        if isinstance(cursor, dict):
            page_no, skip = int(cursor.get("page", 1)), int(cursor.get("skip", 0))
        while True:
            described = f"GET {self._path()}?pageNo={page_no}&pageSize={size}"
            where = f"{self.adapter.name}: dataset {self.name!r}: {described}"
            data = await self._fetch({"pageNo": page_no, "pageSize": size})
            if data is None:
                data = []
            if not isinstance(data, list):
                raise PartnerResponseError(
                    f"{where}: expected data to be an array of records, got {describe_shape(data)}"
                )
            if len(data) < skip:
                raise PartnerResponseError(
                    f"{where}: the page now has {len(data)} records but {skip} were already ingested from it; the "
                    "dataset is not append-only in page order, so numbered paging would skip or repeat records"
                )
            full = len(data) >= size
            after = {"page": page_no + 1, "skip": 0} if full else {"page": page_no, "skip": len(data)}
            yield Page(items=as_objects(data[skip:]), cursor=after, request=described)
            if not full:
                return
            page_no, skip = page_no + 1, 0


def _day(value: str, pointer: str) -> tuple[date, datetime, datetime]:
    try:
        day = date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ItemRejected(f"not a calendar date (YYYY-MM-DD): {value!r}", pointer) from None
    start = datetime.combine(day, time(0), CST)
    return day, start, start + timedelta(days=1)


class GreenAppliancesStream(_DatasetStream):
    """Energy-labelled appliance purchases; credited grades only, one methodology per category."""

    name = "green_appliances"
    schema = "provincial-green-appliance"
    id_field = "orderId"
    description = "Green appliance purchases (China Energy Label grade), credited per unit bought"

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        config = self.adapter.config
        grade = item["energyGrade"]
        if grade not in config.credited_grades:
            return ()
        try:
            if item.get("buyerIdNo"):
                pointer = "/buyerIdNo"
                subject = ctx.subject("resident_id", item["buyerIdNo"])
            else:
                pointer = "/buyerMobile"
                subject = ctx.subject("mobile", item["buyerMobile"])
        except PrivacyError as exc:
            raise ItemRejected(str(exc), pointer) from None
        when = datetime.fromisoformat(item["purchaseTime"])
        category = item["category"]
        details: dict[str, str | int | float | bool | None] = {"category": category, "energy_grade": grade}
        if item.get("energyStandard"):
            details["energy_standard"] = item["energyStandard"]
        return (
            ctx.record(
                raw=item,
                partner_record_id=item["orderId"],
                subject=subject,
                scenario="green_appliance",
                start=when,
                region=item["regionCode"],
                activity=float(item["quantity"]),
                unit="unit",
                methodology=appliance_methodology_id(category, config.appliance_methodology_prefix),
                details=details,
            ),
        )


class _PeakUsageStream(_DatasetStream):
    """A utility's daily peak-hour usage per household, credited against a baseline."""

    id_field = "recordId"
    methodology_setting: ClassVar[str]

    def __init__(self, adapter: ProvincialBigDataAdapter) -> None:
        super().__init__(adapter)
        config = adapter.config
        self.trailing = TrailingBaseline(config.baseline_days, config.baseline_min_days)

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        config = self.adapter.config
        day, start, end = _day(item["usageDate"], "/usageDate")
        try:
            subject = ctx.subject("account", item["accountNo"])
        except PrivacyError as exc:
            raise ItemRejected(str(exc), "/accountNo") from None
        usage = float(item["peakUsageM3"])
        own, days_used = self.trailing.observe(ctx.state, subject["pseudonym"], day, usage)
        if item.get("baselineM3") is not None:
            baseline = float(item["baselineM3"])
            method = "partner: " + (item.get("baselineMethod") or "baseline sent with the reading")
        elif own is not None:
            baseline = own
            method = f"trailing mean of the household's peak usage on {days_used} of the previous {config.baseline_days} days"
        else:
            return ()  # still building this household's baseline
        if usage >= baseline:
            return ()  # no saving that day
        methodology = ctx.methodology(getattr(config, self.methodology_setting))
        details: dict[str, str | int | float | bool | None] = {}
        if item.get("peakWindow"):
            details["peak_window"] = item["peakWindow"]
        return (
            ctx.record(
                raw=item,
                partner_record_id=item["recordId"],
                subject=subject,
                scenario=methodology.scenario,
                start=start,
                end=end,
                region=item["regionCode"],
                activity=usage,
                unit="m3",
                methodology=methodology,
                baseline=baseline,
                baseline_method=method,
                details=details or None,
            ),
        )

    def flush(self, ctx: StreamContext, final: bool) -> Iterable[RecordLike]:
        if final:
            self.trailing.prune(ctx.state)
        return ()


class WaterUsageStream(_PeakUsageStream):
    """Household peak-hour tap water (sealed by default)."""

    name = "water_usage"
    schema = "provincial-water-usage"
    description = "Household peak-hour tap-water usage per day, credited below the household baseline"
    methodology_setting = "water_methodology"


class GasUsageStream(_PeakUsageStream):
    """Household peak-hour natural gas."""

    name = "gas_usage"
    schema = "provincial-gas-usage"
    description = "Household peak-hour natural gas usage per day, credited below the household baseline"
    methodology_setting = "gas_methodology"


class RooftopPVStream(_DatasetStream):
    """Daily generation of household rooftop PV installations."""

    name = "rooftop_pv"
    schema = "provincial-rooftop-pv"
    id_field = "genId"
    description = "Household rooftop PV generation per day, credited as displaced grid electricity"

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        config = self.adapter.config
        _, start, end = _day(item["genDate"], "/genDate")
        kwh = float(item["generationKwh"])
        capacity = float(item["capacityKw"])
        ceiling = capacity * config.pv_max_full_load_hours
        if kwh > ceiling:
            raise ItemRejected(
                f"{kwh} kWh in one day from {capacity} kWp is {kwh / capacity:.1f} full-load hours; more than "
                f"pv_max_full_load_hours ({config.pv_max_full_load_hours:g}) is not plausible, not credited",
                "/generationKwh",
            )
        methodology = ctx.methodology(config.pv_methodology)
        details: dict[str, str | int | float | bool | None] = {"capacity_kw": capacity}
        if item.get("installationId"):  # the grid's id of one household's installation: a keyed pseudonym
            details["installation"] = ctx.pseudonym("reference", item["installationId"])
        if item.get("connectionMode"):
            details["connection_mode"] = item["connectionMode"]
        return (
            ctx.record(
                raw=item,
                partner_record_id=item["genId"],
                subject=ctx.subject("account", item["consNo"]),
                scenario=methodology.scenario,
                start=start,
                end=end,
                region=item["regionCode"],
                activity=kwh,
                unit="kWh",
                methodology=methodology,
                details=details,
            ),
        )


# -- the adapter ------------------------------------------------------------------------------------------------------


class ProvincialBigDataAdapter(Adapter):
    """Pulls the four datasets from the provincial data-sharing gateway; see the module docstring."""

    name = "provincial_bigdata"
    version = "1.0.0"
    title = "Anhui big-data platform: green appliances, peak water and gas saving, rooftop PV"
    Settings = ProvincialBigDataSettings
    schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "provincial-green-appliance": load_builtin("provincial-green-appliance"),
        "provincial-water-usage": load_builtin("provincial-water-usage"),
        "provincial-gas-usage": load_builtin("provincial-gas-usage"),
        "provincial-rooftop-pv": load_builtin("provincial-rooftop-pv"),
        "provincial-gateway-envelope": load_builtin("provincial-gateway-envelope"),
    }
    stream_types = (GreenAppliancesStream, WaterUsageStream, GasUsageStream, RooftopPVStream)

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        super().__init__(settings, http)
        self.config = self.settings_as(ProvincialBigDataSettings)

    @cached_property
    def gateway(self) -> GatewayClient:
        """The one gateway client (created on first use; its PartnerClient is closed with the adapter)."""
        c = self.config
        cipher = None
        if c.sm4_key_secret is not None and c.mac_key_secret is not None:
            cipher = PayloadCipher.from_hex(c.sm4_key_secret.get_secret_value(), c.mac_key_secret.get_secret_value())
        config = GatewayConfig(
            app_key=c.app_key,
            app_secret=c.app_secret.get_secret_value(),
            sign_method=c.sign_method,
            token_path=c.token_path or None,
            token_leeway=c.token_leeway,
            success_codes=frozenset(c.success_codes),
            code_actions={code: CodeAction(action) for code, action in c.code_actions.items()},
            cipher=cipher,
        )
        return GatewayClient.for_adapter(self, c.base_url, config, retry=c.retry_policy(), timeout=c.timeout)

    def dataset_code(self, stream: str) -> str:
        return self.config.dataset_codes.get(stream, stream)
