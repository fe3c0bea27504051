"""The published catalogue on the sidecar: ``GET /v1/schemas``, ``GET /v1/schemas/{name}`` and ``/catalogue/``.

No token: the catalogue describes formats and holds no data. ``/v1/schemas`` lists every schema (the hub's and every
installed adapter's) with its ``$id`` and major version; ``/v1/schemas/{name}`` answers the schema itself as
``application/schema+json``; ``/catalogue/`` serves the pages of :mod:`tanpuhui.hub.catalogue.site` (the same
pages ``tanpuhui catalogue build`` writes), their snippets pointing at the address the page was asked on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..catalogue.entries import Catalogue
from ..catalogue.site import Site
from .http import json_response, problem
from .openapi import Endpoint

__all__ = ["SCHEMA_JSON", "SchemasApi"]

SCHEMA_JSON = "application/schema+json"
_MEDIA = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": SCHEMA_JSON}
_SITES = 8
"""Sites kept rendered-per-address; requests for more addresses (other Host headers) render without caching."""
_PROBLEM = {
    "description": "Unknown name",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}

LIST_OPERATION: dict[str, Any] = {
    "operationId": "list_schemas",
    "summary": "Every published JSON Schema: name, $id, major version, title, partner",
    "tags": ["integrators"],
    "responses": {
        "200": {
            "description": "The schemas, sorted by name",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "schemas": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "$id", "version", "title", "partner"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "$id": {"type": "string"},
                                        "version": {"type": ["string", "null"], "description": "major, from $id"},
                                        "title": {"type": "string"},
                                        "partner": {"type": "string", "description": "the adapter, or tanpuhui"},
                                    },
                                },
                            }
                        },
                    }
                }
            },
        }
    },
}

GET_OPERATION: dict[str, Any] = {
    "operationId": "get_schema",
    "summary": "One JSON Schema (draft 2020-12), as published",
    "tags": ["integrators"],
    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    "responses": {
        "200": {"description": "The schema", "content": {SCHEMA_JSON: {"schema": {"type": "object"}}}},
        "404": _PROBLEM,
    },
}

PAGE_OPERATION: dict[str, Any] = {
    "operationId": "catalogue_page",
    "summary": "The human-readable catalogue: index by partner, a page per schema and per methodology",
    "tags": ["integrators"],
    "parameters": [
        {
            "name": "path",
            "in": "path",
            "required": True,
            "description": "empty (the index), schemas/<name>.html, methodologies/<id>-<version>.html, style.css",
            "schema": {"type": "string"},
        }
    ],
    "responses": {
        "200": {
            "description": "The page (HTML), the stylesheet (CSS) or a schema document",
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}},
                SCHEMA_JSON: {"schema": {"type": "object"}},
            },
        },
        "404": _PROBLEM,
    },
}


class SchemasApi:
    """The catalogue's routes (see the module docstring)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._sites: dict[str, Site] = {}

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("/v1/schemas", "GET", self.list_schemas, LIST_OPERATION),
            Endpoint("/v1/schemas/{name}", "GET", self.get_schema, GET_OPERATION),
            Endpoint("/catalogue/{path:path}", "GET", self.page, PAGE_OPERATION),
        ]

    async def list_schemas(self, request: Request) -> Response:
        return json_response({"schemas": [s.summary() for s in self.catalogue.schemas]})

    async def get_schema(self, request: Request) -> Response:
        name = request.path_params["name"]
        entry = self.catalogue.schema(name)
        if entry is None:
            known = ", ".join(s.name for s in self.catalogue.schemas)
            return problem(404, f"unknown schema {name!r}; known: {known}")
        response = json_response(dict(entry.document))
        response.headers["content-type"] = SCHEMA_JSON
        return response

    async def page(self, request: Request) -> Response:
        path = request.path_params["path"]
        body = await asyncio.to_thread(self._site(request).page, path)
        if body is None:
            return problem(404, f"no catalogue page {path!r}; start at /catalogue/")
        suffix = path[path.rfind(".") :] if "." in path else ".html"
        return Response(body, 200, media_type=_MEDIA.get(suffix, "application/octet-stream"))

    def _site(self, request: Request) -> Site:
        base = str(request.base_url).rstrip("/")
        site = self._sites.get(base)
        if site is None:
            site = Site(self.catalogue, sidecar_url=base)
            if len(self._sites) < _SITES:
                self._sites[base] = site
        return site
