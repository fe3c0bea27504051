"""Every shipped schema documents itself: described properties, marked personal data, valid and invalid examples.

The schemas are the hub's own (schemas/*.json), every installed adapter's (``Adapter.schemas``) and the example
third-party adapter's (examples/hefei_water). Valid examples sit in the standard ``examples`` keyword; invalid
ones in ``x-invalid-examples``, which validators ignore (docs/schemas.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from tanpuhui.hub.catalogue.fields import fields_of
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.schema_diff import schema_version
from tanpuhui.hub.validation import CompiledSchema
from tanpuhui.schemas import builtin_names, load_builtin

EXAMPLE_SCHEMAS = Path(__file__).parent.parent.parent / "examples" / "hefei_water" / "src" / "hefei_water" / "schemas"
PERSONAL_KINDS = {"resident_id", "mobile", "card", "account", "enterprise", "device", "reference"}


def _all_schemas() -> dict[str, Mapping[str, Any]]:
    docs: dict[str, Mapping[str, Any]] = {n: load_builtin(n) for n in builtin_names()}
    for cls in load_plugins().adapters.values():
        docs.update(cls.schemas)
    for path in sorted(EXAMPLE_SCHEMAS.glob("*.schema.json")):
        docs[path.name.removesuffix(".schema.json")] = orjson.loads(path.read_bytes())
    return docs


SCHEMAS = _all_schemas()


def test_the_hub_the_adapters_and_the_example_adapter_are_all_covered() -> None:
    assert {"reduction-record", "transit-card-trip", "state-grid-reading", "yrd-record", "hefei-water-bill"} <= set(
        SCHEMAS
    )


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_property_has_a_description(name: str) -> None:
    missing = [f.pointer for f in fields_of(SCHEMAS[name]) if not (f.description or "").strip()]
    assert missing == [], f"{name}: properties without a description: {missing}"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_schema_has_a_title_a_description_and_a_versioned_id(name: str) -> None:
    doc = SCHEMAS[name]
    assert doc.get("title") and doc.get("description")
    assert schema_version(doc) is not None, f"{name}: $id {doc.get('$id')!r} does not end in /v<MAJOR>.json"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_personal_data_marks_name_a_known_kind(name: str) -> None:
    kinds = {f.name: f.personal_data for f in fields_of(SCHEMAS[name]) if f.personal_data is not None}
    assert set(kinds.values()) <= PERSONAL_KINDS, f"{name}: {kinds}"


def _both_validators(name: str) -> tuple[Draft202012Validator, CompiledSchema]:
    """The reference validator (jsonschema, formats checked) and the hub's compiled one, for schema ``name``."""
    doc = SCHEMAS[name]
    return Draft202012Validator(dict(doc), format_checker=Draft202012Validator.FORMAT_CHECKER), CompiledSchema(
        name, doc
    )


@pytest.mark.parametrize("key, valid", [("examples", True), ("x-invalid-examples", False)], ids=["valid", "invalid"])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_example_passes_or_fails_both_validators_as_the_schema_says(name: str, key: str, valid: bool) -> None:
    examples = SCHEMAS[name].get(key)
    reference, fast = _both_validators(name)
    assert examples, f"{name}: no {key}"
    for i, example in enumerate(examples):
        errors = [e.message for e in reference.iter_errors(example)]
        assert (errors == []) is valid, f"{name}: {key}[{i}]: {errors or 'valid'}"
        problems = fast.problems(example)
        assert (problems == []) is valid, f"{name}: {key}[{i}]: {problems or 'valid'}"


def test_the_walk_reports_a_missing_description_by_pointer() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"description": "described", "type": "object", "properties": {"b": {"type": "string"}}},
            "c": {"type": "array", "items": {"type": "object", "properties": {"d": {"description": "x"}}}},
        },
    }
    assert [f.pointer for f in fields_of(schema) if f.description is None] == [
        "/properties/a/properties/b",
        "/properties/c",
    ]


HUB_OWN = {"reduction-record"}  # the hub's record: English field names, read by platform engineers
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("name", sorted(set(SCHEMAS) - HUB_OWN))
def test_partner_fields_are_described_in_english_and_chinese(name: str) -> None:
    english_only = [f.name for f in fields_of(SCHEMAS[name]) if not CJK.search(f.description or "")]
    assert english_only == [], f"{name}: descriptions without the Chinese term: {english_only}"
