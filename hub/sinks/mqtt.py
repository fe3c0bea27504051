"""A sink that publishes each record over MQTT 5 at QoS 1 (at least once), for IoT-style consumers (Mosquitto).

One message per record, CloudEvents MQTT binding (MQTT 5, binary mode): the payload is the stored record (JSON),
``Content Type`` is ``application/json`` and the context attributes are user properties ``specversion``, ``id``,
``source``, ``type``. The ``id`` user property is the record id: the idempotency key a consumer dedups on (a batch
sent again after a failure carries the same ids).

A batch counts as delivered when the broker answered every PUBLISH with a successful PUBACK (reason code < 0x80;
"no matching subscribers" is a success: the broker accepted the message). A lost connection, a timeout or a PUBACK
saying "unspecified error", "quota exceeded" or "packet identifier in use" is transient (retried, the sink pauses on
the batch); "not authorized", "topic name invalid" or "payload format invalid" is permanent (the batch is
dead-lettered at once). QoS 1 reaches subscribers with persistent sessions (``clean_start = false``, a session
expiry) even when they are offline; a subscriber with a clean session receives only what is published while it is
connected.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

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
    one_line,
    publish_concurrently,
    template_field,
)

if TYPE_CHECKING:
    from aiomqtt import Client

__all__ = ["MqttSettings", "MqttSink"]

log = logging.getLogger("tanpuhui.forwarder")

_client_log = logging.getLogger("tanpuhui.forwarder.mqtt")
_client_log.addFilter(lambda record: "pending publish calls" not in record.getMessage())
"""The MQTT client's own log: without its per-message "There are N pending publish calls" (a batch is in flight at
once by design)."""

PERMANENT_PUBACK = frozenset({0x87, 0x90, 0x99})
"""PUBACK reason codes that will not change on a retry: not authorized, topic name invalid, payload format invalid."""


class MqttSettings(BrokerSettings):
    """``[sinks.NAME]`` with ``type = "mqtt"`` (see docs/sinks.md).

    ``url``: ``mqtt://host:port`` or ``mqtts://host:port``; ``topic``: a template with ``{adapter}``, ``{stream}``,
    ``{scenario}``; ``client_id``: the MQTT client identifier (default: ``tanpuhui-<sink>-<random>``).
    Credentials: ``username``, and ``password`` from the environment.
    """

    type: Literal["mqtt"] = "mqtt"
    url: str = Field(default="mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^/]+/?$")
    topic: str = Field(default="tanpuhui/reductions/{scenario}", min_length=1)
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    timeout: float = Field(default=10.0, gt=0, description="seconds to connect, and to wait for each PUBACK")
    keepalive: int = Field(default=30, ge=5, le=65535)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("a topic to publish to has no wildcards (+ or #)")
        return template_field(value, "topic")


class MqttSink(BrokerSink[MqttSettings, "Client"]):
    """Publishes each record at QoS 1 over one MQTT 5 connection per sink, reconnecting after a failure."""

    kind = "mqtt"
    Settings = MqttSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        super().__init__(name, settings, MqttSettings, template_key="topic", client=("aiomqtt", "aiomqtt"))
        parts = urlsplit(self._settings.url)
        self._host = parts.hostname or "127.0.0.1"
        self._secure = parts.scheme == "mqtts" or self._settings.tls is not None
        self._port = parts.port or (8883 if self._secure else 1883)
        self._where = f"mqtt sink {name!r} ({display_url(self._settings.url)})"
        self._client_id = self._settings.client_id or f"tanpuhui-{name}-{uuid.uuid4().hex[:8]}"
        self._client: Client | None = None
        self._refused: list[int] = []

    async def _connect_locked(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        await self._drop()
        s = self._settings
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_properties.SessionExpiryInterval = 0
        options: dict[str, Any] = {
            "identifier": self._client_id,
            "protocol": self._library.ProtocolVersion.V5,
            "clean_start": True,
            "timeout": s.timeout,
            "keepalive": s.keepalive,
            "properties": connect_properties,
            "logger": _client_log,
        }
        if s.username is not None:
            options["username"] = s.username
            options["password"] = s.password.get_secret_value() if s.password else None
        if self._secure:
            options["tls_context"] = (s.tls or TlsSettings()).context()
        client: Client = self._library.Client(self._host, self._port, **options)
        paho = client._client  # count PUBACKs the broker refused (aiomqtt drops their reason code)
        on_publish: Any = paho.on_publish

        def publish_answered(c: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            if getattr(reason_code, "is_failure", False):
                self._refused.append(int(reason_code.value))
            on_publish(c, userdata, mid, reason_code, properties)

        paho.on_publish = publish_answered
        try:
            await asyncio.wait_for(client.__aenter__(), s.timeout + 1)
        except Exception as exc:
            raise SinkError(f"{self._where}: cannot connect ({one_line(exc)})", retryable=True) from exc
        if self._secure and s.tls is not None and s.tls.server_name:
            log.debug("%s: server_name is ignored by the MQTT client (it verifies the URL's host)", self._where)
        self._client, self._loop = client, loop
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            lost = client._disconnected  # retrieve a lost connection's error: it was reported as a SinkError
            if lost.done() and not lost.cancelled():
                lost.exception()
        if client is not None and self._loop is asyncio.get_running_loop():
            await close_quietly(client.__aexit__(None, None, None), self._where, "disconnect")

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        if not batch:
            return
        client = await self._connected()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        s = self._settings
        self._refused.clear()

        async def publish(row: OutboxRow) -> None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ContentType = CONTENT_TYPE
            properties.PayloadFormatIndicator = 1
            properties.UserProperty = list(cloudevent_attributes(row, s.source).items())
            await client.publish(self._template.render(row), row.body, qos=1, properties=properties, timeout=s.timeout)

        unpublished = await publish_concurrently(batch, publish)
        if unpublished is not None:
            await self._drop()  # the connection failed: a fresh one (and a fresh session) on the next try
            message = self._unpublished_error(unpublished, "unacknowledged")
            raise SinkError(message, retryable=True) from unpublished.error
        if self._refused:
            codes = sorted(set(self._refused))
            message = (
                f"{self._where}: the broker refused {len(self._refused)} of {len(batch)} messages "
                f"(PUBACK reason code(s) {', '.join(f'0x{c:02X}' for c in codes)})"
            )
            raise SinkError(message, retryable=not set(codes) & PERMANENT_PUBACK)

    async def check(self) -> None:
        """Connected (CONNACK received)."""
        await self._connected()

    async def aclose(self) -> None:
        await self._drop()
