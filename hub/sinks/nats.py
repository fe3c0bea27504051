"""A sink that publishes each record to NATS JetStream and waits for the stream's acknowledgement.

One message per record, CloudEvents NATS binding in binary mode: the payload is the stored record (JSON), the
context attributes are ``ce-*`` headers (``ce-id`` is the record id) and ``content-type`` is
``application/json``. ``Nats-Msg-Id`` is the record id too, so a batch sent again after a failure is dropped by
JetStream's duplicate window (``duplicate_window`` of the stream, 2 min by default); a consumer that must be
exactly-once across longer outages dedups on ``ce-id``.

A batch counts as delivered when every message has a JetStream ack (``PubAck``). A timeout, a lost connection, no
stream listening on the subject (``no responders``) or a 503 from JetStream is transient (retried, the sink
pauses on the batch); a message the server refuses (over ``max_payload``, a 400 from the stream) is permanent (the
batch is dead-lettered at once, the answer kept).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from tanpuhui.sdk import OutboxRow, SinkError, SinkSettings

from .common import (
    CONTENT_TYPE,
    BrokerSettings,
    BrokerSink,
    TlsSettings,
    Unpublished,
    close_quietly,
    cloudevent_attributes,
    display_url,
    one_line,
    publish_concurrently,
    reject_url_password,
    template_field,
)

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

__all__ = ["NatsSettings", "NatsSink"]

log = logging.getLogger("tanpuhui.forwarder")


class NatsSettings(BrokerSettings):
    """``[sinks.NAME]`` with ``type = "nats"`` (see docs/sinks.md).

    ``url``: one server or several, comma-separated (``nats://`` or ``tls://``); ``subject``: a template with
    ``{adapter}``, ``{stream}``, ``{scenario}``; ``stream``: the JetStream stream expected to store the subject
    (checked by ``/readyz``, and each publish is refused by any other stream). Credentials only from the
    environment: ``username`` + ``password``, or ``token``.
    """

    type: Literal["nats"] = "nats"
    url: str = Field(default="nats://127.0.0.1:4222", pattern=r"^(nats|tls)://")
    subject: str = Field(default="tanpuhui.reductions.{scenario}", min_length=1)
    stream: str | None = Field(default=None, pattern=r"^[^\s.*>]+$")
    token: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0, description="seconds to wait for each JetStream ack")
    max_in_flight: int = Field(default=256, ge=1, le=65536, description="publishes awaiting their ack at once")

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        for server in value.split(","):
            reject_url_password(server.strip())
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if any(c.isspace() for c in value) or "*" in value or ">" in value:
            raise ValueError("a subject to publish to has no spaces and no wildcards (* or >)")
        return template_field(value, "subject")

    @model_validator(mode="after")
    def _token_or_user(self) -> NatsSettings:
        if self.token is not None and self.username is not None:
            raise ValueError("give either username + password or token, not both")
        return self


class NatsSink(BrokerSink[NatsSettings, "JetStreamContext"]):
    """Publishes each record to JetStream with its record id as ``Nats-Msg-Id``; one connection per sink."""

    kind = "nats"
    Settings = NatsSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        super().__init__(name, settings, NatsSettings, template_key="subject", client=("nats", "nats-py"))
        servers = [s.strip() for s in self._settings.url.split(",") if s.strip()]
        self._servers = servers
        self._where = f"nats sink {name!r} ({', '.join(display_url(s) for s in servers)})"
        self._client: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._last_error: str | None = None

    async def _connect_locked(self) -> JetStreamContext:
        loop = asyncio.get_running_loop()
        if self._client is not None and (self._loop is not loop or self._client.is_closed):
            self._client, self._js = None, None  # a connection belongs to the loop that opened it
        if self._js is None:
            s = self._settings
            options: dict[str, Any] = {
                "servers": self._servers,
                "name": f"tanpuhui sink {self.name}",
                "connect_timeout": min(s.timeout, 5.0),
                "allow_reconnect": True,
                "max_reconnect_attempts": -1,
                "reconnect_time_wait": 0.5,
                "error_cb": self._on_error,
                "disconnected_cb": self._on_disconnected,
            }
            if s.username is not None:
                options["user"] = s.username
                options["password"] = s.password.get_secret_value() if s.password else ""
            if s.token is not None:
                options["token"] = s.token.get_secret_value()
            if s.tls is not None or any(server.startswith("tls://") for server in self._servers):
                tls = s.tls or TlsSettings()
                options["tls"] = tls.context()
                if tls.server_name:
                    options["tls_hostname"] = tls.server_name
            try:
                # With reconnects unbounded, nats-py retries a first connection forever: bound it here.
                client: NatsClient = await asyncio.wait_for(self._library.connect(**options), s.timeout)
            except Exception as exc:  # NoServersError, OSError, timeouts, auth failures
                why = one_line(exc)
                if self._last_error and self._last_error not in why:
                    why += f"; last error: {self._last_error}"  # what each retry inside the client met (TLS, auth)
                raise SinkError(f"{self._where}: cannot connect ({why})", retryable=True) from exc
            self._client, self._loop, self._last_error = client, loop, None
            self._js = client.jetstream(timeout=s.timeout)
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = one_line(exc)
        log.debug("%s: %s", self._where, self._last_error)

    async def _on_disconnected(self) -> None:
        log.info("%s: disconnected; reconnecting", self._where)

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        if not batch:
            return
        js = await self._connected()
        source = self._settings.source
        expected = self._settings.stream
        window = self._settings.max_in_flight

        async def publish(row: OutboxRow) -> None:
            headers = {f"ce-{k}": v for k, v in cloudevent_attributes(row, source).items()}
            headers["content-type"] = CONTENT_TYPE
            headers["Nats-Msg-Id"] = row.record_id
            await js.publish(self._template.render(row), row.body, stream=expected, headers=headers)

        unpublished = await publish_concurrently(batch, publish, window)
        if unpublished is not None:
            raise self._error(unpublished)

    def _error(self, unpublished: Unpublished) -> SinkError:
        errors = self._library.errors
        js_errors = self._library.js.errors
        exc = unpublished.error
        message = self._unpublished_error(unpublished, "unacknowledged")
        if isinstance(exc, js_errors.NoStreamResponseError | errors.NoRespondersError):
            message += "; no JetStream stream stores this subject"
            return SinkError(message, retryable=True)
        if isinstance(exc, errors.MaxPayloadError | errors.BadSubjectError | js_errors.BadRequestError):
            return SinkError(message, retryable=False)
        if isinstance(exc, js_errors.APIError) and exc.code == 400:
            return SinkError(message, retryable=False)
        return SinkError(message, retryable=True)

    async def check(self) -> None:
        """Connected, and the configured ``stream`` exists (its info answers)."""
        js = await self._connected()
        if self._settings.stream is None:
            return
        try:
            await js.stream_info(self._settings.stream)
        except Exception as exc:
            raise SinkError(
                f"{self._where}: stream {self._settings.stream!r} is not available ({one_line(exc)})", retryable=True
            ) from exc

    async def aclose(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and self._loop is asyncio.get_running_loop() and not client.is_closed:
            await close_quietly(client.close(), self._where)
