"""Yangtze River Delta (YRD) scenario platforms adapter: Shanghai, Zhejiang and Jiangsu records of Anhui residents.

Partner interface
=================
No public YRD interface or mutual-recognition list was found; Shanghai (rules 沪环规〔2025〕10号) and Zhejiang
(浙里办 "浙江碳普惠") run platforms of their own. What follows is the interface this adapter speaks, modelled on the
conventions of Chinese government API gateways; **a real partner's interface document rules**, and paths, auth
method, envelope success codes, platforms and the recognition tables are settings.
docs/adapters/yrd_scenarios.md has the same description with examples.

The hub talks to one or more *endpoints* (``[adapters.yrd_scenarios.endpoints.NAME]``). An endpoint is either a
YRD data exchange serving all three platforms (records carry a ``platform`` field), or one platform's own API
(``platforms = ["shanghai"]``); both speak the same interface:

``POST {token_url}`` (default ``{base_url}/oauth/token``)
    OAuth2 client credentials per endpoint (``client_secret_basic``, or ``client_secret_post``).

``GET {scenarios_path}`` (default ``/v1/scenarios``)
    ``{"code": "0000", "msg": "success", "data": {"version": "...", "items": [scenario, ...]}}``: the platforms'
    scenario catalog (schema ``yrd-scenario``). Read whole by the ``catalog`` stream.

``GET {records_path}?limit=N[&cursor=C]`` (default ``/v1/records``)
    ``{"code": "0000", "msg": "success", "data": {"items": [record, ...], "next_cursor": "...", "has_more": bool}}``:
    a change feed (schema ``yrd-record``) of the records of Anhui residents who authorised sharing; a record whose
    status changes appears again. The cursor is opaque and kept per endpoint.

Any ``code`` other than the configured success codes is a :class:`~tanpuhui.sdk.PartnerResponseError` naming the
code and message. Retries (429 with ``Retry-After``, 5xx, timeouts), token expiry and a token revoked early are
handled by :class:`~tanpuhui.sdk.PartnerClient`.

Streams
=======
- ``catalog`` (pull): the scenario catalog. It produces no records. Each scenario's treatment under the current
  tables is kept in the stream state; a scenario whose records could never be credited (its methodology is not
  recognised and the scenario maps to none of ours, or a table names a methodology the hub lacks) is quarantined
  with the fix, so operators see the gap before records arrive. The catalog is reviewed when it or the tables
  change (the cursor is their digest), not on every run. The records streams do not need the catalog: every record
  carries its own methodology code and version, and mutual recognition is decided per methodology, so a pushed
  record (handled synchronously, with no chance to fetch anything) is normalized exactly like a pulled one.
- ``records`` (pull): the change feed above, from every endpoint in turn; cursor ``{endpoint: cursor}``.
- ``records_push`` (push): the same records pushed by the platforms, signed with Standard Webhooks
  (``webhook_secrets``); same normalization (:class:`.recognition.RecordNormalizer`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from functools import partial
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    ConfigError,
    HttpOptions,
    ItemRejected,
    MethodologyError,
    OAuth2Settings,
    Page,
    PartnerClient,
    PartnerResponseError,
    PullStream,
    PushStream,
    RecordLike,
    RetrySettings,
    StreamContext,
    as_objects,
    cursor_fields,
    cursor_pages,
    describe_shape,
)

from .recognition import Platform, RecordNormalizer

__all__ = [
    "CatalogStream",
    "EndpointSettings",
    "PlatformSettings",
    "RecordsPushStream",
    "RecordsStream",
    "YrdScenariosAdapter",
    "YrdScenariosSettings",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PLATFORM = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
_SUBJECT_ORDER: tuple[Literal["mobile", "resident_id"], ...] = ("mobile", "resident_id")
_METHODOLOGY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,127}$")


class PlatformSettings(BaseModel):
    """One YRD platform: display name and the GB/T 2260 region used when a record names none."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    region: str = Field(pattern=r"^[1-8][0-9]{5}$")


DEFAULT_PLATFORMS: dict[str, PlatformSettings] = {
    "shanghai": PlatformSettings(name="上海碳普惠 (Shanghai carbon-inclusion platform)", region="310000"),
    "zhejiang": PlatformSettings(name="浙江碳普惠 (Zhejiang carbon-inclusion platform, 浙里办)", region="330000"),
    "jiangsu": PlatformSettings(name="江苏碳普惠 (Jiangsu carbon-inclusion platform)", region="320000"),
}
"""Platform ids as the modelled exchange names them; configurable, since no public list exists."""

DEFAULT_UNIT_ALIASES: dict[str, str] = {
    "km": "pkm",
    "公里": "pkm",
    "kwh": "kWh",
    "度": "kWh",
    "千瓦时": "kWh",
    "立方米": "m3",
    "m³": "m3",
}
"""Units meaning the same as our methodologies' units, for re-quantification. ``km`` is ``pkm`` because every
record is one resident's own behaviour: one person travelling k km is k passenger-km."""


class EndpointSettings(OAuth2Settings):
    """``[adapters.yrd_scenarios.endpoints.NAME]``: one YRD data exchange, or one platform's own API.

    Its API root and OAuth2 client credentials (:class:`~tanpuhui.sdk.OAuth2Settings`), and the fields below.
    """

    platforms: list[str] = Field(min_length=1, description="the platforms whose records this endpoint serves")
    records_path: str = "/v1/records"
    scenarios_path: str = "/v1/scenarios"


class YrdScenariosSettings(AdapterSettings, RetrySettings):
    """``[adapters.yrd_scenarios]`` in hub.toml.

    ``retry_*`` and ``timeout`` (:class:`~tanpuhui.sdk.RetrySettings`) apply to every endpoint.
    """

    endpoints: dict[str, EndpointSettings] = Field(
        default_factory=dict, description="where to pull from; none for a push-only deployment"
    )
    platforms: dict[str, PlatformSettings] = Field(default_factory=lambda: dict(DEFAULT_PLATFORMS))
    recognition: dict[str, str] = Field(
        default_factory=dict,
        description='mutual recognition: origin methodology "CODE" or "CODE@VERSION" -> our methodology id; '
        "empty by default, because no official mutual-recognition list was found",
    )
    scenario_methodologies: dict[str, str] = Field(
        default_factory=dict,
        description='"platform:scenario_id" (or "scenario_id") -> our methodology id, to re-quantify records of an '
        "unrecognised methodology that report an activity",
    )
    unit_aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_UNIT_ALIASES))
    subject_order: list[Literal["mobile", "resident_id"]] = Field(
        default_factory=lambda: list(_SUBJECT_ORDER),
        min_length=1,
        description="which identifier names the resident when a record has both; mobile first, as the transit "
        "card adapter, so the same person's trip from both sources meets in one behaviour fingerprint",
    )
    webhook_secrets: list[str] = Field(default_factory=list, description="Standard Webhooks secrets for pushes")
    push_platforms: list[str] | None = Field(None, description="platforms allowed to push; default: all known")
    success_codes: list[str] = Field(default_factory=lambda: ["0000"], min_length=1)
    page_size: int = Field(500, ge=1, le=5000, description="limit= asked per records page")
    withdrawn_log_size: int = Field(1000, ge=0, le=100_000, description="credited/cancelled record ids kept in state")

    @model_validator(mode="after")
    def _consistent(self) -> YrdScenariosSettings:
        for pid in self.platforms:
            if not _PLATFORM.match(pid):
                raise ValueError(f"platforms: {pid!r} is not a platform id ([a-z][a-z0-9_-]{{1,31}})")
        known = set(self.platforms)
        for name, endpoint in self.endpoints.items():
            if not _NAME.match(name):
                raise ValueError(f"endpoints: {name!r} is not a name ([a-z][a-z0-9_]*)")
            unknown = set(endpoint.platforms) - known
            if unknown:
                raise ValueError(
                    f"endpoints.{name}.platforms: {', '.join(sorted(unknown))} not among platforms "
                    f"({', '.join(sorted(known))})"
                )
        if self.push_platforms is not None and set(self.push_platforms) - known:
            raise ValueError(
                f"push_platforms: {', '.join(sorted(set(self.push_platforms) - known))} not among platforms"
            )
        for table in ("recognition", "scenario_methodologies"):
            for key, value in getattr(self, table).items():
                if not _METHODOLOGY_ID.match(value):
                    raise ValueError(f"{table}.{key}: {value!r} is not a methodology id (e.g. tph.transit.metro)")
        return self


class CatalogStream(PullStream):
    """The platforms' scenario catalog: no records; each scenario's treatment kept in state, gaps quarantined.

    A scenario no table covers, or whose table entry names a methodology the hub does not have, is quarantined
    with the fix; replaying the entry after fixing the tables resolves it.
    """

    name = "catalog"
    schema = "yrd-scenario"
    id_field = "scenario_id"
    description = "Scenario catalog of the YRD platforms; reports scenarios the recognition tables do not cover"

    adapter: YrdScenariosAdapter

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        # The cursor is a digest of each endpoint's catalog and of our tables: a catalog is reviewed (and its gaps
        # quarantined) when either changed, not again on every run.
        digests: dict[str, Any] = dict(cursor) if isinstance(cursor, dict) else {}
        config = self.adapter.config
        tables = [config.recognition, config.scenario_methodologies]
        for name, endpoint in self.adapter.endpoints().items():
            described = f"GET {endpoint.scenarios_path}"
            data = await self.adapter.get_data(name, endpoint.scenarios_path, described)
            where = f"{self.adapter.name}: endpoint {name}: {described}"
            if not isinstance(data, dict) or not isinstance(data.get("items"), list):
                raise PartnerResponseError(
                    f'{where}: expected data {{"version": ..., "items": [...]}}, got {describe_shape(data)}'
                )
            digest = hashlib.sha256(orjson.dumps([data["items"], tables], option=orjson.OPT_SORT_KEYS)).hexdigest()
            ctx.state.setdefault("versions", {})[name] = data.get("version")
            if digests.get(name) == digest:
                continue
            digests = {**digests, name: digest}
            items = as_objects(data["items"])
            yield Page(items=items, cursor=digests, request=f"endpoint {name}: {described}")

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        platform, scenario_id = item["platform"], item["scenario_id"]
        code, version = item["methodology_code"], item["methodology_version"]
        normalizer = self.adapter.normalizer
        if platform not in normalizer.platforms:
            raise ItemRejected(
                f"unknown platform {platform!r}; known: {', '.join(sorted(normalizer.platforms))}", "/platform"
            )
        treatment, target = normalizer.treatment(platform, scenario_id, code, version)
        scenarios: dict[str, dict[str, Any]] = ctx.state.setdefault("scenarios", {})
        scenarios[f"{platform}:{scenario_id}"] = {
            "name": item["name"],
            "methodology_code": code,
            "methodology_version": version,
            "treatment": treatment,
        }
        if target is None:
            raise ItemRejected([normalizer.uncovered(platform, scenario_id, code, version)])
        try:
            ctx.methodology(target)
        except MethodologyError as exc:
            raise ItemRejected(
                f"{platform} scenario {scenario_id} ({code} v{version}) is {treatment}, which cannot be used: {exc}",
                "/methodology_code",
            ) from None
        return ()


class _Records:
    """What the pulled and the pushed records share: the record schema, and normalizing by the adapter's
    :class:`RecordNormalizer`, which credits only records of the platforms in ``serving``."""

    schema: ClassVar[str] = "yrd-record"
    id_field: ClassVar[str] = "record_id"

    adapter: YrdScenariosAdapter
    serving: frozenset[str] | None = None
    """The platforms whose records are credited; None: any platform the hub knows (e.g. a quarantine replay)."""

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        return self.adapter.normalizer.normalize(item, ctx, self.serving)


class RecordsStream(_Records, PullStream):
    """The records change feed of every endpoint in turn (``GET /v1/records``); cursor ``{endpoint: cursor}``.

    While paging, ``serving`` holds the platforms of the endpoint being read (None between runs).
    """

    name = "records"
    description = "Scenario records of Anhui residents who authorised sharing, from the YRD platforms"

    adapter: YrdScenariosAdapter

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        positions: dict[str, Any] = dict(cursor) if isinstance(cursor, dict) else {}
        size = self.adapter.config.page_size
        try:
            for name, endpoint in self.adapter.endpoints().items():
                # Records from this endpoint must belong to a platform it serves (see RecordNormalizer.normalize).
                self.serving = frozenset(endpoint.platforms)
                fetch = partial(self._feed_page, name, endpoint.records_path)
                async for page in cursor_pages(
                    endpoint.records_path, positions.get(name), fetch, size=size, size_param="limit"
                ):
                    positions = {**positions, name: page.cursor}
                    yield Page(items=page.items, cursor=positions, request=f"endpoint {name}: {page.request}")
        finally:
            self.serving = None

    async def _feed_page(
        self, endpoint: str, path: str, params: dict[str, Any], described: str
    ) -> tuple[list[dict[str, Any]], str | None, bool]:
        """One page of ``endpoint``'s records feed: its items, ``next_cursor`` and ``has_more``, checked."""
        data = await self.adapter.get_data(endpoint, path, described, params)
        return _feed(data, f"{self.adapter.name}: endpoint {endpoint}: {described}", params.get("cursor"))


class RecordsPushStream(_Records, PushStream):
    """Records pushed by the YRD platforms (Standard Webhooks, ``webhook_secrets``); normalized like pulled ones,
    from the platforms ``push_platforms`` names (any when unset)."""

    name = "records_push"
    description = "Scenario records pushed by the YRD platforms (signed webhooks)"

    adapter: YrdScenariosAdapter

    def __init__(self, adapter: YrdScenariosAdapter) -> None:
        super().__init__(adapter)
        allowed = adapter.config.push_platforms
        self.serving = frozenset(allowed) if allowed is not None else None


class YrdScenariosAdapter(Adapter):
    """Pulls and receives YRD scenario records; see the module docstring for the interface."""

    name = "yrd_scenarios"
    version = "1.0.0"
    title = "Yangtze River Delta scenario platforms (Shanghai, Zhejiang, Jiangsu): records of Anhui residents"
    Settings = YrdScenariosSettings
    schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "yrd-scenario": load_builtin("yrd-scenario"),
        "yrd-record": load_builtin("yrd-record"),
    }
    stream_types = (CatalogStream, RecordsStream, RecordsPushStream)

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        super().__init__(settings, http)
        self.config = self.settings_as(YrdScenariosSettings)
        self.normalizer = RecordNormalizer(
            adapter=self.name,
            platforms={pid: Platform(pid, p.name, p.region) for pid, p in self.config.platforms.items()},
            recognition=self.config.recognition,
            scenario_methodologies=self.config.scenario_methodologies,
            unit_aliases=self.config.unit_aliases,
            subject_order=self.config.subject_order,
            withdrawn_log_size=self.config.withdrawn_log_size,
        )
        self._endpoint_clients: dict[str, PartnerClient] = {}

    def endpoints(self) -> Mapping[str, EndpointSettings]:
        """The configured endpoints, by name; a :class:`ConfigError` when there are none to pull from."""
        if not self.config.endpoints:
            raise ConfigError(
                f"adapter {self.name}: no [adapters.{self.name}.endpoints.NAME] table, so there is nothing to pull "
                "(pushes to records_push still work)"
            )
        return {name: self.config.endpoints[name] for name in sorted(self.config.endpoints)}

    def client(self, endpoint: str) -> PartnerClient:
        """The partner client of one endpoint (created on first use, closed with the adapter)."""
        found = self._endpoint_clients.get(endpoint)
        if found is None:
            found = self._endpoint_clients[endpoint] = self.oauth2_client(self.config.endpoints[endpoint], self.config)
        return found

    async def get_data(self, endpoint: str, path: str, described: str, params: dict[str, Any] | None = None) -> Any:
        """GET an enveloped resource and return its ``data``; a non-success ``code`` is a PartnerResponseError."""
        doc = await self.client(endpoint).get_json(path, params=params)
        where = f"{self.name}: endpoint {endpoint}: {described}"
        if not isinstance(doc, dict) or "code" not in doc:
            raise PartnerResponseError(
                f'{where}: expected {{"code": "0000", "msg": ..., "data": ...}}, got {describe_shape(doc)}'
            )
        code = str(doc["code"])
        if code not in self.config.success_codes:
            raise PartnerResponseError(f"{where}: the exchange answered code {code!r}: {str(doc.get('msg', ''))[:200]}")
        return doc.get("data")


def _feed(data: Any, where: str, asked: Any) -> tuple[list[dict[str, Any]], str | None, bool]:
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise PartnerResponseError(
            f'{where}: expected data {{"items": [...], "next_cursor": ..., "has_more": ...}}, got {describe_shape(data)}'
        )
    next_cursor, has_more = cursor_fields(data, where, "/data", asked)
    return as_objects(data["items"]), next_cursor, has_more
