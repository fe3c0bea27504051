"""What the broker and database sinks share: CloudEvents attributes, name templates, TLS, connection URLs.

Every broker sink sends one message per record in CloudEvents *binary* mode: the stored record (JSON) is the
payload, untouched, and the context attributes travel as headers/properties (each binding names them its own way).
``id`` is the record id — the idempotency key across retries and replays — and ``source`` is
``<source>/<adapter>/<stream>``, exactly as the HTTP sink's events.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import ssl
import string
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tanpuhui.sdk import ConfigError, OutboxRow, Sink, SinkSettings

from .http import EVENT_TYPE, EVENT_TYPES

__all__ = [
    "CONTENT_TYPE",
    "EVENT_TYPE",
    "TEMPLATE_FIELDS",
    "BrokerSettings",
    "BrokerSink",
    "ConnectLock",
    "NameTemplate",
    "TlsSettings",
    "Unpublished",
    "close_quietly",
    "cloudevent_attributes",
    "display_url",
    "event_type",
    "one_line",
    "optional_client",
    "publish_concurrently",
    "reject_url_password",
    "template_field",
]

log = logging.getLogger("tanpuhui.forwarder")

CONTENT_TYPE = "application/json"
TEMPLATE_FIELDS = ("adapter", "stream", "scenario")
"""The placeholders a subject, routing key or topic template may use."""


def cloudevent_attributes(row: OutboxRow, source: str) -> dict[str, str]:
    """The CloudEvents context attributes of ``row`` (without ``datacontenttype``: each binding carries it as its
    content type)."""
    return {
        "specversion": "1.0",
        "id": row.record_id,
        "source": f"{source}/{row.adapter}/{row.stream}",
        "type": event_type(row),
    }


def event_type(row: OutboxRow) -> str:
    """The CloudEvents ``type`` of an outbox row: a new record, a correction or a void (as the HTTP sink sends)."""
    return EVENT_TYPES.get(row.kind, EVENT_TYPE)


class NameTemplate:
    """A subject/routing key/topic like ``"tanpuhui.{scenario}"``: placeholders from :data:`TEMPLATE_FIELDS`; each
    value has characters outside ``[A-Za-z0-9_-]`` replaced by ``_`` (so a value never adds a level or a wildcard).
    """

    def __init__(self, template: str, where: str) -> None:
        names: list[str] = []
        try:
            for _text, name, spec, conversion in string.Formatter().parse(template):
                if name is None:
                    continue
                if name not in TEMPLATE_FIELDS or spec or conversion:
                    raise ValueError(name)
                names.append(name)
        except ValueError as exc:
            raise ValueError(
                f"{where} {template!r} has an unknown or malformed placeholder ({exc}); "
                f"use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            ) from None
        self.template = template
        self._names = tuple(names)
        self._cache: dict[tuple[str, str, str], str] = {}

    def render(self, row: OutboxRow) -> str:
        key = (row.adapter, row.stream, row.scenario)
        name = self._cache.get(key)
        if name is None:
            values = {"adapter": row.adapter, "stream": row.stream, "scenario": row.scenario}
            name = self._cache[key] = self.template.format(
                **{k: _SAFE.sub("_", v) or "_" for k, v in values.items() if k in self._names}
            )
        return name


_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def template_field(template: str, where: str) -> str:
    """Validate ``template`` (for a pydantic validator): a ValueError naming the key when a placeholder is wrong."""
    NameTemplate(template, where)
    return template


class TlsSettings(BaseModel):
    """``tls = { ca_file = "...", cert_file = "...", key_file = "..." }``: verify the server with ``ca_file`` (else
    the system's CAs) and, with ``cert_file``/``key_file``, authenticate the hub with a client certificate.
    ``server_name``: the name to verify when it differs from the URL's host."""

    model_config = ConfigDict(extra="forbid")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {str(path)!r} is not a readable file")
        return self

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the server (hostname included) and offers the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context


def reject_url_password(url: str) -> str:
    """A URL in hub.toml must not hold a password (secrets come from the environment): a ValueError if it does."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        raise ValueError(
            'the URL holds a literal password; keep the user name and put the secret in `password = { env = "NAME" }`'
        )
    return url


def display_url(url: str) -> str:
    """``url`` without user information, query or fragment (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


_EXTRA = "pip install 'tanpuhui[sinks]'"


def optional_client(module: str, package: str, kind: str) -> ModuleType:
    """Import a sink's client library; a :class:`ConfigError` saying what to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"the {kind} sink needs the {package} package: {_EXTRA} (or pip install {package})") from None


def one_line(exc: BaseException) -> str:
    """``TypeName: message`` on one line (client errors can be multi-line or empty)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ConnectLock:
    """One connection attempt at a time per sink (a readiness check and a delivery may both find it unconnected),
    with a lock for whichever event loop is running (a sink may be used from several ``asyncio.run`` calls)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock


class BrokerSettings(SinkSettings):
    """What the broker sinks' settings share: a user name with its ``password`` from the environment, the
    CloudEvents ``source`` prefix and ``tls``; the ``url`` each declares never holds a password."""

    username: str | None = None
    password: SecretStr | None = None
    source: str = Field(default="urn:tanpuhui:hub", min_length=1)
    tls: TlsSettings | None = None

    username_in_url: ClassVar[bool] = False
    """Whether the URL may name the user (AMQP): else a ``password`` needs ``username``."""

    @field_validator("url", check_fields=False)
    @classmethod
    def _no_password(cls, value: str) -> str:
        return reject_url_password(value)

    @model_validator(mode="after")
    def _password_needs_username(self) -> Self:
        if self.password is not None and self.username is None and not self.username_in_url:
            raise ValueError("password needs username")
        return self


@dataclass(frozen=True)
class Unpublished:
    """The rows of one window that failed, with their errors, and how many rows the window held."""

    failures: list[tuple[OutboxRow, Exception]]
    of: int

    @property
    def row(self) -> OutboxRow:
        return self.failures[0][0]

    @property
    def error(self) -> Exception:
        return self.failures[0][1]

    def count(self, what: str) -> str:
        """``"3 of 512 unconfirmed"``."""
        return f"{len(self.failures)} of {self.of} {what}"


async def publish_concurrently(
    batch: Sequence[OutboxRow], publish: Callable[[OutboxRow], Awaitable[None]], window: int | None = None
) -> Unpublished | None:
    """Publish ``batch`` ``window`` rows at a time (all at once without a window), the rows of a window
    concurrently. The failures of the first window that had any (the windows after it are not sent), or ``None``;
    a cancellation propagates (the forwarder is stopping)."""
    size = window or len(batch) or 1
    for start in range(0, len(batch), size):
        chunk = batch[start : start + size]
        results = await asyncio.gather(*(publish(row) for row in chunk), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        failures = [(row, r) for row, r in zip(chunk, results, strict=True) if isinstance(r, Exception)]
        if failures:
            return Unpublished(failures, len(chunk))
    return None


async def close_quietly(closing: Awaitable[object], where: str, what: str = "close") -> None:
    """Await a connection's close for at most 5 s; a failure is only logged (the peer is gone already)."""
    try:
        await asyncio.wait_for(closing, 5)
    except Exception:
        log.debug("%s: %s failed", where, what, exc_info=True)


_B = TypeVar("_B", bound=BrokerSettings)
_C = TypeVar("_C")


class BrokerSink(Sink, Generic[_B, _C]):
    """What the broker sinks share: their settings, the client library (a :class:`ConfigError` naming the package
    to install when it is missing), the subject/topic/routing-key template, and one connection attempt at a time.
    ``_C`` is what :meth:`_connected` gives ``send`` (a connection, a JetStream context, an exchange); it belongs to
    the event loop that opened it (``_loop``)."""

    _where: str
    """How messages name the sink and where it delivers (set by each sink)."""

    def __init__(
        self,
        name: str,
        settings: SinkSettings,
        settings_type: type[_B],
        *,
        template_key: str,
        client: tuple[str, str],
    ) -> None:
        super().__init__(name, settings)
        self._settings: _B = self.settings_as(settings_type)
        module, package = client
        self._library: Any = optional_client(module, package, self.kind)
        self._template = NameTemplate(getattr(self._settings, template_key), template_key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting = ConnectLock()

    def _unpublished_error(self, unpublished: Unpublished, what: str, *, destination: bool = True) -> str:
        """The message for a window that did not get through: its first failed record, where that went (unless
        ``destination`` is false), its error, and how many of the window failed (``what``: ``unacknowledged``, ...)."""
        row = unpublished.row
        to = f" to {self._template.render(row)!r}" if destination else ""
        return (
            f"{self._where}: publishing record {row.record_id}{to} failed "
            f"({one_line(unpublished.error)}; {unpublished.count(what)})"
        )

    async def _connected(self) -> _C:
        """The connection of the running event loop, opened (or reopened) when there is none usable."""
        async with self._connecting():
            return await self._connect_locked()

    @abstractmethod
    async def _connect_locked(self) -> _C:
        """:meth:`_connected` while holding the connect lock."""
