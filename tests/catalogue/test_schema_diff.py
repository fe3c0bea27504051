"""The rules of schema evolution, pinned with examples: what `tanpuhui schemas diff` calls breaking and what not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tanpuhui.hub.schema_diff import diff, schema_version
from tanpuhui.schemas import load_builtin

BASE: dict[str, Any] = {
    "$id": "https://schemas.tanpuhui.org/partners/example/meter/v1.json",
    "type": "object",
    "required": ["id", "kwh"],
    "properties": {
        "id": {"description": "Reading id.", "type": "string", "pattern": "^[A-Z0-9]{4,16}$"},
        "kwh": {"description": "Energy.", "type": "number", "minimum": 0, "maximum": 100},
        "kind": {"description": "Kind.", "enum": ["normal", "estimated"]},
        "note": {"description": "Free text.", "type": ["string", "null"], "maxLength": 200},
        "lines": {
            "type": "array",
            "items": {"type": "object", "properties": {"km": {"type": "number", "minimum": 0}}},
        },
    },
}


def changed(edit: str) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    exec(edit, {"doc": doc, "p": doc["properties"]})
    return doc


BREAKING = {
    "a property removed": "del p['kind']",
    "a property newly required": "doc['required'].append('kind')",
    "a type narrowed": "p['note']['type'] = 'string'",
    "number narrowed to integer": "p['kwh']['type'] = 'integer'",
    "an enum value removed": "p['kind']['enum'] = ['normal']",
    "a pattern narrowed": "p['id']['pattern'] = '^[A-Z0-9]{8,16}$'",
    "a pattern added": "p['note']['pattern'] = '^[a-z ]*$'",
    "a format added": "p['note']['format'] = 'date'",
    "a maximum lowered": "p['kwh']['maximum'] = 50",
    "a minimum raised": "p['kwh']['minimum'] = 1",
    "a maxLength added to a nested item": "p['lines']['items']['properties']['km']['maximum'] = 500",
    "additionalProperties turned false": "doc['additionalProperties'] = False",
    "a nested property removed": "del p['lines']['items']['properties']['km']",
}

NOT_BREAKING = {
    "an optional property added": "p['meter'] = {'description': 'Meter.', 'type': 'string'}",
    "a description changed": "p['kwh']['description'] = 'Energy, kWh.'",
    "a type widened": "p['kwh']['type'] = ['number', 'string']",
    "an enum value added": "p['kind']['enum'] = ['normal', 'estimated', 'missing']",
    "a maximum raised": "p['kwh']['maximum'] = 1000",
    "a minimum removed": "del p['kwh']['minimum']",
    "a requirement dropped": "doc['required'] = ['id']",
    "a pattern removed": "del p['id']['pattern']",
    "examples changed": "doc['examples'] = [{'id': 'AB12', 'kwh': 1}]",
}


@pytest.mark.parametrize("edit", BREAKING.values(), ids=BREAKING.keys())
def test_breaking_changes_are_flagged(edit: str) -> None:
    changes = diff(BASE, changed(edit))
    assert any(c.breaking for c in changes), [str(c) for c in changes]


@pytest.mark.parametrize("edit", NOT_BREAKING.values(), ids=NOT_BREAKING.keys())
def test_compatible_changes_are_reported_but_not_breaking(edit: str) -> None:
    changes = diff(BASE, changed(edit))
    assert changes and not any(c.breaking for c in changes), [str(c) for c in changes]


def test_the_same_schema_has_no_changes() -> None:
    assert diff(BASE, copy.deepcopy(BASE)) == []


def test_a_breaking_change_under_the_same_major_asks_for_the_next_one() -> None:
    changes = diff(BASE, changed("del p['kind']"))
    assert [c.text for c in changes if c.pointer == "/$id"] == [
        "breaking changes keep the $id of v1: publish them as v2"
    ]


def test_a_breaking_change_published_as_the_next_major_still_lists_what_breaks() -> None:
    new = changed("del p['kind']; doc['$id'] = doc['$id'].replace('/v1.json', '/v2.json')")
    changes = diff(BASE, new)
    assert [str(c) for c in changes if c.breaking] == ["BREAKING /properties/kind: property removed"]
    assert schema_version(new) == "2"


def test_changes_name_the_pointer_into_the_schema() -> None:
    changes = diff(BASE, changed("p['kwh']['maximum'] = 50"))
    assert str(changes[0]) == "BREAKING /properties/kwh: maximum lowered: 100 -> 50"


def test_every_shipped_schema_has_a_major_version_in_its_id() -> None:
    assert schema_version(load_builtin("transit-card-trip")) == "1"
    assert schema_version({"$id": "https://example.org/no-version.json"}) is None
