"""`tanpuhui schemas`, `tanpuhui schemas NAME` and `tanpuhui schemas diff OLD NEW` (exit 0 / 1 breaking / 2 usage)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.schemas import load_builtin


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def write(path: Path, doc: Any) -> str:
    path.write_bytes(orjson.dumps(doc))
    return str(path)


def test_schemas_lists_every_schema_with_its_major_version() -> None:
    code, output = run("schemas")
    assert code == 0
    assert "transit-card-trip" in output and "reduction-record" in output
    assert "v1" in output


def test_schemas_name_prints_the_schema_as_json() -> None:
    code, output = run("schemas", "transit-card-trip")
    assert code == 0
    assert orjson.loads(output)["$id"] == load_builtin("transit-card-trip")["$id"]


def test_schemas_unknown_name_is_a_usage_error() -> None:
    code, output = run("schemas", "no-such-schema")
    assert code == 2
    assert "unknown schema 'no-such-schema'" in output


def test_diff_of_a_schema_with_itself_exits_0() -> None:
    code, output = run("schemas", "diff", "transit-card-trip", "transit-card-trip")
    assert (code, output.strip()) == (0, "no changes")


def test_diff_with_only_compatible_changes_exits_0(tmp_path: Path) -> None:
    new = copy.deepcopy(load_builtin("transit-card-trip"))
    new["properties"]["line_name"] = {"description": "Line name.", "type": "string"}
    code, output = run("schemas", "diff", "transit-card-trip", write(tmp_path / "new.json", new))
    assert code == 0
    assert "ok       /properties/line_name: optional property added" in output


def test_diff_with_a_breaking_change_exits_1_and_names_it(tmp_path: Path) -> None:
    old = load_builtin("transit-card-trip")
    new = copy.deepcopy(old)
    new["required"].append("transfer")
    code, output = run("schemas", "diff", write(tmp_path / "old.json", old), write(tmp_path / "new.json", new))
    assert code == 1
    assert "BREAKING /properties/transfer: newly required" in output


def test_diff_of_an_unknown_name_or_a_bad_file_exits_2(tmp_path: Path) -> None:
    assert run("schemas", "diff", "no-such-schema", "transit-card-trip")[0] == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, output = run("schemas", "diff", str(bad), "transit-card-trip")
    assert code == 2
    assert "bad.json: not JSON" in output
    assert run("schemas", "diff", "transit-card-trip")[0] == 2
