"""GET /v1/schemas, GET /v1/schemas/{name} and /catalogue/ on the sidecar: no token, every installed schema."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from tanpuhui.schemas import load_builtin

from .conftest import SidecarFactory

README = Path(__file__).parent.parent.parent / "README.md"
DOCS = README.parent / "docs" / "adapters"


def test_the_listing_names_every_schema_with_id_version_title_and_partner(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    response = server.http.get("/v1/schemas")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["schemas"]}
    assert rows["transit-card-trip"] == {
        "name": "transit-card-trip",
        "$id": "https://schemas.tanpuhui.org/partners/transit-card/trip/v1.json",
        "version": "1",
        "title": "Transit card transaction (partner payload)",
        "partner": "transit_card",
    }
    assert rows["reduction-record"]["partner"] == "tanpuhui"
    assert rows["bike-ride"]["partner"] == "bike_share"  # a third-party adapter's schema is published too


def test_one_schema_is_served_as_schema_json_unchanged(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    response = server.http.get("/v1/schemas/reduction-record")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/schema+json"
    assert response.json() == load_builtin("reduction-record")


def test_an_unknown_schema_is_a_problem_404_naming_the_known_ones(start_sidecar: SidecarFactory) -> None:
    response = start_sidecar().http.get("/v1/schemas/no-such")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "transit-card-trip" in response.json()["detail"]


def test_the_catalogue_pages_need_no_token_and_point_snippets_at_this_sidecar(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    index = server.http.get("/catalogue/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert 'href="schemas/transit-card-trip.html"' in index.text
    page = server.http.get("/catalogue/schemas/transit-card-trip.html")
    assert page.status_code == 200
    assert f"{server.url}/v1/validate/transit-card-trip" in page.text
    assert "application/x-ndjson" in page.text
    assert server.http.get("/catalogue/style.css").headers["content-type"].startswith("text/css")
    assert server.http.get("/catalogue/schemas/bike-ride.schema.json").json()["title"].startswith("Shared-bike")
    assert server.http.get("/catalogue/nope.html").status_code == 404


def test_the_openapi_document_describes_the_catalogue_routes(start_sidecar: SidecarFactory) -> None:
    paths = start_sidecar().http.get("/openapi.json").json()["paths"]
    assert paths["/v1/schemas"]["get"]["operationId"] == "list_schemas"
    assert "application/schema+json" in paths["/v1/schemas/{name}"]["get"]["responses"]["200"]["content"]
    assert "/catalogue/{path}" in paths


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson", "application/jsonl"])
def test_the_validate_endpoint_takes_the_three_documented_media_types(
    start_sidecar: SidecarFactory, content_type: str
) -> None:
    example = load_builtin("transit-card-trip")["examples"][0]
    response = start_sidecar().http.post(
        "/v1/validate/transit-card-trip", content=orjson.dumps(example), headers={"content-type": content_type}
    )
    assert response.status_code == 200
    assert response.json()["invalid"] == 0


def test_a_plain_curl_data_binary_gets_415_naming_the_header_to_send(start_sidecar: SidecarFactory) -> None:
    response = start_sidecar().http.post(
        "/v1/validate/transit-card-trip",
        content=b"{}",
        headers={"content-type": "application/x-www-form-urlencoded"},  # what curl --data-binary sends by default
    )
    assert response.status_code == 415
    assert "application/jsonl" in response.json()["detail"]


@pytest.mark.parametrize("doc", [*sorted(DOCS.glob("*.md")), README], ids=lambda p: p.name)
def test_the_docs_show_the_content_type_header_in_a_curl_example(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert re.search(r"curl .*/v1/validate/[a-z-]+ \\\n\s+-H 'Content-Type: application/(json|x-ndjson)'", text), doc
