"""The plugin, its methodologies, the settings and the partner schemas."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import ValidationError

from tanpuhui.adapters.provincial_bigdata import plugin
from tanpuhui.adapters.provincial_bigdata.adapter import DATASETS, ProvincialBigDataAdapter, ProvincialBigDataSettings
from tanpuhui.adapters.provincial_bigdata.methodologies import APPLIANCE_CATEGORIES, appliance_methodology_id
from tanpuhui.adapters.provincial_bigdata.sandbox import SandboxGateway
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import ConfigError, NoFactorVintage, is_valid_resident_id

from .conftest import ENV, HubFactory, make_settings, table

SCHEMAS = sorted(ProvincialBigDataAdapter.schemas)
DAY = timedelta(days=1)


def test_the_plugin_registers_the_adapter_and_one_methodology_per_appliance_category() -> None:
    plugins = load_plugins([plugin], entry_points=False)
    assert plugins.adapters["provincial_bigdata"] is ProvincialBigDataAdapter
    registered = {m for m in plugins.methodologies if m.startswith("tph.appliance.green.")}
    assert registered == {
        "tph.appliance.green.air-conditioner",
        "tph.appliance.green.refrigerator",
        "tph.appliance.green.washing-machine",
        "tph.appliance.green.electric-water-heater",
        "tph.appliance.green.television",
    }
    assert plugins.problems == []


def test_every_category_the_schema_allows_has_a_methodology() -> None:
    enum = load_builtin("provincial-green-appliance")["properties"]["category"]["enum"]
    assert tuple(enum) == APPLIANCE_CATEGORIES
    plugins = load_plugins([plugin], entry_points=False)
    for category in enum:
        methodology = plugins.methodology(appliance_methodology_id(category))
        assert methodology.version == "1.1.0" and methodology.activity_unit == "unit"
        assert methodology.factor("kwh_saved_per_unit").default is True
        assert methodology.factor("ef_grid", on="2024-11-05").value == 0.6782


def test_each_per_unit_saving_is_valid_from_the_day_its_energy_label_standard_took_effect() -> None:
    plugins = load_plugins([plugin], entry_points=False)
    in_force = {
        "air-conditioner": "2020-07-01",  # GB 21455-2019
        "refrigerator": "2016-10-01",  # GB 12021.2-2015
        "washing-machine": "2013-10-01",  # GB 12021.4-2013
        "electric-water-heater": "2008-11-01",  # GB 21519-2008
        "television": "2021-08-01",  # GB 24850-2020
    }
    for category, day in in_force.items():
        methodology = plugins.methodology(f"tph.appliance.green.{category}")
        factor = methodology.factor("kwh_saved_per_unit", on=day)
        assert (factor.valid_from and factor.valid_from.isoformat(), factor.valid_to) == (day, None), category
        doc = methodology.quantification(1, on="2024-11-05")
        assert doc["factors"][0]["valid_from"] == day and "valid_to" not in doc["factors"][0]
        # bought before the standard took effect: graded by an earlier standard, not valued with these grades
        flat_grid = methodology.with_factors({"ef_grid": 0.6782}, "test: one grid value for every date")
        with pytest.raises(NoFactorVintage, match=f"factor kwh_saved_per_unit .* {date.fromisoformat(day) - DAY}"):
            flat_grid.quantification(1, on=date.fromisoformat(day) - DAY)


def test_a_factor_override_in_hub_toml_changes_only_its_category(hub_factory: HubFactory) -> None:
    overrides = {"tph.appliance.green.refrigerator": {"factors": {"kwh_saved_per_unit": 120}}}
    hub = hub_factory(table(), methodologies=overrides)
    fridge = hub.methodology("tph.appliance.green.refrigerator").factor("kwh_saved_per_unit")
    assert (fridge.value, fridge.default) == (120.0, False)
    assert hub.methodology("tph.appliance.green.television").factor("kwh_saved_per_unit").value == 55.0


def test_the_adapter_declares_its_streams_and_schemas() -> None:
    assert [t.name for t in ProvincialBigDataAdapter.stream_types] == list(DATASETS)
    for stream_type in ProvincialBigDataAdapter.stream_types:
        assert stream_type.schema in ProvincialBigDataAdapter.schemas
        assert stream_type.id_field in load_builtin(stream_type.schema)["required"]


@pytest.mark.parametrize("name", SCHEMAS)
def test_partner_schemas_are_2020_12_with_stable_ids_and_valid_examples(name: str) -> None:
    schema = load_builtin(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert re.fullmatch(r"https://schemas\.tanpuhui\.org/partners/provincial-bigdata/[a-z-]+/v1\.json", schema["$id"])
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert schema["examples"]
    for example in schema["examples"]:
        assert list(validator.iter_errors(example)) == []


def test_personal_fields_are_annotated() -> None:
    marks = {
        name: {k: v["x-personal-data"] for k, v in load_builtin(name)["properties"].items() if "x-personal-data" in v}
        for name in SCHEMAS
    }
    assert marks["provincial-green-appliance"] == {"buyerIdNo": "resident_id", "buyerMobile": "mobile"}
    assert marks["provincial-water-usage"] == {"accountNo": "account", "meterNo": "device"}
    assert marks["provincial-gas-usage"] == {"accountNo": "account", "meterNo": "device"}
    assert marks["provincial-rooftop-pv"] == {"consNo": "account", "installationId": "reference"}


def test_the_example_resident_id_is_a_valid_gb_11643_number() -> None:
    (first, _) = load_builtin("provincial-green-appliance")["examples"]
    assert is_valid_resident_id(first["buyerIdNo"])


def test_a_purchase_without_any_buyer_identifier_is_schema_invalid() -> None:
    schema = load_builtin("provincial-green-appliance")
    example = dict(schema["examples"][0])
    del example["buyerIdNo"]
    errors = list(Draft202012Validator(schema).iter_errors(example))
    assert errors and errors[0].validator == "anyOf"


def test_every_sandbox_answer_shape_is_a_valid_envelope() -> None:
    gateway = SandboxGateway(days=2, purchases=4, households=2, installations=2, bad={})
    sealed = {
        "code": "0000",
        "msg": "success",
        **gateway.cipher.seal({"records": [], "hasMore": False}),
        "timestamp": "1",
    }
    validator = Draft202012Validator(load_builtin("provincial-gateway-envelope"))
    assert list(validator.iter_errors(sealed)) == []
    broken = {**sealed}
    del broken["signData"]
    assert list(validator.iter_errors(broken))


def test_sealed_datasets_need_both_keys() -> None:
    with pytest.raises(
        ValidationError,
        match="sm4_key_secret and mac_key_secret are required because encrypted_datasets lists water_usage",
    ):
        make_settings(sm4_key_secret=None)
    assert make_settings(sm4_key_secret=None, mac_key_secret=None, encrypted_datasets=[]).encrypted_datasets == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sm4_key_secret": "abcd"}, "SM4 key must be 16 bytes"),
        ({"mac_key_secret": "zz" * 16}, "MAC key must be a hex string"),
        ({"encrypted_datasets": ["electricity"]}, "unknown dataset"),
        ({"numbered_datasets": ["water"]}, "unknown dataset"),
        ({"dataset_codes": {"pv": "AH_PV_DAY"}}, "unknown dataset"),
        ({"records_path": "/share/v1/records"}, "must contain '{dataset}'"),
        ({"credited_grades": [0]}, "grades are 1 to 5"),
        ({"baseline_days": 3, "baseline_min_days": 5}, "must not exceed"),
        ({"base_url": "gateway.example"}, "http"),
        ({"sign_method": "MD5"}, "HMAC-SHA256"),
    ],
)
def test_settings_mistakes_are_caught_at_configuration_time(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises((ValidationError, ValueError), match=re.escape(message)):
        make_settings(**overrides)


@pytest.mark.parametrize("key", ["app_secret", "sm4_key_secret", "mac_key_secret"])
def test_hub_toml_refuses_literal_secrets(key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key} holds a literal secret"):
        HubConfig.from_dict(
            {"adapters": {"provincial_bigdata": table(**{key: "0123456789abcdef0123456789abcdef"})}}, environ=ENV
        )


def test_settings_typos_are_an_error() -> None:
    with pytest.raises(ValidationError, match="page_sise"):
        ProvincialBigDataSettings(**{**make_settings().model_dump(), "page_sise": 10})
