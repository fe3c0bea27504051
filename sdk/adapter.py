"""What an adapter is: a named, versioned plugin providing pull and push streams.

    class MyAdapter(Adapter):
        name = "water_utility"
        version = "1.0.0"
        Settings = MySettings                      # pydantic model of [adapters.water_utility] in hub.toml

        def streams(self) -> list[Stream]:
            return [ReadingsStream(self)]

A :class:`PullStream` yields :class:`Page` objects (raw items + the cursor after them); a :class:`PushStream` turns
a verified webhook request into raw items. Both turn one raw item into zero or more records with ``normalize``.
The hub validates raw items against ``schema`` before calling ``normalize``, and validates, deduplicates and commits
what ``normalize`` returns; adapters never touch the store.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict

from .client import OAuth2ClientCredentials, OAuth2Settings, PartnerClient, RetryPolicy, RetrySettings
from .errors import ConfigError, PartnerResponseError
from .paging import as_objects
from .records import ReductionRecord
from .webhooks import WebhookVerifier

if TYPE_CHECKING:
    from .context import StreamContext

__all__ = [
    "Adapter",
    "AdapterSettings",
    "HttpOptions",
    "Page",
    "Partition",
    "PartnerSettings",
    "PullStream",
    "PushStream",
    "RecordLike",
    "Stream",
]

RecordLike = dict[str, Any] | ReductionRecord
"""What ``normalize`` may return: a record document (fast path, validated by the hub) or a model."""

_S = TypeVar("_S", bound="AdapterSettings")


MAX_PARTITIONS = 64
_PARTITION_NAME = re.compile(r"(.+)_([0-9]+)of([0-9]+)")


class AdapterSettings(BaseModel):
    """Base for adapter settings models: unknown keys are an error, so typos in hub.toml are caught."""

    model_config = ConfigDict(extra="forbid")


# Bases in this order because pydantic lists the fields of the last base first: base_url ... auth_method, then retry_*.
class PartnerSettings(AdapterSettings, RetrySettings, OAuth2Settings):
    """Settings of an adapter that pulls from one OAuth2 partner API: subclass it and add the adapter's own fields.

    ``base_url``, ``token_url``, ``client_id``, ``client_secret``, ``scope``, ``auth_method`` (from
    :class:`~tanpuhui.sdk.OAuth2Settings`), ``retry_*`` and ``timeout`` (from :class:`~tanpuhui.sdk.RetrySettings`);
    :meth:`Adapter.oauth2_client` builds the client from them.
    """


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """How the hub wants partner HTTP done: a transport (tests, proxies) and the sleep used between retries."""

    transport: httpx.AsyncBaseTransport | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True, slots=True)
class Partition:
    """Part ``index`` (from 0) of the ``count`` disjoint parts a partitioned pull stream is read in."""

    index: int
    count: int

    def stream_name(self, base: str) -> str:
        """The name of the partition's stream: ``transactions`` part 0 of 2 is ``transactions_0of2``. The count is
        part of the name, so a stream read in 2 parts and later in 4 never resumes a part from another split's
        cursor."""
        return f"{base}_{self.index}of{self.count}"

    @staticmethod
    def base_of(name: str) -> str:
        """The stream name a partition's stream name was made from (``transactions_0of2`` -> ``transactions``); any
        other name as it is."""
        found = Partition.of(name)
        return found[0] if found else name

    @staticmethod
    def of(name: str) -> tuple[str, Partition] | None:
        """The base stream name and the partition a partition's stream name names (``transactions_1of3`` ->
        ``("transactions", Partition(1, 3))``); None for any other name."""
        found = _PARTITION_NAME.fullmatch(name)
        if not found or int(found.group(2)) >= int(found.group(3)):
            return None
        return found.group(1), Partition(int(found.group(2)), int(found.group(3)))


@dataclass(slots=True)
class Page:
    """One page of raw partner items and the cursor that resumes *after* them.

    The hub commits the page's records and ``cursor`` in one transaction, so a crash never skips or repeats a page.
    ``request`` describes where the page came from (for error messages and quarantine entries).
    """

    items: list[dict[str, Any]]
    cursor: Any
    request: str = ""


class _StreamBase(ABC):
    name: ClassVar[str]
    """Stream name, unique within the adapter (``[a-z][a-z0-9_]+``)."""
    schema: ClassVar[str]
    """Name of the partner payload schema each raw item must satisfy."""
    description: ClassVar[str] = ""
    id_field: ClassVar[str] = "id"
    """The raw item's field holding the partner's id for it (names quarantine entries)."""
    void_when_empty: ClassVar[bool] = False
    """True for a stream whose item, once normalized without error, yields no record exactly when it credits nothing
    (e.g. a demand-response result at or above its baseline), and whose records carry the item's ``id_field`` as
    ``partner_record_id`` with ids derived from this stream: the item re-sent so withdraws the record credited for
    it earlier (the hub voids it). Leave False for a stream that keeps items pending in ``ctx.state`` or yields
    nothing for an item sent again (pairing, trailing windows): there an empty result is no withdrawal."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    @property
    def base_name(self) -> str:
        """The stream's name without a partition's suffix (:attr:`PullStream.partition`): what its records name and
        derive their ids from."""
        return type(self).name

    @abstractmethod
    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        """Turn one schema-valid raw item into zero or more records.

        Raise :class:`tanpuhui.sdk.ItemRejected` to quarantine the item with a reason. Stateful streams (e.g. pairing
        tap-in with tap-out) keep their pending state in ``ctx.state``, which is committed with the cursor.
        """

    async def prepare(self, ctx: StreamContext) -> None:
        """Load what ``normalize`` needs when it runs outside :meth:`PullStream.pages` (quarantine replay, pushes).

        E.g. reference data a pull run fetches first (a distance table). Default: nothing. Cache what you load.
        """

    def flush(self, ctx: StreamContext, final: bool) -> Iterable[RecordLike]:
        """Called after each page (``final`` after the last one): emit or give up on items held in ``ctx.state``.

        Raise nothing here; report items that can never complete with ``ctx.reject(raw, problems)``.
        """
        return ()


class PullStream(_StreamBase):
    """A stream the hub pulls: ``pages`` yields raw pages from the partner, starting after ``cursor``."""

    partitionable: ClassVar[bool] = False
    """Set True when the partner can split the stream into disjoint parts read independently (a query parameter
    naming the part, as DynamoDB's parallel scan has ``Segment``/``TotalSegments``), each part holding everything
    ``normalize`` and ``flush`` pair or count together (e.g. every tap of one card holder). An operator may then set
    ``partitions = {NAME = N}`` in the adapter's table: the adapter has N streams, ``NAME_0ofN`` to
    ``NAME_{N-1}ofN``, each with its own cursor, state and lease, so ``tanpuhui pull --workers``, ``run --workers``,
    ``serve --workers`` and replicas pull them in parallel. ``pages`` asks the partner for :attr:`partition`'s part;
    the records are those the whole stream would give (they name the stream's own ``name`` and take their ids from
    it), so changing the number of parts never credits an item twice."""

    partition: Partition | None = None
    """The part this stream reads (None: the whole stream); set by :meth:`Adapter.streams`."""

    prefetch: ClassVar[bool] = False
    """Set True when ``pages`` touches nothing ``normalize`` and ``flush`` use once it has yielded its first page
    (not ``ctx.state``, not reference data it loaded): the hub then asks for the next page while a worker thread
    validates, normalizes and commits the current one, so the partner's latency overlaps the hub's work. Pages are
    still committed one by one, in order, each with its cursor; at most one more page is held in memory."""

    @abstractmethod
    def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        """Yield pages starting after ``cursor`` (``None`` on the first run)."""


class PushStream(_StreamBase):
    """A stream partners push to (a webhook route on the sidecar).

    The default ``verify`` checks Standard Webhooks signatures against the adapter's ``webhook_secrets`` setting;
    the default ``parse`` accepts a JSON array of items, a ``{"items": [...]}`` object, or a single item.
    """

    def verifier(self) -> WebhookVerifier:
        """The :class:`WebhookVerifier` of the adapter's ``webhook_secrets`` setting (several during a rotation)."""
        secrets: Sequence[str] = getattr(self.adapter.settings, "webhook_secrets", ())
        return WebhookVerifier(list(secrets))

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Verify the request and return its webhook id (the idempotency key); raises ``SignatureError``."""
        return self.verifier().verify(headers, body)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        """The items of a verified request body: a JSON array, ``{"items": [...]}`` or one object;
        :class:`PartnerResponseError` for anything else.
        """
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PartnerResponseError(f"{self.adapter.name}:{self.name}: body is not JSON ({exc})") from None
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            doc = doc["items"]
        items = doc if isinstance(doc, list) else [doc]
        return as_objects(items)


Stream = PullStream | PushStream


class Adapter(ABC):
    """A partner integration. Subclasses set ``name``, ``version``, ``Settings`` and implement ``streams``."""

    name: ClassVar[str]
    version: ClassVar[str]
    title: ClassVar[str] = ""
    Settings: ClassVar[type[AdapterSettings]] = AdapterSettings
    schemas: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Partner payload schemas this adapter ships, by name (they appear in ``tanpuhui schemas``)."""
    stream_types: ClassVar[Sequence[type[PullStream] | type[PushStream]]] = ()
    """The stream classes; the default :meth:`streams` instantiates each with the adapter."""

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        self.settings = settings
        self.http = http or HttpOptions()
        self._streams: dict[str, Stream] = {}
        self._clients: list[PartnerClient] = []
        self.partitions: Mapping[str, int] = {}
        """Pull stream name -> the number of parts it is read in (``partitions`` in the adapter's table, given by the
        hub through :meth:`split`)."""

    def settings_as(self, settings_type: type[_S]) -> _S:
        """``settings`` as this adapter's own settings class; a :class:`ConfigError` naming both when it is another."""
        if not isinstance(self.settings, settings_type):
            raise ConfigError(
                f"adapter {self.name}: settings must be {settings_type.__name__}, got {type(self.settings).__name__}"
            )
        return self.settings

    def partner_client(
        self,
        base_url: str,
        *,
        oauth: OAuth2ClientCredentials | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> PartnerClient:
        """A :class:`PartnerClient` wired to the hub's transport and sleep (tests inject both); closed with the adapter."""
        client = PartnerClient(
            base_url,
            name=self.name,
            oauth=oauth,
            retry=retry,
            timeout=timeout,
            headers=headers,
            transport=self.http.transport,
            sleep=self.http.sleep,
        )
        self._clients.append(client)
        return client

    def oauth2_client(
        self,
        settings: OAuth2Settings,
        retry: RetrySettings | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> PartnerClient:
        """A :meth:`partner_client` for the partner API ``settings`` configure (e.g. a :class:`PartnerSettings`).

        OAuth2 client credentials from ``settings``; retry policy and timeout from ``retry``, by default from
        ``settings`` itself when it has them (a ``PartnerSettings``), else the defaults; ``Accept: application/json``
        unless ``headers`` say otherwise.
        """
        if retry is None:
            retry = settings if isinstance(settings, RetrySettings) else RetrySettings()
        return self.partner_client(
            settings.base_url,
            oauth=settings.credentials(),
            retry=retry.retry_policy(),
            timeout=retry.timeout,
            headers={"Accept": "application/json", **(headers or {})},
        )

    def streams(self) -> Sequence[Stream]:
        """The streams this adapter provides; by default one instance of each of ``stream_types``, or, for a pull
        stream :attr:`partitions` splits, one instance per partition (:attr:`PullStream.partitionable`)."""
        if not self._streams:
            found: list[Stream] = []
            for stream_type in self.stream_types:
                count = self.partitions.get(stream_type.name, 1)
                if count == 1:
                    found.append(stream_type(self))
                    continue
                for index in range(count):
                    stream = stream_type(self)
                    assert isinstance(stream, PullStream)
                    stream.partition = Partition(index, count)
                    vars(stream)["name"] = stream.partition.stream_name(stream_type.name)
                    found.append(stream)
            self._streams = {s.name: s for s in found}
        return list(self._streams.values())

    def split(self, partitions: object) -> None:
        """Read pull streams in parts: ``partitions`` maps a partitionable stream's name to its number of parts (the
        ``partitions`` key of the adapter's table in hub.toml); a :class:`ConfigError` naming the key otherwise."""
        where = f"[adapters.{self.name}] partitions"
        if not isinstance(partitions, Mapping):
            raise ConfigError(
                f"{where}: expected a table of stream = number of partitions, e.g. {{ transactions = 2 }}"
            )
        types = {t.name: t for t in self.stream_types}
        for name, count in partitions.items():
            stream_type = types.get(name)
            if stream_type is None:
                raise ConfigError(f"{where}.{name}: the adapter has no stream {name!r}; streams: {', '.join(types)}")
            if not (issubclass(stream_type, PullStream) and stream_type.partitionable):
                raise ConfigError(
                    f"{where}.{name}: stream {name!r} cannot be partitioned (its partner cannot split it)"
                )
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
                raise ConfigError(f"{where}.{name}: expected a whole number of partitions from 1 to {MAX_PARTITIONS}")
        self.partitions = dict(partitions)
        self._streams = {}

    def stream(self, name: str) -> Stream:
        """The stream called ``name``; KeyError when there is none."""
        if not self._streams:
            self._streams = {s.name: s for s in self.streams()}
        return self._streams[name]

    async def aclose(self) -> None:
        """Release clients and connections; called once when the hub stops using the adapter."""
        for client in self._clients:
            await client.aclose()
