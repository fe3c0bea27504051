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

The data (:class:`GatewayData`, in :mod:`.sandbox_data`) is seeded and the same on every run: appliance
purchases, households' peak-hour water and gas usage and rooftop PV generation, with a few bad items of the kinds in
:data:`BAD_KINDS`; :meth:`GatewayData.expected` says what a correct pull makes of each dataset.

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

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
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

from .sandbox_data import BAD_KINDS, CITIES, GatewayData

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

TOKEN_PATH = "/auth/v1/token"
_RECORDS_PREFIX = "/share/v1/datasets/"


def records_path(dataset: str) -> str:
    """The path of a dataset's records."""
    return f"{_RECORDS_PREFIX}{dataset}/records"


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

    async def _refusal(self, request: Request, counter: str) -> Response | None:
        """Count a request (in ``stats.requests`` and in ``stats.<counter>``, its endpoint's own) and answer the
        refusal of its signature, if any. None: go on."""
        self.stats.requests += 1
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        return await self._verify(request)

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
        refused = await self._refusal(request, "token_requests")
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
        refused = await self._refusal(request, "data_requests")
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
