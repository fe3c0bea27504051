"""A sink that publishes each record to RabbitMQ (AMQP 0-9-1) with publisher confirms.

One persistent message per record, CloudEvents AMQP binding in binary mode: the body is the stored record (JSON),
the context attributes are application headers ``cloudEvents:id``, ``cloudEvents:source``, ... and the
``content-type`` property is ``application/json``. The ``message_id`` property is the record id: the idempotency
key a consumer dedups on (a batch sent again after a failure carries the same ids).

Messages are published ``mandatory`` to ``exchange`` (the default exchange when empty: the routing key is then the
queue name) with a routing key from a template. A batch counts as delivered when the broker confirmed every message
(``basic.ack``: stored in every queue it was routed to, on disk for durable queues). A lost connection, a closed
channel, a timeout, a ``basic.nack`` or a message no queue is bound for (returned unroutable: the consumer's queue
is missing) is transient: retried while the sink pauses on the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from tanpuhui.sdk import OutboxRow, SinkError, SinkSettings

from .common import (
    CONTENT_TYPE,
    BrokerSettings,
    BrokerSink,
    TlsSettings,
    close_quietly,
    cloudevent_attributes,
    display_url,
    event_type,
    one_line,
    publish_concurrently,
    template_field,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

__all__ = ["AmqpSettings", "AmqpSink"]

HEADER_PREFIX = "cloudEvents:"


class AmqpSettings(BrokerSettings):
    """``[sinks.NAME]`` with ``type = "amqp"`` (see docs/sinks.md).

    ``url``: ``amqp://`` or ``amqps://`` (host, port, virtual host; a user but never a password); ``password`` from
    the environment. ``exchange``: where to publish (``""``: the default exchange); ``routing_key``: a template with
    ``{adapter}``, ``{stream}``, ``{scenario}``.
    """

    type: Literal["amqp"] = "amqp"
    url: str = Field(default="amqp://127.0.0.1:5672/", pattern=r"^amqps?://")
    exchange: str = ""
    routing_key: str = Field(default="tanpuhui.reductions.{scenario}", min_length=1, max_length=255)
    timeout: float = Field(default=10.0, gt=0, description="seconds to connect, and to wait for a batch's confirms")
    max_in_flight: int = Field(default=512, ge=1, le=65536, description="messages awaiting their confirm at once")

    username_in_url: ClassVar[bool] = True

    @field_validator("routing_key")
    @classmethod
    def _routing_key(cls, value: str) -> str:
        return template_field(value, "routing_key")


class AmqpSink(BrokerSink[AmqpSettings, "AbstractExchange"]):
    """Publishes persistent, confirmed messages; one connection and channel per sink, reopened after a failure."""

    kind = "amqp"
    Settings = AmqpSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        super().__init__(name, settings, AmqpSettings, template_key="routing_key", client=("aio_pika", "aio-pika"))
        exchange = self._settings.exchange or "(default exchange)"
        self._where = f"amqp sink {name!r} ({display_url(self._settings.url)}, exchange {exchange})"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    def _url(self) -> str:
        from yarl import URL  # aio-pika's own dependency

        s = self._settings
        url = URL(s.url)
        if s.username is not None:
            url = url.with_user(s.username)
        if s.password is not None:
            url = url.with_password(s.password.get_secret_value())
        return str(url)

    async def _connect_locked(self) -> AbstractExchange:
        loop = asyncio.get_running_loop()
        usable = (
            self._exchange is not None
            and self._loop is loop
            and self._channel is not None
            and not self._channel.is_closed
            and self._connection is not None
            and not self._connection.is_closed
        )
        if usable and self._exchange is not None:
            return self._exchange
        await self._drop()
        s = self._settings
        options: dict[str, Any] = {
            "timeout": s.timeout,
            "client_properties": {"connection_name": f"tanpuhui {self.name}"},
        }
        if s.tls is not None or s.url.startswith("amqps://"):
            options["ssl"] = True
            options["ssl_context"] = (s.tls or TlsSettings()).context()
        try:
            connection = await self._library.connect(self._url(), **options)
        except Exception as exc:
            raise SinkError(f"{self._where}: cannot connect ({one_line(exc)})", retryable=True) from exc
        self._connection, self._loop = connection, loop
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
            self._channel = channel
            exchange: AbstractExchange
            if s.exchange:
                exchange = await channel.get_exchange(s.exchange, ensure=True)
            else:
                exchange = channel.default_exchange
        except Exception as exc:
            await self._drop()
            raise SinkError(
                f"{self._where}: cannot open the exchange ({one_line(exc)}); declare it before delivering",
                retryable=True,
            ) from exc
        self._exchange = exchange
        return exchange

    async def _drop(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None and not connection.is_closed and self._loop is asyncio.get_running_loop():
            await close_quietly(connection.close(), self._where)

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        if not batch:
            return
        exchange = await self._connected()
        pika = self._library
        s = self._settings
        from pamqp.commands import Basic  # aio-pika's own dependency: the confirm frames

        async def publish(row: OutboxRow) -> None:
            headers: dict[str, Any] = {HEADER_PREFIX + k: v for k, v in cloudevent_attributes(row, s.source).items()}
            message = pika.Message(
                row.body,
                headers=headers,
                content_type=CONTENT_TYPE,
                delivery_mode=pika.DeliveryMode.PERSISTENT,
                message_id=row.record_id,
                type=event_type(row),
                app_id="tanpuhui",
            )
            key = self._template.render(row)
            answer = await exchange.publish(message, key, mandatory=True, timeout=s.timeout)
            if not isinstance(answer, Basic.Ack):
                what = "returned unroutable: no queue is bound for it" if answer is not None else "not confirmed"
                raise _Unconfirmed(f"routing key {key!r}: {what}")

        unpublished = await publish_concurrently(batch, publish, s.max_in_flight)
        if unpublished is not None:
            exc = unpublished.error
            if not isinstance(exc, _Unconfirmed):
                await self._drop()  # a closed channel or connection: start afresh on the next try
            message = self._unpublished_error(unpublished, "unconfirmed", destination=False)
            raise SinkError(message, retryable=True) from exc

    async def check(self) -> None:
        """Connected, with the exchange declared."""
        await self._connected()

    async def aclose(self) -> None:
        await self._drop()


class _Unconfirmed(Exception):
    """The broker answered a publish with something other than ``basic.ack``."""
