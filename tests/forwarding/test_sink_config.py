"""Broker sink tables in hub.toml: a mistake is refused at start, naming the sink and the key; each sink type's
settings model refuses a bad value saying what is wrong with it."""

from __future__ import annotations

import base64
from pathlib import Path

import pydantic
import pytest

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.sinks.amqp import AmqpSink
from tanpuhui.hub.sinks.common import cloudevent_attributes
from tanpuhui.hub.sinks.mqtt import MqttSink
from tanpuhui.hub.sinks.nats import NatsSink
from tanpuhui.hub.sinks.postgres import PostgresSink
from tanpuhui.sdk import ConfigError, OutboxRow

ENV = {"KEYS": "v1:" + base64.b64encode(b"k" * 32).decode(), "BUS_PASSWORD": "from-the-environment"}


def build(tmp_path: Path, table: dict[str, object]) -> dict[str, object]:
    doc = {"hub": {"store": str(tmp_path / "hub.db"), "pseudonym_keys": {"env": "KEYS"}}, "sinks": {"bus": table}}
    hub = Hub(HubConfig.from_dict(doc, source="hub.toml", environ=ENV))
    try:
        return dict(hub.build_sinks())
    finally:
        hub.store.close()


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            {"type": "nats", "subject": "carbon.{region}"},
            "hub.toml: sinks.bus.subject: Value error, subject 'carbon.{region}' has an unknown or malformed "
            "placeholder (region); use {adapter}, {stream}, {scenario}",
        ),
        ({"type": "amqp", "password": "guest"}, "hub.toml: sinks.bus.password holds a literal secret"),
        ({"type": "mqtt", "token": "abc"}, "hub.toml: sinks.bus.token holds a literal secret"),
        (
            {"type": "postgres", "url": "postgresql://hub:pw@db/carbon"},
            "sinks.bus.url: Value error, the URL holds a literal password",
        ),
        (
            {"type": "mqtt", "tls": {"ca_file": "/nonexistent/ca.pem"}},
            "sinks.bus.tls: Value error, ca_file '/nonexistent/ca.pem' is not a readable file",
        ),
        ({"type": "amqp", "exchnage": "tanpuhui"}, "sinks.bus.exchnage: Extra inputs are not permitted"),
        ({"type": "postgres"}, "sinks.bus.url: Field required"),
        (
            {"type": "kafka"},
            "[sinks.bus] type 'kafka' is not a registered sink type (amqp, http, jsonl, mqtt, nats, postgres)",
        ),
    ],
)
def test_a_bad_sink_table_is_refused_naming_the_sink_and_key(tmp_path, table, expected):
    with pytest.raises(ConfigError) as raised:
        build(tmp_path, table)
    assert expected in str(raised.value)


SETTINGS = {
    "amqp": AmqpSink.Settings,
    "mqtt": MqttSink.Settings,
    "nats": NatsSink.Settings,
    "postgres": PostgresSink.Settings,
}


@pytest.mark.parametrize(
    ("kind", "settings", "expected"),
    [
        ("amqp", {"url": "amqp://guest:guest@127.0.0.1:5672/"}, "literal password"),
        ("amqp", {"routing_key": "{scenario}.{subject}"}, "unknown or malformed placeholder"),
        ("amqp", {"url": "mqtt://127.0.0.1"}, "should match pattern"),
        ("amqp", {"max_in_flight": 0}, "greater than or equal to 1"),
        ("mqtt", {"url": "mqtt://hub:pw@127.0.0.1:1883"}, "literal password"),
        ("mqtt", {"topic": "tanpuhui/#"}, "no wildcards"),
        ("mqtt", {"topic": "tanpuhui/{partner}"}, "unknown or malformed placeholder"),
        ("mqtt", {"password": "x"}, "password needs username"),
        ("nats", {"url": "nats://hub:s3cret@127.0.0.1:4222"}, "literal password"),
        ("nats", {"subject": "tanpuhui.{region}"}, "unknown or malformed placeholder"),
        ("nats", {"subject": "tanpuhui.>"}, "no wildcards"),
        ("nats", {"password": "x"}, "password needs username"),
        ("nats", {"url": "http://127.0.0.1:4222"}, "should match pattern"),
        ("postgres", {"url": "postgresql://hub:pw@db.example.cn/carbon"}, "literal password"),
        ("postgres", {"url": "postgresql://hub@db.example.cn/carbon?password=pw"}, "literal password"),
        ("postgres", {"url": "postgresql://hub@db/carbon", "table": "records; DROP TABLE x"}, "should match pattern"),
        ("postgres", {"url": "postgresql://hub@db/carbon", "sslmode": "sometimes"}, "sslmode"),
    ],
)
def test_a_bad_setting_is_refused_by_the_sink_types_settings_model(kind, settings, expected):
    with pytest.raises(pydantic.ValidationError, match=expected):
        SETTINGS[kind].model_validate({"type": kind, **settings})


def test_the_password_comes_from_the_environment(tmp_path):
    sinks = build(tmp_path, {"type": "amqp", "username": "hub", "password": {"env": "BUS_PASSWORD"}})
    settings = sinks["bus"].settings
    assert settings.password.get_secret_value() == "from-the-environment"  # type: ignore[attr-defined]
    assert "from-the-environment" not in repr(settings)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("created", "org.tanpuhui.reduction.v1"),
        ("corrected", "org.tanpuhui.reduction.corrected.v1"),
        ("voided", "org.tanpuhui.reduction.voided.v1"),
    ],
)
def test_broker_messages_carry_the_cloudevents_type_of_their_kind(kind: str, expected: str) -> None:
    # The NATS, RabbitMQ and MQTT sinks all take their CloudEvents attributes from here, as the HTTP sink types its
    # events: a correction or a void must never reach a broker consumer typed as a new record.
    row = OutboxRow(7, "01JCN1V380286DNTVYFJ1T13KV", "state_grid", "readings", "peak_electricity_saving", b"{}", kind)
    assert cloudevent_attributes(row, "urn:tanpuhui:hub")["type"] == expected
