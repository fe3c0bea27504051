"""A sandbox of the provincial data-sharing gateway: the interface of :mod:`.adapter`, on loopback, with synthetic data.

    with ProvincialSandbox(seed=7) as sandbox:
        settings = ProvincialBigDataSettings(**sandbox.settings())
        ...
        print(sandbox.stats.requests, sandbox.stats.refused)

What it serves (docs/adapters/provincial_bigdata.md has the whole interface):

- every request is checked by :class:`tanpuhui.sdk.gateway.GatewayVerifier`: ``X-Ca-*`` headers, HMAC-SHA256 or
  HMAC-SM3, timestamps within ±``window_seconds`` (900) of the sandbox clock, nonces used once. Refusals are
  envelopes at HTTP 200: ``3001`` signature invalid or headers missing, ``3002`` timestamp outside the window,
  ``3003`` nonce reused, ``3004`` unknown app key, ``3005`` signature method not accepted;
- ``POST /auth/v1/token`` (signed, body ``{"grantType": "client_credentials"}``): an access token valid
  ``token_ttl`` (1800) seconds, in ``{"code": "0000", "data": {"accessToken", "expiresIn", "tokenType"}}``;
- ``GET /share/v1/datasets/{dataset}/records``: ``Authorization: Bearer <token>`` (``2002`` unknown token,
  ``2001`` expired), ``4004`` unknown dataset, ``4001`` dataset not granted to the app, ``4002`` bad parameters.
  Cursor datasets take ``pageSize`` and ``cursor`` and answer ``{"code": "0000", "data": {"records",
  "nextCursor", "hasMore"}}``; numbered datasets (``rooftop_pv``) take ``pageNo`` and ``pageSize`` and answer
  ``{"flag": "200", "data": [...]}``; sealed datasets (``water_usage``) answer the data SM4-CBC sealed with an
  HMAC-SM3 tag (:class:`tanpuhui.sdk.gateway.PayloadCipher`).

The data (:class:`GatewayData`) is seeded and the same on every run: appliance purchases across Anhui's cities,
households' daily peak-hour water and gas usage, and rooftop PV generation, over ``days`` days from ``start``.
Identifiers are synthetic: resident IDs have valid check characters but are generated, mobiles are ``199`` + a
serial, account numbers carry the sandbox's own prefixes. A few bad items of the kinds in :data:`BAD_KINDS` are
mixed in (``bad``: count per kind, default one each), and :meth:`GatewayData.expected` says what a correct pull
makes of each dataset.

Faults: :meth:`ProvincialSandbox.fail_next` queues answers for data requests (an HTTP status such as 429 or 503,
with ``Retry-After`` when given, or a gateway code such as ``"1001"`` at HTTP 200);
:meth:`ProvincialSandbox.expire_tokens` makes every issued token answer ``2001``;
:meth:`ProvincialSandbox.tamper_next` corrupts the tag of the next sealed answers; :meth:`ProvincialSandbox.deny`
withdraws a dataset grant (``4001``).

:class:`ProvincialSandbox` (also known as ``SandboxGateway``) is the ASGI app and its state, usable in-process with
``httpx.ASGITransport``; ``with`` serves it on loopback. It is built on the sandbox kit
(:mod:`tanpuhui.testing.sandbox`): faults, tokens, cursors and stats come from there.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tanpuhui.sdk import GatewaySignatureError, GatewayVerifier, PayloadCipher
from tanpuhui.sdk.gateway import SIGN_METHODS, SignMethod
from tanpuhui.testing.sandbox import (
    OFFSET_CURSOR,
    EncodedItems,
    FirstServed,
    SandboxServer,
    ScheduledFault,
    TokenStore,
    bearer_token,
    json_response,
    positive_int,
)
from tanpuhui.testing.sandbox import SandboxStats as KitStats

from .methodologies import APPLIANCE_CATEGORIES

__all__ = [
    "BAD_KINDS",
    "CITIES",
    "TOKEN_PATH",
    "GatewayData",
    "ProvincialSandbox",
    "SandboxGateway",
    "SandboxStats",
    "records_path",
]

CST = timezone(timedelta(hours=8))
TOKEN_PATH = "/auth/v1/token"
_RECORDS_PREFIX = "/share/v1/datasets/"

BAD_KINDS: Mapping[str, tuple[str, ...]] = {
    "green_appliances": ("unknown_category", "no_offset", "bad_resident_id"),
    "water_usage": ("negative_usage", "missing_account", "duplicate_day"),
    "gas_usage": ("bad_date", "missing_region"),
    "rooftop_pv": ("negative_generation", "implausible_generation"),
}
"""Bad items per dataset. Schema-invalid: an appliance category outside the enum, a purchase time without offset, a
negative usage, a reading without account, a date written 2024/11/05, a reading without region, a negative
generation. Rejected by the adapter: a resident ID with a wrong check character, a second reading of the same
account and day, a day's generation beyond what the installed capacity can produce."""

SCHEMA_INVALID = frozenset(
    {
        "unknown_category",
        "no_offset",
        "negative_usage",
        "missing_account",
        "bad_date",
        "missing_region",
        "negative_generation",
    }
)

CITIES: tuple[tuple[str, str], ...] = (
    ("340100", "合肥"),
    ("340200", "芜湖"),
    ("340300", "蚌埠"),
    ("340400", "淮南"),
    ("340500", "马鞍山"),
    ("340600", "淮北"),
    ("340700", "铜陵"),
    ("340800", "安庆"),
    ("341000", "黄山"),
    ("341100", "滁州"),
    ("341200", "阜阳"),
    ("341300", "宿州"),
    ("341500", "六安"),
    ("341600", "亳州"),
    ("341700", "池州"),
    ("341800", "宣城"),
)
"""Anhui's prefecture-level cities with their GB/T 2260 codes; Hefei gets the most activity."""

_STANDARDS = {
    "air_conditioner": ("GB 21455-2019", "KFR-35GW/BP"),
    "refrigerator": ("GB 12021.2-2015", "BCD-300W"),
    "washing_machine": ("GB 12021.4-2013", "XQG80-B"),
    "electric_water_heater": ("GB 21519-2008", "DSZF-60"),
    "television": ("GB 24850-2020", "55E"),
}
_CATEGORY_WEIGHTS = (0.3, 0.25, 0.2, 0.1, 0.15)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def records_path(dataset: str) -> str:
    """The path of a dataset's records."""
    return f"{_RECORDS_PREFIX}{dataset}/records"


def _resident_id(rng: random.Random, region: str) -> str:
    district = region[:4] + rng.choice(("02", "03", "04"))
    born = date(1955, 1, 1) + timedelta(days=rng.randrange(45 * 365))
    body = f"{district}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + _CHECK[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def _city(rng: random.Random) -> tuple[str, str]:
    return CITIES[0] if rng.random() < 0.4 else rng.choice(CITIES)


class GatewayData:
    """The four datasets the sandbox serves, in serving order, and what a correct pull makes of them."""

    def __init__(
        self,
        seed: int = 7,
        *,
        start: date = date(2024, 11, 1),
        days: int = 10,
        purchases: int = 120,
        households: int = 24,
        installations: int = 12,
        bad: Mapping[str, int] | None = None,
    ) -> None:
        known = {kind for kinds in BAD_KINDS.values() for kind in kinds}
        unknown = set(bad or ()) - known
        if unknown:
            raise ValueError(f"unknown bad item kinds {sorted(unknown)}; known: {', '.join(sorted(known))}")
        if days < 1 or purchases < 0 or households < 0 or installations < 0:
            raise ValueError("days must be >= 1 and the counts >= 0")
        self.seed = seed
        self.start = start
        self.days = days
        self.bad_counts: dict[str, int] = {k: 1 for k in known} if bad is None else {k: bad.get(k, 0) for k in known}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.bad: dict[str, list[str]] = {k: [] for k in known}
        """Bad kind -> ids of the bad items of that kind (``""`` when the id itself is what is missing)."""
        self.bad_positions: dict[str, set[int]] = {}
        rng = random.Random(seed)
        self.items["green_appliances"] = self._appliances(random.Random(rng.random()), purchases)
        self.items["water_usage"] = self._usage(
            random.Random(rng.random()), "water_usage", households, "W", (0.11, 0.22), "06:30-08:30,18:00-21:00", False
        )
        self.items["gas_usage"] = self._usage(
            random.Random(rng.random()), "gas_usage", households, "G", (0.25, 0.6), "17:00-20:00", True
        )
        self.items["rooftop_pv"] = self._pv(random.Random(rng.random()), installations)
        for dataset, items in self.items.items():
            self.bad_positions[dataset] = {i for i, item in enumerate(items) if item.pop("_bad", None)}

    # -- generators --------------------------------------------------------------------------------------------

    def _mark(self, rng: random.Random, items: list[dict[str, Any]], dataset: str) -> list[tuple[str, int]]:
        """Pick distinct positions for the dataset's bad kinds (never the first items, never twice)."""
        picks: list[tuple[str, int]] = []
        free = list(range(min(3, len(items)), len(items)))
        rng.shuffle(free)
        for kind in BAD_KINDS[dataset]:
            for _ in range(self.bad_counts.get(kind, 0)):
                if not free:
                    raise ValueError(f"{dataset}: too few items for the bad items asked for")
                picks.append((kind, free.pop()))
        return picks

    def _appliances(self, rng: random.Random, purchases: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for _ in range(purchases):
            region, city = _city(rng)
            day = self.start + timedelta(days=rng.randrange(self.days))
            when = datetime(day.year, day.month, day.day, 9, tzinfo=CST) + timedelta(seconds=rng.randrange(12 * 3600))
            category = rng.choices(APPLIANCE_CATEGORIES, _CATEGORY_WEIGHTS)[0]
            standard, model = _STANDARDS[category]
            grade = rng.choices((1, 2, 3), (0.55, 0.3, 0.15))[0]
            item: dict[str, Any] = {
                "category": category,
                "energyGrade": grade,
                "energyStandard": standard,
                "model": f"{model}{rng.randrange(100, 999)}",
                "quantity": 2 if rng.random() < 0.06 else 1,
                "purchaseTime": when.isoformat(),
                "regionCode": region,
                "retailer": f"{city}示例家电{rng.randint(1, 6)}号店",
            }
            if rng.random() < 0.7:
                item["buyerIdNo"] = _resident_id(rng, region)
            else:
                item["buyerMobile"] = f"199{rng.randrange(10**8):08d}"
            items.append(item)
        items.sort(key=lambda i: i["purchaseTime"])
        for n, item in enumerate(items):
            order_id = f"GA{item['purchaseTime'][:10].replace('-', '')}{n:06d}"
            invoice = f"0340024{rng.randrange(10**5):05d}-{rng.randrange(10**8):08d}"
            items[n] = {"orderId": order_id, **item, "invoiceNo": invoice}
        for kind, pos in self._mark(rng, items, "green_appliances"):
            item = items[pos]
            item["_bad"] = kind
            self.bad[kind].append(item["orderId"])
            if kind == "unknown_category":
                item["category"] = "air_purifier"
            elif kind == "no_offset":
                item["purchaseTime"] = item["purchaseTime"][:19]
            elif kind == "bad_resident_id":
                item["energyGrade"] = 1  # uncredited grades are not looked at closely enough to be rejected
                item.pop("buyerMobile", None)
                good = item.get("buyerIdNo") or _resident_id(rng, item["regionCode"])
                item["buyerIdNo"] = good[:17] + _CHECK[(_CHECK.index(good[17]) + 1) % 11]
        return items

    def _usage(
        self,
        rng: random.Random,
        dataset: str,
        households: int,
        prefix: str,
        mean_range: tuple[float, float],
        window: str,
        with_baseline: bool,
    ) -> list[dict[str, Any]]:
        homes = []
        for h in range(households):
            region, _ = _city(rng)
            mean = rng.uniform(*mean_range)
            baseline = round(mean * rng.uniform(0.97, 1.08), 3) if with_baseline and rng.random() < 0.65 else None
            homes.append((h, region, mean, baseline))
        items: list[dict[str, Any]] = []
        for d in range(self.days):
            day = self.start + timedelta(days=d)
            for h, region, mean, baseline in homes:
                factor = rng.lognormvariate(0, 0.15) * (rng.uniform(0.6, 0.88) if rng.random() < 0.35 else 1.0)
                item: dict[str, Any] = {
                    # Opaque ids: a partner id travels in every record, so it must not spell out the account.
                    "recordId": f"{prefix}U{day:%Y%m%d}{len(items):06d}",
                    "accountNo": f"{prefix}{region}{h:06d}",
                    "meterNo": f"{prefix}M{region[2:4]}{h:07d}",
                    "usageDate": day.isoformat(),
                    "peakWindow": window,
                    "peakUsageM3": round(mean * factor, 3),
                    "regionCode": region,
                }
                if baseline is not None:
                    item["baselineM3"] = baseline
                    item["baselineMethod"] = "utility: household peak-hour mean, same month of the previous year"
                items.append(item)
        extra: list[tuple[int, dict[str, Any]]] = []
        for kind, pos in self._mark(rng, items, dataset):
            item = items[pos]
            if kind == "duplicate_day":
                copy = {**item, "recordId": item["recordId"] + "-R", "peakUsageM3": round(item["peakUsageM3"] * 0.5, 3)}
                copy["_bad"] = kind
                self.bad[kind].append(copy["recordId"])
                extra.append((pos + 1, copy))
                continue
            item["_bad"] = kind
            self.bad[kind].append(item["recordId"])
            if kind == "negative_usage":
                item["peakUsageM3"] = -0.05
            elif kind == "missing_account":
                del item["accountNo"]
            elif kind == "bad_date":
                item["usageDate"] = item["usageDate"].replace("-", "/")
            elif kind == "missing_region":
                del item["regionCode"]
        for pos, copy in sorted(extra, key=lambda e: e[0], reverse=True):
            items.insert(pos, copy)
        return items

    def _pv(self, rng: random.Random, installations: int) -> list[dict[str, Any]]:
        sites = []
        for n in range(installations):
            region, _ = _city(rng)
            capacity = rng.choice((3.6, 4.5, 5.4, 6.0, 8.1, 10.2))
            mode = "full_export" if rng.random() < 0.3 else "self_use_surplus_export"
            sites.append((n, region, capacity, mode))
        items: list[dict[str, Any]] = []
        for d in range(self.days):
            day = self.start + timedelta(days=d)
            weather = rng.uniform(0.35, 1.0)  # one sky over the province that day
            for n, region, capacity, mode in sites:
                cons_no = f"34{n + 1:08d}"
                items.append(
                    {
                        "genId": f"PVG{day:%Y%m%d}{len(items):06d}",
                        "consNo": cons_no,
                        "installationId": f"AHPV-{region}-{n + 1:05d}",
                        "capacityKw": capacity,
                        "genDate": day.isoformat(),
                        "generationKwh": round(capacity * 4.2 * weather * rng.uniform(0.85, 1.05), 2),
                        "connectionMode": mode,
                        "regionCode": region,
                    }
                )
        for kind, pos in self._mark(rng, items, "rooftop_pv"):
            item = items[pos]
            item["_bad"] = kind
            self.bad[kind].append(item["genId"])
            if kind == "negative_generation":
                item["generationKwh"] = -1.5
            elif kind == "implausible_generation":
                item["generationKwh"] = round(item["capacityKw"] * 14, 2)
        return items

    # -- the oracle --------------------------------------------------------------------------------------------

    def expected(
        self,
        dataset: str,
        *,
        credited_grades: Iterable[int] = (1,),
        baseline_days: int = 7,
        baseline_min_days: int = 3,
        pv_max_full_load_hours: float = 10.0,
        visible: int | None = None,
    ) -> dict[str, int]:
        """What a correct pull of the first ``visible`` items (all by default) gives, with these settings.

        ``records``: records made; ``schema_invalid``: items the schema rejects; ``rejected``: items the adapter
        rejects; ``quarantined``: both; ``uncredited``: valid items that give no record (a grade not credited, a
        household still building its baseline, a day without saving).
        """
        items = self.items[dataset][:visible]
        kinds = BAD_KINDS[dataset]
        bad_ids = {i for kind in kinds for i in self.bad[kind]}
        schema_invalid = rejected = records = 0
        grades = set(credited_grades)
        history: dict[str, dict[date, float]] = {}
        for item in items:
            item_id = item.get("orderId") or item.get("recordId") or item.get("genId") or ""
            kind = next((k for k in kinds if item_id in self.bad[k]), "") if item_id in bad_ids else ""
            if kind in SCHEMA_INVALID:
                schema_invalid += 1
                continue
            if kind == "implausible_generation" or (kind == "bad_resident_id" and item["energyGrade"] in grades):
                rejected += 1
                continue
            if dataset == "green_appliances":
                records += item["energyGrade"] in grades
            elif dataset == "rooftop_pv":
                records += item["generationKwh"] <= item["capacityKw"] * pv_max_full_load_hours
            else:
                days = history.setdefault(item["accountNo"], {})
                day = date.fromisoformat(item["usageDate"])
                if day in days:
                    rejected += 1
                    continue
                earlier = [v for d, v in days.items() if 0 < (day - d).days <= baseline_days]
                days[day] = item["peakUsageM3"]
                baseline = item.get("baselineM3")
                if baseline is None and len(earlier) >= baseline_min_days:
                    baseline = round(sum(earlier) / len(earlier), 6)  # as the adapter rounds it
                records += baseline is not None and item["peakUsageM3"] < baseline
        return {
            "items": len(items),
            "records": records,
            "schema_invalid": schema_invalid,
            "rejected": rejected,
            "quarantined": schema_invalid + rejected,
            "uncredited": len(items) - records - schema_invalid - rejected,
        }


@dataclass(slots=True)
class SandboxStats(KitStats):
    """What the sandbox served and refused (the kit's counters and the gateway's own); ``faults`` counts by gateway
    code or HTTP status, and ``bad_tag`` for a tampered integrity tag."""

    data_requests: int = 0
    sealed_responses: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Refusals by gateway code (signature, token, permission, parameter)."""


_SIGNATURE_CODES = {
    "missing": ("3001", "签名参数缺失"),
    "signature": ("3001", "签名错误"),
    "timestamp": ("3002", "时间戳超出有效期"),
    "nonce": ("3003", "nonce已使用"),
    "app_key": ("3004", "appKey不存在"),
    "method": ("3005", "签名算法不支持"),
}
_FAULT_MESSAGES = {"1001": "系统繁忙，请稍后重试", "1002": "请求过于频繁", "1003": "服务超时", "2001": "token已过期"}


class ProvincialSandbox(SandboxServer):
    """The gateway as an ASGI app (:attr:`app`) with its data and the knobs to steer it; ``with`` (or
    :meth:`start`) serves it on ``host`` (``127.0.0.1``), ``port`` (ephemeral by default).

    Requests are signed, not OAuth2: the kit's :class:`~tanpuhui.testing.sandbox.SandboxServer` with a token store
    of its own.
    """

    adapter = "provincial_bigdata"
    server_name = "provincial sandbox"

    def __init__(
        self,
        seed: int = 7,
        *,
        start: date = date(2024, 11, 1),
        days: int = 10,
        purchases: int = 120,
        households: int = 24,
        installations: int = 12,
        bad: Mapping[str, int] | None = None,
        app_key: str = "ak-sandbox-340000",
        app_secret: str | None = None,
        sm4_key: str | None = None,
        mac_key: str | None = None,
        methods: tuple[SignMethod, ...] = SIGN_METHODS,
        window_seconds: float = 900.0,
        token_ttl: int = 1800,
        page_size_cap: int = 1000,
        encrypted: Iterable[str] = ("water_usage",),
        numbered: Iterable[str] = ("rooftop_pv",),
        visible: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.data = GatewayData(
            seed,
            start=start,
            days=days,
            purchases=purchases,
            households=households,
            installations=installations,
            bad=bad,
        )
        self.app_key = app_key
        self.app_secret = app_secret or secrets.token_urlsafe(24)
        self.sm4_key = sm4_key or secrets.token_hex(16)
        """The SM4 key of sealed datasets, hex."""
        self.mac_key = mac_key or secrets.token_hex(32)
        """The HMAC-SM3 key of the payload tags, hex."""
        self.cipher = PayloadCipher.from_hex(self.sm4_key, self.mac_key)
        self.verifier = GatewayVerifier(
            {app_key: self.app_secret}, window_seconds=window_seconds, methods=methods, clock=clock
        )
        self.tokens = TokenStore(token_ttl, clock)
        self.page_size_cap = page_size_cap
        self.encrypted = set(encrypted)
        self.numbered = set(numbered)
        self.granted = set(self.data.items)
        totals = {name: len(items) for name, items in self.data.items.items()}
        self.visible = {name: min((visible or {}).get(name, total), total) for name, total in totals.items()}
        self._clock = clock
        self._items = {name: EncodedItems(items) for name, items in self.data.items.items()}
        self._bad = {name: FirstServed(positions) for name, positions in self.data.bad_positions.items()}
        self._tamper = 0
        self._lock = threading.Lock()
        self.stats: SandboxStats = SandboxStats()
        super().__init__(self.stats, host=host, port=port)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(_RECORDS_PREFIX + "{dataset}/records", self._records, methods=["GET"]),
        ]

    # -- settings ----------------------------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``[adapters.provincial_bigdata]`` values that reach this sandbox, secrets in clear (``overrides`` added).

        In a hub.toml the three secrets must be environment references; see :meth:`hub_settings`.
        """
        return {
            "base_url": self.url,
            "app_key": self.app_key,
            "app_secret": self.app_secret,
            "sm4_key_secret": self.sm4_key,
            "mac_key_secret": self.mac_key,
            **overrides,
        }

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """(settings table with the secrets as ``{env = ...}`` references, the environment that resolves them)."""
        env = {
            f"{env_prefix}APP_SECRET": self.app_secret,
            f"{env_prefix}SM4_KEY": self.sm4_key,
            f"{env_prefix}MAC_KEY": self.mac_key,
        }
        table: dict[str, Any] = {
            "base_url": self.url,
            "app_key": self.app_key,
            "app_secret": {"env": f"{env_prefix}APP_SECRET"},
            "sm4_key_secret": {"env": f"{env_prefix}SM4_KEY"},
            "mac_key_secret": {"env": f"{env_prefix}MAC_KEY"},
        }
        return table, env

    def secrets_env(self, prefix: str = "SANDBOX_PBD_") -> tuple[dict[str, Any], dict[str, str]]:
        """:meth:`hub_settings` with ``prefix`` (the name this method had first)."""
        return self.hub_settings(prefix)

    # -- knobs -------------------------------------------------------------------------------------------------

    def publish(self, dataset: str, count: int | None = None) -> None:
        """Make ``count`` more items of ``dataset`` visible (all when None)."""
        total = len(self.data.items[dataset])
        self.visible[dataset] = total if count is None else min(total, self.visible[dataset] + count)

    def expire_tokens(self) -> None:
        """Every token issued so far answers ``2001`` (expired) from now on."""
        self.tokens.expire_all()

    def fail_next(
        self, fault: int | str, *, count: int = 1, retry_after: float | None = None, dataset: str | None = None
    ) -> None:
        """Answer the next ``count`` data requests (of ``dataset``, or any) with an HTTP status or a gateway code."""
        status, code = (fault, None) if isinstance(fault, int) else (200, fault)
        self.faults.fail_next(status, count=count, retry_after=retry_after, code=code, scope=dataset)

    def tamper_next(self, count: int = 1) -> None:
        """Corrupt the integrity tag (``signData``) of the next ``count`` sealed answers."""
        with self._lock:
            self._tamper += count

    def deny(self, dataset: str) -> None:
        """Withdraw the app's grant for ``dataset`` (its requests answer ``4001``)."""
        self.granted.discard(dataset)

    def fault_response(self, fault: ScheduledFault) -> Response:
        if fault.code is None:
            doc = {"code": str(fault.status), "msg": f"sandbox fault injection (HTTP {fault.status})", "data": None}
            return json_response(fault.status, doc, fault.headers)
        message = _FAULT_MESSAGES.get(fault.code, "sandbox fault injection")
        return json_response(200, {"code": fault.code, "msg": message, "data": None}, fault.headers)

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def _verify(self, request: Request) -> Response | None:
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1").split("?", 1)[0] if isinstance(raw_path, bytes) else request.url.path
        body = await request.body()
        try:
            self.verifier.verify(request.method, path, request.scope.get("query_string", b""), request.headers, body)
        except GatewaySignatureError as exc:
            code, msg = _SIGNATURE_CODES.get(exc.reason, ("3001", "签名错误"))
            return self._refuse(code, f"{msg}: {exc}")
        return None

    def _refuse(self, code: str, msg: str, *, flag: bool = False) -> Response:
        self.stats.refused[code] += 1
        return json_response(200, {"flag" if flag else "code": code, "msg": msg, "data": None})

    async def _token(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.token_requests += 1
        refused = await self._verify(request)
        if refused is not None:
            return refused
        try:
            form = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            form = None
        if not isinstance(form, dict) or form.get("grantType") != "client_credentials":
            return self._refuse("4002", '参数错误: body must be {"grantType": "client_credentials"}')
        token = self.tokens.issue()
        self.stats.tokens_issued += 1
        data = {"accessToken": token, "expiresIn": self.tokens.ttl, "tokenType": "Bearer"}
        return json_response(200, {"code": "0000", "msg": "success", "data": data})

    async def _records(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.data_requests += 1
        refused = await self._verify(request)
        if refused is not None:
            return refused
        state = self.tokens.state(bearer_token(request))
        if state == "unknown":
            return self._refuse("2002", "token无效: missing or unknown access token")
        if state == "expired":
            return self._refuse("2001", "token已过期: the access token has expired")
        dataset = request.path_params["dataset"]
        if dataset not in self.data.items:
            return self._refuse("4004", f"数据集不存在: no dataset {dataset!r}")
        if dataset not in self.granted:
            return self._refuse("4001", f"无权限: the app is not granted dataset {dataset!r}")
        fault = self.scheduled_fault(self.stats.data_requests, scope=dataset)
        if fault is not None:
            return fault
        numbered = dataset in self.numbered
        params = request.query_params
        size = positive_int(params.get("pageSize"), 100)
        if size is None:
            return self._refuse("4002", "参数错误: pageSize must be a positive integer", flag=numbered)
        size = min(size, self.page_size_cap)
        visible = self.visible[dataset]
        payload: Any
        if numbered:
            page_no = positive_int(params.get("pageNo"), 1)
            if page_no is None:
                return self._refuse("4002", "参数错误: pageNo must be a positive integer", flag=True)
            begin = min((page_no - 1) * size, visible)
            served = range(begin, min(begin + size, visible))
            payload = self._items[dataset].array(served)
        else:
            window = OFFSET_CURSOR.window(
                params.get("cursor"), size, visible=visible, total=len(self.data.items[dataset])
            )
            if window is None:
                return self._refuse("4002", "参数错误: cursor is not one this gateway issued")
            served = range(window.begin, window.end)
            records = self._items[dataset].array(served)
            payload = {"records": records, "nextCursor": window.next_cursor, "hasMore": window.has_more}
        self.stats.items_served += len(served)
        self.stats.bad_items += self._bad[dataset].serve(served)
        status: dict[str, str] = {"flag": "200"} if numbered else {"code": "0000"}
        if dataset in self.encrypted:
            return json_response(200, {**status, "msg": "success", **self._sealed(payload)})
        return json_response(200, {**status, "msg": "success", "data": payload})

    def _sealed(self, payload: Any) -> dict[str, Any]:
        sealed = self.cipher.seal(payload)
        with self._lock:
            tamper = self._tamper > 0
            self._tamper -= tamper
        if tamper:
            tag = sealed["signData"]
            sealed["signData"] = ("0" if tag[0] != "0" else "1") + tag[1:]
            self.stats.faults["bad_tag"] += 1
        self.stats.sealed_responses += 1
        sealed["timestamp"] = str(int(self._clock() * 1000))
        return sealed


SandboxGateway = ProvincialSandbox
"""The same class by the name in-process users know it by (``httpx.ASGITransport(app=SandboxGateway(...).app)``)."""
