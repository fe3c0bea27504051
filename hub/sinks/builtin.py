"""The hub's own sinks (JSONL, HTTP, NATS JetStream, RabbitMQ, PostgreSQL, MQTT), registered through the same hook as any plugin's (see ``tanpuhui.hub.plugins``)."""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Sink, hookimpl

from .amqp import AmqpSink
from .http import HttpSink
from .jsonl import JsonlSink
from .mqtt import MqttSink
from .nats import NatsSink
from .postgres import PostgresSink

__all__ = ["BUILTIN_SINKS", "register_sinks"]

BUILTIN_SINKS: tuple[type[Sink], ...] = (JsonlSink, HttpSink, NatsSink, AmqpSink, PostgresSink, MqttSink)


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    for sink in BUILTIN_SINKS:
        register(sink)
