"""Delivery targets shipped with the hub: JSONL files, CloudEvents over HTTP, NATS JetStream, RabbitMQ (AMQP 0-9-1),
a PostgreSQL table and MQTT 5 (docs/sinks.md). The broker clients are the ``sinks`` extra."""

from .amqp import AmqpSink
from .http import HttpSink
from .jsonl import JsonlSink
from .mqtt import MqttSink
from .nats import NatsSink
from .postgres import PostgresSink

__all__ = ["AmqpSink", "HttpSink", "JsonlSink", "MqttSink", "NatsSink", "PostgresSink"]
