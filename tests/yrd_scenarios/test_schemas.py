"""The YRD partner schemas: examples, personal-data annotations, and what they accept and refuse."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tanpuhui.adapters.yrd_scenarios.sandbox import SandboxExchange
from tanpuhui.hub.validation import SchemaRegistry
from tanpuhui.schemas import load_builtin

from .conftest import RECORD, metro_record

NAMES = ("yrd-record", "yrd-scenario")


@pytest.mark.parametrize("name", NAMES)
def test_the_schema_is_valid_2020_12_with_a_partner_id(name: str) -> None:
    doc = load_builtin(name)
    Draft202012Validator.check_schema(doc)
    assert doc["$id"].startswith("https://schemas.tanpuhui.org/partners/yrd/")


@pytest.mark.parametrize("name", NAMES)
def test_every_example_validates_with_both_validators(name: str) -> None:
    doc = load_builtin(name)
    reference = Draft202012Validator(doc, format_checker=Draft202012Validator.FORMAT_CHECKER)
    fast = SchemaRegistry().get(name)
    assert doc["examples"]
    for example in doc["examples"]:
        assert list(reference.iter_errors(example)) == []
        assert fast.problems(example) == []


def test_personal_fields_are_annotated() -> None:
    assert SchemaRegistry().get("yrd-record").personal_fields == {
        "resident_id": "resident_id",
        "mobile": "mobile",
        "consent_id": "reference",  # the resident's authorisation reference leads to the person: pseudonymised
    }


def problems(item: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.pointer, p.keyword) for p in SchemaRegistry().get("yrd-record").problems(item)]


def test_a_record_must_name_the_resident_somehow() -> None:
    assert problems(metro_record(mobile=None, check=False)) == [("", "anyOf")]


def test_an_activity_quantity_needs_its_unit() -> None:
    assert problems(metro_record(activity_unit=None, check=False)) == [("", "dependentRequired")]


def test_a_time_without_offset_is_refused() -> None:
    found = problems(metro_record(start_time="2024-11-05T08:11:00", check=False))
    assert {pointer for pointer, _ in found} == {"/start_time"}


def test_a_status_outside_the_three_is_refused() -> None:
    assert problems(metro_record(status="pending", check=False)) == [("/status", "enum")]


def test_a_resident_id_of_the_wrong_shape_is_refused_by_the_schema() -> None:
    assert problems(metro_record(resident_id="34052419801301001X", check=False)) == [("/resident_id", "pattern")]


def test_the_sandbox_serves_schema_valid_items_except_the_ones_meant_to_be_invalid() -> None:
    dataset = SandboxExchange(800, 3).dataset
    invalid = {i["record_id"] for i in dataset.items if not RECORD.is_valid(i)}
    assert invalid == set(dataset.kinds["no_offset"])
    catalog = Draft202012Validator(load_builtin("yrd-scenario"))
    assert all(catalog.is_valid(entry) for entry in dataset.catalog())
