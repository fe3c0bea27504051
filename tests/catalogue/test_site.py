"""The static catalogue: every schema and methodology of every plugin, third-party ones included, offline-safe."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, ClassVar

from click.testing import CliRunner

from tanpuhui.hub.catalogue.entries import HUB_PARTNER, Catalogue
from tanpuhui.hub.catalogue.fields import constraints_in_words, type_in_words
from tanpuhui.hub.catalogue.site import Site, python_literal
from tanpuhui.hub.cli import main
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.validation import SchemaRegistry
from tanpuhui.sdk import Adapter, AdapterPlugin, AdapterSettings, Factor, Formula, Methodology

BILL = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://schemas.example.org/wuhu-gas/bill/v2.json",
    "title": "Wuhu gas bill",
    "description": "One monthly bill.",
    "type": "object",
    "required": ["bill_id"],
    "properties": {
        "bill_id": {"description": "Bill id (账单号).", "type": "string", "maxLength": 1},
        "account": {"description": "Account (户号).", "type": "string", "x-personal-data": "account"},
    },
    "examples": [{"bill_id": "B"}],
    "x-invalid-examples": [{"bill_id": "BB"}],
}

WUHU = Methodology(
    id="wuhu.gas.saving",
    version="2.1.0",
    scenario="peak_gas_saving",
    title="Gas saving against last year",
    formula=Formula("(baseline - activity) * ef_gas"),
    factors=(Factor("ef_gas", 2.162, "kgCO2e/m3", "Provincial list 2024", default=True),),
    activity_unit="m3",
    needs_baseline=True,
)


class WuhuGas(Adapter):
    name = "wuhu_gas"
    version = "0.1.0"
    title = "Wuhu gas utility"
    Settings = AdapterSettings
    schemas: ClassVar[dict[str, Any]] = {"wuhu-gas-bill": BILL}
    stream_types = ()


def third_party_site(tmp_path: Path) -> tuple[Path, Catalogue]:
    plugins = load_plugins([AdapterPlugin(WuhuGas, methodologies=(WUHU,))])
    catalogue = Catalogue.of(plugins, SchemaRegistry({"wuhu-gas-bill": BILL}))
    Site(catalogue, sidecar_url="https://hub.example.org/").write(tmp_path)
    return tmp_path, catalogue


def test_a_third_party_adapter_gets_its_schema_and_methodology_pages(tmp_path: Path) -> None:
    site, catalogue = third_party_site(tmp_path)
    assert {s.name: s.partner for s in catalogue.schemas}["wuhu-gas-bill"] == "wuhu_gas"
    page = (site / "schemas" / "wuhu-gas-bill.html").read_text()
    assert "Wuhu gas bill" in page and "Bill id (账单号)." in page
    assert "yes (account)" in page
    assert "at most 1 character" in page
    assert "https://hub.example.org/v1/validate/wuhu-gas-bill" in page
    assert (site / "schemas" / "wuhu-gas-bill.schema.json").is_file()
    methodology = (site / "methodologies" / "wuhu.gas.saving-2.1.0.html").read_text()
    assert "(baseline - activity) * ef_gas" in methodology
    assert "Provincial list 2024" in methodology and "labelled default" in methodology


def test_the_index_groups_schemas_by_partner_with_the_hub_first(tmp_path: Path) -> None:
    site, catalogue = third_party_site(tmp_path)
    assert next(iter(catalogue.partners())) == HUB_PARTNER
    index = (site / "index.html").read_text()
    assert index.index("reduction-record") < index.index("wuhu-gas-bill")
    assert 'href="methodologies/wuhu.gas.saving-2.1.0.html"' in index


def test_pages_load_nothing_from_the_network(tmp_path: Path) -> None:
    site, _ = third_party_site(tmp_path)
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "<script" not in text
        assert 'src="http' not in text and 'href="http' not in text, page


def test_constraints_and_types_are_said_in_words() -> None:
    assert type_in_words({"type": ["string", "null"]}) == "string or null"
    assert type_in_words({"enum": ["a", 1]}) == 'one of "a", 1'
    assert type_in_words({"type": "array", "items": {"type": "integer"}}) == "array of integer"
    assert constraints_in_words({"minimum": 0, "exclusiveMaximum": 5, "format": "date"}) == [
        "≥ 0",
        "< 5",
        "format calendar date YYYY-MM-DD",
    ]
    assert constraints_in_words({"minLength": 1, "maxLength": 8}) == ["at least 1 character", "at most 8 characters"]


def test_catalogue_build_writes_the_site_and_refuses_an_unwritable_place(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["catalogue", "build", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "schemas" / "transit-card-trip.html").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["catalogue", "build", str(blocker / "site")])
    assert result.exit_code == 2
    assert "cannot write the catalogue" in result.output


def test_the_python_snippets_example_is_a_python_literal_of_the_json() -> None:
    document = {
        "ok": True,
        "no": False,
        "none": None,
        "text": 'say "合肥"\\ \n\u2028',
        "n": [0, -1.5, 6.0, 1e-05, 12345678901234567890],
        "nested": {"deep": [{"a": None}, []], "empty": {}},
    }
    for width in (100, 20, 1):  # one line, some items exploded, every container exploded
        source = python_literal([document], column=12, width=width)
        assert ast.literal_eval(source) == [document], source
    assert python_literal({"a": True, "b": None}) == '{"a": True, "b": None}'
    assert python_literal({"key": [1, 2], "other": 3}, width=20) == '{\n    "key": [1, 2],\n    "other": 3,\n}'
