"""Hefei water utility adapter: monthly household bills become water-saving records.

Partner interface (see README.md)
=================================
``POST {base_url}/oauth/token``: OAuth2 client credentials, ``client_secret_post``.

``GET {base_url}/api/v2/bills?pageSize=N[&cursor=C]``: ``{"code": 0, "message": "ok", "data": {"list": [...],
"nextCursor": "...", "hasMore": true|false}}``. A ``code`` other than 0 is a partner error naming the code and
message. The cursor is opaque; the hub commits it with each page's records.

Normalization
=============
A bill whose ``usageM3`` is below ``lastYearM3`` gives one ``water_saving`` record: activity = this month's m3,
baseline = the same month last year, period = the billing month. A bill at or above its baseline gives none. The
account is credited by the keyed pseudonym of ``accountNo``; the mobile number is never used or kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import date, datetime, time, timedelta, timezone
from importlib import resources
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field

from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    HttpOptions,
    ItemRejected,
    Page,
    PartnerClient,
    PartnerResponseError,
    PartnerSettings,
    PullStream,
    RecordLike,
    StreamContext,
    as_objects,
    cursor_pages,
)

from .methodology import HOUSEHOLD_SAVING

__all__ = ["BillsStream", "HefeiWaterAdapter", "HefeiWaterSettings"]

CST = timezone(timedelta(hours=8))


def _schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((resources.files(__package__) / "schemas" / f"{name}.schema.json").read_bytes())
    return doc


class HefeiWaterSettings(PartnerSettings):
    """``[adapters.hefei_water]`` in hub.toml: the utility's API (``base_url``, OAuth2, retries) and paging."""

    # The utility's token endpoint wants the credentials in the form body, not in a Basic header.
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_post"
    page_size: int = Field(200, ge=1, le=1000)


class BillsStream(PullStream):
    """``GET /api/v2/bills``: one record per bill below the same month last year."""

    name = "bills"
    schema = "hefei-water-bill"
    id_field = "billId"
    description = "Monthly household water bills, credited when below the same month of the previous year"

    adapter: HefeiWaterAdapter

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        # The SDK runs the loop: GET /api/v2/bills?pageSize=N[&cursor=C] until a page says hasMore is false.
        size = self.adapter.config.page_size
        async for page in cursor_pages("/api/v2/bills", cursor, self._page, size=size, size_param="pageSize"):
            yield page

    async def _page(self, params: dict[str, Any], described: str) -> tuple[list[dict[str, Any]], str | None, bool]:
        """One page: its bills, the cursor after them and whether there are more."""
        doc = await self.adapter.client.get_json("/api/v2/bills", params=params)
        items, next_cursor, has_more = self._envelope(doc, f"{self.adapter.name}: {described}")
        if has_more and next_cursor in (None, params.get("cursor")):
            raise PartnerResponseError(f"{self.adapter.name}: {described}: hasMore is true but no new nextCursor")
        return items, next_cursor, has_more

    @staticmethod
    def _envelope(doc: Any, where: str) -> tuple[list[dict[str, Any]], str | None, bool]:
        if not isinstance(doc, dict) or doc.get("code") != 0:
            code = doc.get("code") if isinstance(doc, dict) else None
            message = doc.get("message") if isinstance(doc, dict) else None
            raise PartnerResponseError(f"{where}: the utility answered code {code!r} ({message!r}); success is 0")
        data = doc.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("list"), list):
            raise PartnerResponseError(f'{where}: expected data {{"list": [...], "nextCursor": ..., "hasMore": ...}}')
        next_cursor = data.get("nextCursor")
        items = as_objects(data["list"])
        return items, next_cursor if isinstance(next_cursor, str) else None, data.get("hasMore") is True

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        usage, baseline = float(item["usageM3"]), float(item["lastYearM3"])
        if usage >= baseline:
            return ()
        year, month = (int(p) for p in item["period"].split("-"))
        start = datetime.combine(date(year, month, 1), time(), CST)
        end = datetime.combine(date(year + month // 12, month % 12 + 1, 1), time(), CST)
        if date.fromisoformat(item["readDate"]) < start.date():
            raise ItemRejected(f"read on {item['readDate']}, before its billing month {item['period']}", "/readDate")
        return (
            ctx.record(
                raw=item,
                partner_record_id=item["billId"],
                subject=ctx.subject("account", item["accountNo"]),
                scenario=HOUSEHOLD_SAVING.scenario,
                start=start,
                end=end,
                region=item["district"],
                activity=usage,
                unit="m3",
                methodology=HOUSEHOLD_SAVING.id,
                baseline=baseline,
                baseline_method="the household's usage in the same month of the previous year (utility billing data)",
                details={"period": item["period"]},
            ),
        )


class HefeiWaterAdapter(Adapter):
    """A municipal water utility's billing API (third-party example adapter)."""

    name = "hefei_water"
    version = "0.1.0"
    title = "Hefei water utility: household tap-water saving (example third-party adapter)"
    Settings = HefeiWaterSettings
    stream_types = (BillsStream,)
    schemas: ClassVar[dict[str, dict[str, Any]]] = {"hefei-water-bill": _schema("hefei-water-bill")}

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        super().__init__(settings, http)
        self.config = self.settings_as(HefeiWaterSettings)
        self._client: PartnerClient | None = None

    @property
    def client(self) -> PartnerClient:
        """The utility's API client (created on first use, closed with the adapter)."""
        if self._client is None:
            self._client = self.oauth2_client(self.config)
        return self._client
