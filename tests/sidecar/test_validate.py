"""POST /v1/validate/{schema}: what `tanpuhui validate --format json` says about a file, for a posted body."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main

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
