"""The OpenAPI document matches the app's routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Mount, Route

from tanpuhui.hub.server import Sidecar
from tanpuhui.hub.server.openapi import openapi_path

from .conftest import SidecarFactory, hub_config, plugins


def routes(sidecar: Sidecar) -> set[tuple[str, str]]:
    out = set()
    for route in sidecar.app.routes:
        if isinstance(route, Mount) and route.path == "/console":
            continue  # the operator console's HTML pages: not API, kept out of the document
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette answers HEAD for every GET route
                out.add((openapi_path(route.path), method.lower()))
    return out


def test_the_document_lists_exactly_the_routes(tmp_path: Path) -> None:
    sidecar = Sidecar(hub_config(tmp_path), plugins=plugins())
    doc = sidecar.openapi_document()
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == routes(sidecar)
    assert ("/v1/webhooks/bike_share/rides", "post") in documented
    assert not any(path.startswith("/console") for path, _ in documented)
    assert doc["openapi"] == "3.1.0"


def test_webhook_bodies_are_described_by_the_partner_schema(tmp_path: Path) -> None:
    doc = Sidecar(hub_config(tmp_path), plugins=plugins()).openapi_document()
    op = doc["paths"]["/v1/webhooks/bike_share/rides"]["post"]
    variants = op["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert variants[0] == {"$ref": "#/components/schemas/bike-ride"}
    assert doc["components"]["schemas"]["bike-ride"]["title"] == "Shared-bike ride (test partner)"
    assert {"200", "400", "401", "409", "413", "415", "422"} <= set(op["responses"])


def test_admin_operations_require_the_bearer_scheme(tmp_path: Path) -> None:
    doc = Sidecar(hub_config(tmp_path), plugins=plugins()).openapi_document()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert (op.get("security") == [{"adminToken": []}]) == path.startswith("/v1/admin/"), path
    assert doc["components"]["securitySchemes"]["adminToken"] == {"type": "http", "scheme": "bearer"}


def test_every_reference_resolves(tmp_path: Path) -> None:
    doc = Sidecar(hub_config(tmp_path), plugins=plugins()).openapi_document()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc["paths"])
    walk(doc["components"])
    names = set(doc["components"]["schemas"])
    for ref in refs:
        if ref.startswith("#/components/schemas/"):
            assert ref.rsplit("/", 1)[1] in names, ref


def test_the_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    doc = Sidecar(hub_config(tmp_path), plugins=plugins()).openapi_document()
    validator.validate(doc)


def test_it_is_served_at_openapi_json(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    assert server.http.get("/openapi.json").json() == server.sidecar.openapi_document()
