"""The sidecar's OpenAPI 3.1 document, built from the same endpoint table as its routes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Endpoint", "document", "openapi_path"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route and its OpenAPI operation: the sidecar's routes and its document are built from one table."""

    path: str
    """Starlette path (``{entry_id:int}`` convertors allowed; the document shows ``{entry_id}``)."""
    method: str
    handler: Callable[[Request], Awaitable[Response]]
    operation: dict[str, Any]


_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def openapi_path(starlette_path: str) -> str:
    """``/quarantine/{entry_id:int}`` -> ``/quarantine/{entry_id}``."""
    return _CONVERTOR.sub(r"{\1}", starlette_path)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _ok(description: str, schema: Mapping[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": dict(schema)}}}


_REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Echoed in the response and in every log line of the request; generated when absent.",
    "schema": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._:\\-]+$"},
}

_SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": f"Standard Webhooks {what} (or the svix-{name.split('-')[1]} header).",
        "schema": {"type": "string"},
    }
    for name, what in (
        ("webhook-id", "message id: the idempotency key"),
        ("webhook-timestamp", "unix seconds, within 5 minutes of the sidecar's clock"),
        ("webhook-signature", "space-separated v1,<base64 HMAC-SHA256> signatures (several during rotation)"),
    )
]


def health_operation() -> dict[str, Any]:
    return {
        "operationId": "healthz",
        "summary": "The process is alive",
        "tags": ["operations"],
        "responses": {
            "200": _ok(
                "Alive",
                {
                    "type": "object",
                    "properties": {
                        "status": {"const": "ok"},
                        "pid": {"type": "integer", "description": "the process that answered (serve --workers)"},
                    },
                },
            )
        },
    }


def ready_operation() -> dict[str, Any]:
    return {
        "operationId": "readyz",
        "summary": "Ready to take traffic: store writable, adapters loaded, sinks reachable",
        "tags": ["operations"],
        "responses": {
            "200": _ok("Ready", _ref("Readiness")),
            "503": _ok("Not ready (the checks say why)", _ref("Readiness")),
        },
    }


def metrics_operation() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics (text exposition format 0.0.4)",
        "tags": ["operations"],
        "responses": {"200": _ok("Metrics", {"type": "string"}, "text/plain")},
    }


def openapi_operation() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["operations"],
        "responses": {"200": _ok("OpenAPI 3.1 document", {"type": "object"})},
    }


def validate_operation(schema_names: Sequence[str]) -> dict[str, Any]:
    return {
        "operationId": "validate",
        "summary": "Validate documents against a published schema (the report of `tanpuhui validate --format json`)",
        "tags": ["integrators"],
        "parameters": [
            {"name": "schema", "in": "path", "required": True, "schema": {"type": "string", "enum": list(schema_names)}}
        ],
        "requestBody": {
            "required": True,
            "description": "A JSON document, a JSON array of documents, or JSON Lines.",
            "content": {
                "application/json": {"schema": {}},
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/jsonl": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": _ok("One result per document (errors as JSON pointers)", _ref("ValidationReport")),
            "400": _problem("Empty body"),
            "404": _problem("Unknown schema"),
            "413": _problem("Body over the size limit"),
            "415": _problem("Not JSON or JSON Lines"),
        },
    }


def webhook_operation(adapter: str, stream: str, schema: str, description: str) -> dict[str, Any]:
    item = _ref(schema)
    return {
        "operationId": f"webhook_{adapter}_{stream}",
        "summary": f"Push {adapter}:{stream} items (signed with Standard Webhooks)",
        "description": (description + "\n\n" if description else "")
        + "The 200 answer comes after the items are committed. A repeat of a webhook id gets the first answer "
        "again (header `x-webhook-replayed: true`). Items that fail the schema or normalization are quarantined "
        "and reported per item; the others are accepted.",
        "tags": ["webhooks"],
        "parameters": _SIGNATURE_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            item,
                            {"type": "array", "items": item},
                            {
                                "type": "object",
                                "required": ["items"],
                                "properties": {"items": {"type": "array", "items": item}},
                            },
                        ]
                    }
                }
            },
        },
        "responses": {
            "200": _ok("Committed; one result per item", _ref("WebhookAnswer")),
            "400": _problem("Body is not JSON, or malformed signature headers"),
            "401": _problem("Missing, stale or wrong signature"),
            "409": _problem("The same webhook id is being processed"),
            "413": _problem("Body over the size limit"),
            "415": _problem("Not application/json"),
            "422": _problem("Webhook id reused with another body"),
            "503": _problem("The store could not commit; retry"),
        },
    }


_ADMIN: dict[str, dict[str, Any]] = {
    "streams": {
        "operationId": "admin_streams",
        "summary": "Every stream: cursor, last success, last error, schedule, running",
        "responses": {
            "200": _ok(
                "Streams",
                {"type": "object", "properties": {"streams": {"type": "array", "items": _ref("StreamStatus")}}},
            )
        },
    },
    "pull": {
        "operationId": "admin_pull",
        "summary": "Pull a stream now (202 started; ?wait=true waits and returns the summary)",
        "parameters": [
            {"name": "adapter", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "stream", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "wait", "in": "query", "required": False, "schema": {"type": "boolean"}},
        ],
        "responses": {
            "200": _ok("Finished (with ?wait=true)", {"type": "object"}),
            "202": _ok("Started", {"type": "object"}),
            "404": _problem("No such configured stream"),
            "409": _problem("A pull of this stream is running, or it is a push stream"),
        },
    },
    "quarantine_list": {
        "operationId": "admin_quarantine_list",
        "summary": "Quarantined items (without their raw payloads)",
        "parameters": [
            {"name": "adapter", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "status", "in": "query", "required": False, "schema": {"enum": ["open", "resolved", "discarded"]}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        ],
        "responses": {
            "200": _ok(
                "Entries",
                {"type": "object", "properties": {"entries": {"type": "array", "items": _ref("QuarantineEntry")}}},
            ),
            "400": _problem("Bad query"),
        },
    },
    "quarantine_show": {
        "operationId": "admin_quarantine_show",
        "summary": "One quarantined item with its raw payload, personal data masked",
        "parameters": [{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {"200": _ok("Entry", _ref("QuarantineEntry")), "404": _problem("No such entry")},
    },
    "quarantine_replay": {
        "operationId": "admin_quarantine_replay",
        "summary": "Run quarantined items through the pipeline again",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReplayRequest")}}},
        "responses": {"200": _ok("Per-entry results", {"type": "object"}), "400": _problem("Bad request body")},
    },
    "dead_letters": {
        "operationId": "admin_dead_letters",
        "summary": "Records whose delivery to a sink was given up",
        "parameters": [
            {"name": "sink", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        ],
        "responses": {"200": _ok("Dead letters", {"type": "object"}), "400": _problem("Bad query")},
    },
    "dead_letters_replay": {
        "operationId": "admin_dead_letters_replay",
        "summary": "Send dead letters again",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReplayRequest")}}},
        "responses": {
            "200": _ok("Delivered and still failing ids", {"type": "object"}),
            "400": _problem("Bad request body"),
        },
    },
}


def admin_operation(name: str) -> dict[str, Any]:
    op = dict(_ADMIN[name])
    op["tags"] = ["admin"]
    op["security"] = [{"adminToken": []}]
    responses = dict(op["responses"])
    responses["401"] = _problem("Missing or wrong bearer token")
    responses["403"] = _problem("The admin API is disabled (no [server] admin_token)")
    op["responses"] = responses
    return op


_ERROR = {
    "type": "object",
    "required": ["pointer", "message"],
    "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}, "keyword": {"type": "string"}},
}

COMPONENT_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "Error": _ERROR,
    "WebhookAnswer": {
        "type": "object",
        "required": ["webhook_id", "items", "accepted", "quarantined", "records", "results"],
        "properties": {
            "webhook_id": {"type": "string"},
            "adapter": {"type": "string"},
            "stream": {"type": "string"},
            "items": {"type": "integer"},
            "accepted": {"type": "integer"},
            "quarantined": {"type": "integer"},
            "records": {"type": "integer", "description": "reduction records the accepted items made"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "status"],
                    "properties": {
                        "index": {"type": "integer"},
                        "status": {"enum": ["accepted", "quarantined"]},
                        "stage": {"enum": ["raw", "normalize", "record"]},
                        "errors": {"type": "array", "items": _ref("Error")},
                    },
                },
            },
        },
    },
    "ValidationReport": {
        "type": "object",
        "properties": {
            "source": {"type": "string"},
            "schema": {"type": "string"},
            "documents": {"type": "integer"},
            "invalid": {"type": "integer"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "line": {"type": "integer"},
                        "valid": {"type": "boolean"},
                        "errors": {"type": "array", "items": _ref("Error")},
                    },
                },
            },
        },
    },
    "Readiness": {
        "type": "object",
        "properties": {"ready": {"type": "boolean"}, "checks": {"type": "object"}},
    },
    "StreamStatus": {
        "type": "object",
        "properties": {
            "adapter": {"type": "string"},
            "stream": {"type": "string"},
            "kind": {"enum": ["pull", "push", "unconfigured"]},
            "cursor": {},
            "last_success": {"type": ["string", "null"]},
            "last_error": {"type": ["string", "null"]},
            "last_error_at": {"type": ["string", "null"]},
            "drift": {
                "description": "Top-level fields the partner sends that the stream's schema does not name",
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string"},
                        "items": {"type": "integer"},
                        "example": {"type": "string"},
                        "first_seen": {"type": "string"},
                        "last_seen": {"type": "string"},
                    },
                },
            },
            "running": {"type": "boolean"},
            "next_run_at": {"type": ["string", "null"]},
        },
    },
    "QuarantineEntry": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "adapter": {"type": "string"},
            "stream": {"type": "string"},
            "stage": {"type": "string"},
            "partner_record_id": {"type": "string"},
            "errors": {"type": "array", "items": _ref("Error")},
            "status": {"type": "string"},
            "created_at": {"type": "string"},
            "resolved_at": {"type": ["string", "null"]},
            "repeats": {"type": "integer", "description": "times the same item was quarantined again since"},
            "last_seen": {"type": "string", "description": "when the item was last quarantined"},
            "raw": {"description": "the partner item, personal data masked (show only)"},
        },
    },
    "ReplayRequest": {
        "type": "object",
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            "all": {"type": "boolean"},
            "adapter": {"type": "string"},
            "sink": {"type": "string"},
        },
    },
}


def _version() -> str:
    try:
        return version("tanpuhui")
    except PackageNotFoundError:
        return "0+unknown"


def document(endpoints: Iterable[Endpoint], partner_schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``endpoints``; ``partner_schemas`` are the webhook item schemas by name."""
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op = dict(e.operation)
        op["parameters"] = [*op.get("parameters", ()), _REQUEST_ID]
        paths.setdefault(openapi_path(e.path), {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tanpuhui sidecar",
            "version": _version(),
            "description": "Webhooks, validation, health, metrics and administration of a tanpuhui hub.",
        },
        "paths": paths,
        "components": {
            "schemas": {**COMPONENT_SCHEMAS, **{k: dict(v) for k, v in partner_schemas.items()}},
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
