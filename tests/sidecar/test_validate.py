"""POST /v1/validate/{schema}: what `tanpuhui validate --format json` says about a file, for a posted body."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub import validation
from tanpuhui.hub.cli import main
from tanpuhui.hub.validation import read_documents
from tanpuhui.sdk import Problem, SchemaError

from .conftest import SidecarFactory

GOOD = {"ride_id": "R1", "mobile": "13955123456", "start": "2024-11-05T08:00:00+08:00", "km": 2.4}
BAD = {"ride_id": "R2", "start": "2024-11-05 08:00:00", "km": -1}


def test_the_report_is_the_cli_report(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    server = start_sidecar()
    body = b"\n".join(orjson.dumps(d) for d in ({"id": 1}, {"record_id": "x"})) + b"\n{not json\n"
    file = tmp_path / "records.jsonl"
    file.write_bytes(body)
    cli = CliRunner().invoke(main, ["validate", str(file), "--schema", "reduction-record", "--format", "json"])
    assert cli.exit_code == 1, cli.output
    expected = orjson.loads(cli.stdout)
    response = server.http.post(
        "/v1/validate/reduction-record", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 200
    report = response.json()
    assert report["source"] == "request body"
    assert {**report, "source": expected["source"]} == expected
    assert report["invalid"] == 3 and report["results"][2]["line"] == 3


def test_errors_are_json_pointers_and_personal_data_is_masked(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    response = server.http.post("/v1/validate/bike-ride", json=[GOOD, BAD, {**GOOD, "km": "13955123456"}])
    report = response.json()
    assert (report["documents"], report["invalid"]) == (3, 2)
    assert report["results"][0] == {"index": 0, "valid": True, "errors": []}
    pointers = {e["pointer"] for e in report["results"][1]["errors"]}
    assert pointers == {"", "/start", "/km"}
    assert "13955123456" not in response.text and "139****3456" in response.text


def test_an_unknown_schema_is_404(start_sidecar: SidecarFactory) -> None:
    response = start_sidecar().http.post("/v1/validate/no-such-schema", json=GOOD)
    assert response.status_code == 404
    assert "unknown schema" in response.json()["detail"]


def test_an_empty_body_is_400(start_sidecar: SidecarFactory) -> None:
    response = start_sidecar().http.post(
        "/v1/validate/bike-ride", content=b"  ", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("content_type", ["text/csv", "application/xml"])
def test_other_content_types_are_415(start_sidecar: SidecarFactory, content_type: str) -> None:
    response = start_sidecar().http.post(
        "/v1/validate/bike-ride", content=b"a,b", headers={"content-type": content_type}
    )
    assert response.status_code == 415


def test_the_body_limit_applies(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={"max_body_bytes": 2048})
    response = server.http.post("/v1/validate/bike-ride", json=[GOOD] * 100)
    assert response.status_code == 413


# -- reading documents as a stream ------------------------------------------------------------------------------


def documents(data: bytes) -> list[tuple[int, int | None, object]]:
    return [(i, line, d.message if isinstance(d, Problem) else d) for i, line, d in read_documents(data, "f")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a": 1}\n', [(0, None, {"a": 1})]),  # one document on one line
        (b'\n  {\n  "a": 1\n}\n', [(0, None, {"a": 1})]),  # one document over several lines
        (b'{"a": 1}\n\n{"b": 2}\n', [(0, 1, {"a": 1}), (1, 3, {"b": 2})]),  # JSON Lines: numbered lines
        (b"[1, 2.5, -3e2]", [(0, None, 1), (1, None, 2.5), (2, None, -300.0)]),
        (b'[\n  {"a": 1},\n  {"b": [2]}\n]\n', [(0, None, {"a": 1}), (1, None, {"b": [2]})]),
        (b"[ ]", []),
    ],
)
def test_documents_are_read_from_json_json_arrays_and_json_lines(
    data: bytes, expected: list[tuple[int, int | None, object]]
) -> None:
    assert documents(data) == expected


def test_a_json_array_is_read_an_element_at_a_time_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_CHUNK", 7)  # every element, number and string crosses a boundary
    docs = [{"n": 10 ** (i % 19), "s": "é" * i, "f": i / 3} for i in range(40)]
    assert [d for _, _, d in documents(orjson.dumps(docs, option=orjson.OPT_INDENT_2))] == docs


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b'[1, {"a": tru', "element 1 of the JSON array is not JSON"),
        (b"[1, 2", "the JSON array is not closed after element 1"),
        (b"[1,", "the JSON array ends before element 1"),
        (b"[1] [2]", "unexpected data after the JSON array"),
        (b"[1, NaN]", "element 1 of the JSON array is not JSON"),
    ],
)
def test_a_broken_json_array_is_reported_where_it_breaks(data: bytes, said: str) -> None:
    found = documents(data)
    assert found[0] == (0, None, 1)
    assert said in str(found[-1][2])


def test_a_line_that_is_not_json_is_reported_and_the_rest_still_read() -> None:
    found = documents(b'{"a": 1}\n{nope\n{"b": 2}\n')
    assert found[0] == (0, 1, {"a": 1}) and found[2] == (2, 3, {"b": 2})
    assert found[1][:2] == (1, 2) and "line 2 is not JSON" in str(found[1][2])


@pytest.mark.parametrize("data", [b"", b"  \n\t\n"])
def test_empty_input_is_an_error(data: bytes) -> None:
    with pytest.raises(SchemaError, match="empty input"):
        documents(data)


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson", "application/jsonl"])
def test_the_endpoint_takes_json_and_json_lines(start_sidecar: SidecarFactory, content_type: str) -> None:
    body = b"\n".join(orjson.dumps(d) for d in (GOOD, BAD))
    if content_type == "application/json":
        body = orjson.dumps([GOOD, BAD])
    report = start_sidecar().http.post("/v1/validate/bike-ride", content=body, headers={"content-type": content_type})
    assert report.status_code == 200
    assert (report.json()["documents"], report.json()["invalid"]) == (2, 1)


def test_the_cli_json_report_of_an_array_is_the_endpoint_report(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    server = start_sidecar()
    body = orjson.dumps([{"id": 1}, {"record_id": "x"}], option=orjson.OPT_INDENT_2)
    file = tmp_path / "records.json"
    file.write_bytes(body)
    cli = CliRunner().invoke(main, ["validate", str(file), "--schema", "reduction-record", "--format", "json"])
    assert cli.exit_code == 1, cli.output
    response = server.http.post(
        "/v1/validate/reduction-record", content=body, headers={"content-type": "application/json"}
    )
    assert {**response.json(), "source": str(file)} == orjson.loads(cli.stdout)
    assert response.json()["results"][1]["index"] == 1
