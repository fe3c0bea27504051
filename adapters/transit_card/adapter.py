"""Transit card operator adapter: metro tap-in/tap-out pairs and single-tap bus journeys become ``pkm`` records.

Partner interface
=================
No public interface of an Anhui card-clearing operator was found (JT/T 978.4-2015 is file-based between the
clearing centre and its members). What follows is the interface this adapter speaks, modelled on the fields of the
Shenzhen Tong open dataset; **the real partner's interface document rules**, and the paths, the auth method and the
methodologies are settings so a deployment can follow it without code changes. docs/adapters/transit_card.md has
the same description with examples.

``POST {token_url}`` (default ``{base_url}/oauth/token``)
    OAuth2 client credentials, ``client_secret_basic`` (``client_secret_post`` configurable), optional ``scope``.
    Answers ``{"access_token": "...", "token_type": "Bearer", "expires_in": 1800}``.

``GET {network_path}`` (default ``/v1/network``)
    The distance table, schema ``transit-card-network``: lines with their ordered stops and cumulative km;
    stops sharing a ``station`` on two metro lines are a transfer; bus lines carry ``avg_trip_km``. Fetched once
    per run, before the first page is handed to the hub, and validated; a bad table stops the run with a
    :class:`~tanpuhui.sdk.PartnerResponseError` naming the JSON pointer.

``GET {transactions_path}?limit=N[&cursor=C]`` (default ``/v1/transactions``)
    ``{"data": [transaction, ...], "next_cursor": "...", "has_more": true|false}``, transactions (schema
    ``transit-card-trip``) ordered by ``deal_time``. The cursor is opaque; the hub stores ``next_cursor`` with the
    page's records and the next run resumes from it. ``has_more: false`` ends the run, and its ``next_cursor``
    (or the request cursor when the partner sends none) is kept for the next incremental run. A page that answers
    ``has_more: true`` with the cursor it was asked for would loop forever: the run stops with a
    :class:`~tanpuhui.sdk.PartnerResponseError`.

    ``&segment=I&segments=N`` (a partitioned stream, ``partitions = {transactions = N}``): only the transactions
    whose holder (``account_mobile``, else ``card_no``) has CRC-32 modulo ``N`` equal to ``I``, with cursors of
    their own. All taps of one holder are in one part, so pairing and the daily trip cap work within each part.

Retries (429 with ``Retry-After``, 5xx, timeouts), token expiry and a token revoked early (one re-fetch on a 401)
are handled by :class:`~tanpuhui.sdk.PartnerClient`.

Normalization
=============
- Subject: the account's mobile number when the transaction carries ``account_mobile`` (QR-code accounts), else
  the card number; both only as keyed pseudonyms, also in the stream state.
- ``bus``: one record, distance = the line's ``avg_trip_km`` (methodology ``tph.transit.bus``).
- ``metro_in``: held in ``ctx.state["open"]`` under the subject's pseudonym until its tap-out; a second tap-in
  before any tap-out gives up the first one (quarantined: "tap-in without tap-out").
- ``metro_out``: paired with the subject's open tap-in; distance = shortest path over the metro network
  (methodology ``tph.transit.metro``); record id from ``"<tap-in txn>+<tap-out txn>"``, period from tap-in to
  tap-out. A tap-out without tap-in, a journey longer than ``max_journey_minutes`` and a tap-in and tap-out at the
  same station are quarantined, not credited.
- After each page, tap-ins older than ``max_journey_minutes`` before the latest tap time seen are given up
  (quarantined). Recent ones stay held across runs: their tap-out may come in the next one.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from functools import cached_property
from itertools import count
from typing import Any, ClassVar

from pydantic import Field

from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    HttpOptions,
    ItemRejected,
    Page,
    PartnerClient,
    PartnerResponseError,
    PartnerSettings,
    PrivacyError,
    Problem,
    PullStream,
    RecordLike,
    StreamContext,
    as_objects,
    cursor_fields,
    cursor_pages,
    describe_shape,
)

from .network import Network

__all__ = ["TransactionsStream", "TransitCardAdapter", "TransitCardSettings"]


class TransitCardSettings(PartnerSettings):
    """``[adapters.transit_card]`` in hub.toml: the partner API's (:class:`~tanpuhui.sdk.PartnerSettings`) and these."""

    page_size: int = Field(default=500, ge=1, le=5000, description="limit= asked per transactions page")
    max_journey_minutes: int = Field(
        default=240,
        ge=1,
        le=24 * 60,
        description="a tap-in with no tap-out this long before the latest tap seen is given up (quarantined)",
    )
    region: str = Field(
        default="340100", pattern=r"^[1-8][0-9]{5}$", description="GB/T 2260 code used when a transaction has none"
    )
    network_path: str = "/v1/network"
    transactions_path: str = "/v1/transactions"
    metro_methodology: str = "tph.transit.metro"
    bus_methodology: str = "tph.transit.bus"


_SUBJECT_CACHE_SIZE = 50_000
"""Identifiers (per kind) whose pseudonym is kept in memory, ~220 bytes each: a tap-out finds its tap-in's."""
_TIME_CACHE_SIZE = 16_384


def _tap_time(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ItemRejected(f"not an RFC 3339 date-time: {value!r}", "/deal_time") from None
    if when.tzinfo is None:
        raise ItemRejected(f"date-time {value!r} has no UTC offset (expected e.g. +08:00)", "/deal_time")
    return when


class TransactionsStream(PullStream):
    """Card transactions (``GET /v1/transactions``), one record per bus tap and per metro tap-in/tap-out pair."""

    name = "transactions"
    schema = "transit-card-trip"
    id_field = "txn_id"
    prefetch = True  # pages() only reads the network it installed before its first page: safe to run ahead
    partitionable = True  # the partner splits the feed by holder (segment/segments): see the module docstring
    description = "Card transactions: bus taps and metro tap-in/tap-out pairs, credited in passenger-km"

    adapter: TransitCardAdapter

    def __init__(self, adapter: TransitCardAdapter) -> None:
        super().__init__(adapter)
        self.network: Network | None = None
        """The distance table of the current run (kept until the next run fetches it again)."""
        self._latest_text = ""
        self._latest_ts = 0.0
        self._subjects_ctx: StreamContext | None = None
        self._by_mobile: dict[str, str] = {}
        self._by_card: dict[str, str] = {}
        self._times: dict[str, tuple[datetime, float]] = {}
        self._expiry: list[tuple[float, int, str, dict[str, Any]]] = []
        """Held tap-ins by time (a heap of (unix time, tie-break, subject key, tap-in)) for :meth:`flush`; entries
        whose tap-in has been paired or replaced since are skipped when they come up."""
        self._expiry_of: dict[str, dict[str, Any]] | None = None
        """The ``ctx.state["open"]`` map that :attr:`_expiry` indexes (another one -> rebuilt from it)."""
        self._tie = count()

    # -- pulling -----------------------------------------------------------------------------------------------

    def use_network(self, doc: Any) -> Network:
        """Validate and install a distance table (what each run does with ``GET /v1/network``)."""
        self.network = Network.from_document(doc, f"{self.adapter.name}: GET {self.adapter.config.network_path}")
        return self.network

    async def load_network(self) -> Network:
        """Fetch, validate and install the partner's distance table."""
        doc = await self.adapter.client.get_json(self.adapter.config.network_path)
        return self.use_network(doc)

    async def prepare(self, ctx: StreamContext) -> None:
        """Replays and other work outside a pull run need the distance table too."""
        if self.network is None:
            await self.load_network()

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        config = self.adapter.config
        path = config.transactions_path

        part = self.partition
        segment = {"segment": part.index, "segments": part.count} if part is not None else {}

        async def fetch(params: dict[str, Any], described: str) -> tuple[list[dict[str, Any]], str | None, bool]:
            doc = await self.adapter.client.get_json(path, params={**params, **segment})
            return self._envelope(doc, described, params.get("cursor"))

        fresh_network = False
        async for page in cursor_pages(path, cursor, fetch, size=config.page_size, size_param="limit"):
            if not fresh_network:  # each run reloads the distance table once its first page has answered
                await self.load_network()
                fresh_network = True
            yield page

    def _envelope(self, doc: Any, described: str, asked: Any) -> tuple[list[dict[str, Any]], str | None, bool]:
        where = f"{self.adapter.name}: {described}"
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise PartnerResponseError(
                f'{where}: expected {{"data": [...], "next_cursor": ..., "has_more": ...}}, got {describe_shape(doc)}'
            )
        next_cursor, has_more = cursor_fields(doc, where, "", asked)
        return as_objects(doc["data"]), next_cursor, has_more

    # -- normalizing -------------------------------------------------------------------------------------------

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        network = self.network
        if network is None:
            raise ItemRejected(
                f"no distance table loaded: {self.adapter.config.network_path} is fetched by a pull run "
                "or by prepare() before a replay"
            )
        when, ts = self._time(item.get("deal_time"))
        state = ctx.state
        if ts > self._latest(state):
            state["latest"] = item["deal_time"]
            self._latest_text, self._latest_ts = item["deal_time"], ts
        deal_type = item.get("deal_type")
        if deal_type == "bus":
            return (self._bus(item, when, network, ctx),)
        if deal_type == "metro_out":
            return (self._metro_out(item, when, network, ctx),)
        if deal_type == "metro_in":
            self._metro_in(item, ts, network, ctx)
            return ()
        raise ItemRejected(f"unknown deal_type {deal_type!r}; expected metro_in, metro_out or bus", "/deal_type")

    def _latest(self, state: dict[str, Any]) -> float:
        text = state.get("latest")
        if not text:
            return float("-inf")
        if text != self._latest_text:
            self._latest_text, self._latest_ts = text, datetime.fromisoformat(text).timestamp()
        return self._latest_ts

    def _time(self, value: Any) -> tuple[datetime, float]:
        """A tap time parsed and checked, with its unix time; parsed once per distinct text (taps share seconds,
        and a tap-in's time is read again at its tap-out and by ``flush``)."""
        found = self._times.get(value) if type(value) is str else None
        if found is None:
            when = _tap_time(value)
            found = (when, when.timestamp())
            if len(self._times) >= _TIME_CACHE_SIZE:
                self._times.clear()
            self._times[value] = found
        return found

    def _subject(self, item: dict[str, Any], ctx: StreamContext) -> dict[str, str]:
        return {"kind": "person", "pseudonym": self._pseudonym(item, ctx), "key_version": ctx.key_version}

    def _pseudonym(self, item: dict[str, Any], ctx: StreamContext) -> str:
        # A card taps several times a day: keep its pseudonym for the run instead of one HMAC per tap (~3 µs).
        # Memory only (identifier -> pseudonym, never stored), and per context, so a key rotation between runs is
        # honoured; bounded, so a run over millions of cards does not grow without limit.
        if ctx is not self._subjects_ctx:
            self._subjects_ctx, self._by_mobile, self._by_card = ctx, {}, {}
        mobile = item.get("account_mobile")
        if mobile:
            cache, kind, value = self._by_mobile, "mobile", mobile
        else:
            value = item.get("card_no")
            if not value or not isinstance(value, str):
                raise ItemRejected("a card number is required to credit the trip", "/card_no")
            cache, kind = self._by_card, "card"
        found = cache.get(value)
        if found is None:
            if kind == "mobile":
                try:
                    found = ctx.pseudonym("mobile", value)
                except PrivacyError as exc:
                    raise ItemRejected(str(exc), "/account_mobile") from None
            else:
                found = ctx.pseudonym("card", value)
            if len(cache) >= _SUBJECT_CACHE_SIZE:
                cache.clear()
            cache[value] = found
        return found

    def _bus(self, item: dict[str, Any], when: datetime, network: Network, ctx: StreamContext) -> RecordLike:
        line_id = item["line_id"]
        km = network.bus_km(line_id)
        if km is None:
            raise ItemRejected(
                f"bus line {line_id!r} is not in the distance table (network {network.version}), "
                "so the trip length is unknown",
                "/line_id",
            )
        return ctx.record(
            raw=item,
            partner_record_id=item["txn_id"],
            subject=self._subject(item, ctx),
            scenario="bus",
            start=when,
            region=item.get("region") or self.adapter.config.region,
            activity=km,
            unit="pkm",
            methodology=self.adapter.config.bus_methodology,
            details={
                "line": line_id,
                "stop": item["stop_id"],
                "distance_basis": "line average trip length",
                "network_version": network.version,
            },
        )

    def _metro_in(self, item: dict[str, Any], ts: float, network: Network, ctx: StreamContext) -> None:
        stop_id = item["stop_id"]
        if stop_id not in network.stops:
            raise ItemRejected(
                f"metro stop {stop_id!r} is not in the distance table (network {network.version})", "/stop_id"
            )
        key = self._pseudonym(item, ctx)
        tap_in = {
            "txn_id": item["txn_id"],
            "deal_time": item["deal_time"],
            "line_id": item["line_id"],
            "stop_id": stop_id,
            "region": item.get("region") or self.adapter.config.region,
        }
        open_taps: dict[str, dict[str, Any]] = ctx.state.setdefault("open", {})
        older = open_taps.get(key)
        open_taps[key] = tap_in
        if open_taps is self._expiry_of:
            heapq.heappush(self._expiry, (ts, next(self._tie), key, tap_in))
        if older is not None:
            ctx.reject(
                older,
                [
                    Problem(
                        "/deal_time",
                        f"tap-in without tap-out: the same card tapped in again at {item['deal_time']} "
                        f"({item['txn_id']})",
                    )
                ],
                partner_record_id=older["txn_id"],
            )

    def _started(self, text: str) -> datetime:
        """A held tap-in's time (checked when it was taken; usually still parsed in :attr:`_times`)."""
        known = self._times.get(text)
        return known[0] if known is not None else datetime.fromisoformat(text)

    def _metro_out(self, item: dict[str, Any], when: datetime, network: Network, ctx: StreamContext) -> RecordLike:
        destination = item["stop_id"]
        if destination not in network.stops:
            # The card's tap-in stays open: given up later, both ends are in quarantine for the operator to see.
            raise ItemRejected(
                f"metro stop {destination!r} is not in the distance table (network {network.version})", "/stop_id"
            )
        subject = self._subject(item, ctx)
        key = subject["pseudonym"]
        open_taps: dict[str, dict[str, Any]] = ctx.state.get("open") or {}
        tap_in = open_taps.get(key)
        if tap_in is None:
            raise ItemRejected("metro tap-out without a tap-in: this card has no open metro journey")
        started = self._started(tap_in["deal_time"])
        minutes = (when - started).total_seconds() / 60
        if minutes < 0:
            raise ItemRejected(
                f"metro tap-out at {item['deal_time']} is earlier than the card's open tap-in "
                f"{tap_in['txn_id']} at {tap_in['deal_time']}",
                "/deal_time",
            )
        del open_taps[key]
        limit = self.adapter.config.max_journey_minutes
        if minutes > limit:
            ctx.reject(
                tap_in,
                [Problem("/deal_time", f"metro tap-in without tap-out within {limit} min")],
                partner_record_id=tap_in["txn_id"],
            )
            raise ItemRejected(
                f"metro tap-out {minutes:.0f} min after the card's tap-in {tap_in['txn_id']}: "
                f"longer than max_journey_minutes ({limit}), not credited",
                "/deal_time",
            )
        origin = tap_in["stop_id"]
        if origin not in network.stops:
            raise ItemRejected(
                f"the card's tap-in {tap_in['txn_id']} was at stop {origin!r}, which the distance table "
                f"(network {network.version}) no longer lists"
            )
        if network.same_station(origin, destination):
            raise ItemRejected(
                f"tap-in and tap-out at the same station (tap-in {tap_in['txn_id']} at {origin}, tap-out at "
                f"{destination}): no journey, not credited",
                "/stop_id",
            )
        km = network.metro_km(origin, destination)
        if km is None:
            raise ItemRejected(
                f"no metro path joins the tap-in {tap_in['txn_id']} at {origin} and {destination} in the distance "
                f"table (network {network.version})",
                "/stop_id",
            )
        return ctx.record(
            raw={"tap_in": tap_in, "tap_out": item},
            partner_record_id=f"{tap_in['txn_id']}+{item['txn_id']}",
            subject=subject,
            scenario="metro",
            start=started,
            end=when,
            region=item.get("region") or self.adapter.config.region,
            activity=km,
            unit="pkm",
            methodology=self.adapter.config.metro_methodology,
            details={
                "origin_stop": origin,
                "destination_stop": destination,
                "line_in": tap_in["line_id"],
                "line_out": item["line_id"],
                "network_version": network.version,
            },
        )

    def flush(self, ctx: StreamContext, final: bool) -> Iterable[RecordLike]:
        """Give up tap-ins older than ``max_journey_minutes`` before the latest tap seen; keep recent ones.

        ``final`` changes nothing: a recent tap-in's tap-out may come with the next run.
        """
        open_taps: dict[str, dict[str, Any]] | None = ctx.state.get("open")
        if not open_taps:
            return ()
        heap = self._expiry
        if open_taps is not self._expiry_of or len(heap) > 4 * len(open_taps) + 4096:
            # Another run's (or a replay's) state, or a heap mostly made of tap-ins paired since: index it afresh.
            heap = self._expiry = [(self._tap_ts(t), next(self._tie), k, t) for k, t in open_taps.items()]
            heapq.heapify(heap)
            self._expiry_of = open_taps
        limit = self.adapter.config.max_journey_minutes
        cutoff = self._latest(ctx.state) - limit * 60
        while heap and heap[0][0] < cutoff:
            _, _, key, tap_in = heapq.heappop(heap)
            if open_taps.get(key) is not tap_in:
                continue  # paired with its tap-out, or replaced by a later tap-in, since
            del open_taps[key]
            ctx.reject(
                tap_in,
                [Problem("/deal_time", f"metro tap-in without tap-out within {limit} min")],
                partner_record_id=tap_in["txn_id"],
            )
        return ()

    def _tap_ts(self, tap_in: dict[str, Any]) -> float:
        known = self._times.get(tap_in["deal_time"])
        return known[1] if known is not None else datetime.fromisoformat(tap_in["deal_time"]).timestamp()


class TransitCardAdapter(Adapter):
    """Pulls card transactions from a transit card operator; see the module docstring for the interface."""

    name = "transit_card"
    version = "1.0.0"
    title = "Transit card operator: metro tap-in/tap-out pairs and bus taps"
    Settings = TransitCardSettings
    stream_types = (TransactionsStream,)
    schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "transit-card-trip": load_builtin("transit-card-trip"),
        "transit-card-network": load_builtin("transit-card-network"),
    }

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        super().__init__(settings, http)
        self.config = self.settings_as(TransitCardSettings)

    @cached_property
    def client(self) -> PartnerClient:
        """The one partner client (created on first use, closed by :meth:`aclose`)."""
        return self.oauth2_client(self.config)
