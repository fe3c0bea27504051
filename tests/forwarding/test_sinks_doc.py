"""docs/sinks.md stays true: its hub.toml tables are valid sink settings, its DDL is the sink's (its consumers run:
test_sinks_doc_consumers.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.sinks.common import TlsSettings
from tanpuhui.hub.sinks.postgres import consumer_table_ddl

DOC = Path(__file__).parent.parent.parent / "docs" / "sinks.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)


def test_every_shipped_sink_type_has_a_section_and_is_registered():
    text = DOC.read_text(encoding="utf-8")
    registered = set(load_plugins(entry_points=False).sinks)
    assert {"jsonl", "http", "nats", "amqp", "postgres", "mqtt"} <= registered
    for kind in ("nats", "amqp", "postgres", "mqtt"):
        assert f"## `{kind}`" in text


def test_every_documented_sink_table_is_valid_configuration():
    sinks = load_plugins(entry_points=False).sinks
    tables = [tomllib.loads(b) for b in blocks("toml") if "type = " in b]
    assert len(tables) == 4
    env = {"NATS_PASSWORD": "n", "AMQP_PASSWORD": "a", "WAREHOUSE_PASSWORD": "w", "MQTT_PASSWORD": "m"}
    for document in tables:
        config = HubConfig.from_dict(document, source="docs/sinks.md", environ=env)  # literal secrets refused
        for name, table in config.sinks.items():
            settings = sinks[table["type"]].Settings.model_validate(table)
            assert settings.type == table["type"], name


def test_the_documented_tls_table_is_the_tls_settings(tmp_path):
    (tls_block,) = [b for b in blocks("toml") if ".tls]" in b]
    table = tomllib.loads(tls_block)["sinks"]["bus"]["tls"]
    for key in ("ca_file", "cert_file", "key_file"):
        path = tmp_path / Path(table[key]).name
        path.write_text("-")
        table[key] = str(path)
    assert TlsSettings.model_validate(table).server_name == "nats.exchange.example.cn"
    with pytest.raises(ValueError, match="is not a readable file"):
        TlsSettings.model_validate({"ca_file": str(tmp_path / "missing.pem")})


def test_the_documented_ddl_is_what_create_table_runs():
    (ddl,) = blocks("sql")
    assert " ".join(ddl.split()).rstrip(";") == " ".join(consumer_table_ddl().split())
