"""The sidecar's OpenAPI 3.1 document, built from the same endpoint table as its routes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .http import MAX_ID, PROBLEM, problem
from .openapi_components import COMPONENT_SCHEMAS, ref

__all__ = ["Endpoint", "document", "openapi_path"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route and its OpenAPI operation: the sidecar's routes and its document are built from one table."""

    path: str
    """Starlette path (``{entry_id:int}`` convertors allowed; the document shows ``{entry_id}``)."""
    method: str
    handler: Callable[[Request], Awaitable[Response]]
    operation: dict[str, Any]

    @property
    def query_names(self) -> frozenset[str]:
        """The query parameters the operation documents: the only ones its route accepts."""
        return frozenset(p["name"] for p in self.operation.get("parameters", ()) if p.get("in") == "query")

    def route(self) -> Route:
        """The Starlette route: the handler behind a check that refuses undocumented query parameters (400), so
        a misspelt ``?limt=5`` is an error, not silently the default."""
        handler = self.handler
        allowed = self.query_names

        async def checked(request: Request) -> Response:
            unknown = sorted(set(request.query_params) - allowed)
            if unknown:
                accepted = ", ".join(sorted(allowed)) or "none"
                return problem(400, f"unknown query parameter(s) {', '.join(unknown)}; this route accepts {accepted}")
            return await handler(request)

        return Route(self.path, checked, methods=[self.method])


_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def openapi_path(starlette_path: str) -> str:
    """``/quarantine/{entry_id:int}`` -> ``/quarantine/{entry_id}``."""
    return _CONVERTOR.sub(r"{\1}", starlette_path)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": ref("Problem")}}}


def _ok(description: str, schema: Mapping[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": dict(schema)}}}


_REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Echoed in the response and in every log line of the request when it is a token of 1 to 128 "
    "characters from `A-Za-z0-9._:-` (and not shaped like a personal identifier); any other value, or none, is "
    "replaced by a generated id.",
    "schema": {"type": "string"},
}

_UNKNOWN_QUERY = "an unknown query parameter (each route accepts only the ones listed)"
_OVERLOADED = {
    **_problem(
        "This worker has `[server] max_connections` connections open; retry after the number of seconds in "
        "Retry-After (the connection is closed)"
    ),
    "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer", "minimum": 0}}},
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


def _operations(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """An operation of the ``operations`` tag: what runs the sidecar, not what it serves."""
    return {"operationId": operation_id, "summary": summary, "tags": ["operations"], "responses": responses}


def health_operation() -> dict[str, Any]:
    alive = {
        "type": "object",
        "properties": {
            "status": {"const": "ok"},
            "pid": {"type": "integer", "description": "the process that answered (serve --workers)"},
        },
    }
    return _operations("healthz", "The process is alive", {"200": _ok("Alive", alive)})


def ready_operation() -> dict[str, Any]:
    return _operations(
        "readyz",
        "Ready to take traffic: store writable, adapters loaded, sinks reachable",
        {
            "200": _ok("Ready", ref("Readiness")),
            "503": _ok("Not ready (the checks say why)", ref("Readiness")),
        },
    )


def metrics_operation() -> dict[str, Any]:
    return _operations(
        "metrics",
        "Prometheus metrics (text exposition format 0.0.4)",
        {"200": _ok("Metrics", {"type": "string"}, "text/plain")},
    )


def openapi_operation() -> dict[str, Any]:
    return _operations("openapi", "This document", {"200": _ok("OpenAPI 3.1 document", {"type": "object"})})


VALIDATE_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/ndjson")
"""What ``POST /v1/validate/{schema}`` reads: JSON (a document or an array of them) or JSON Lines."""


def validate_operation(schema_names: Sequence[str]) -> dict[str, Any]:
    # No schema for JSON Lines: any bytes get a report (a line that is not JSON is an error in it); only a body of
    # nothing but white space is refused (400).
    lines = {"description": "JSON Lines: one document per line"}
    return {
        "operationId": "validate",
        "summary": "Validate documents against a published schema (the report of `tanpuhui validate --json`)",
        "tags": ["integrators"],
        "parameters": [
            {"name": "schema", "in": "path", "required": True, "schema": {"type": "string", "enum": list(schema_names)}}
        ],
        "requestBody": {
            "required": True,
            "description": "A JSON document, a JSON array of documents, or JSON Lines.",
            "content": {
                "application/json": {"schema": {"description": "a document, or a JSON array of documents"}},
                **{media: {"schema": lines} for media in VALIDATE_TYPES[1:]},
            },
        },
        "responses": {
            "200": _ok("One result per document (errors as JSON pointers)", ref("ValidationReport")),
            "400": _problem("Empty body"),
            "404": _problem("Unknown schema"),
            "413": _problem("Body over the size limit"),
            "415": _problem("Not JSON or JSON Lines"),
        },
    }


def webhook_operation(adapter: str, stream: str, schema: str, description: str) -> dict[str, Any]:
    item = ref(schema)
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
            "description": f'One `{schema}` item, an array of them, or `{{"items": [...]}}`. Any JSON is taken: '
            "an item that does not conform is quarantined and reported in the answer, not refused.",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            item,
                            {"type": "array", "items": item},
                            {
                                "type": "object",
                                "required": ["items"],
                                "properties": {"items": {"type": "array", "items": item}},
                            },
                            {"description": "anything else: its items are quarantined"},
                        ]
                    }
                }
            },
        },
        "responses": {
            "200": _ok("Committed; one result per item", ref("WebhookAnswer")),
            "400": _problem("Body is not JSON, or malformed signature headers"),
            "401": _problem("Missing, stale or wrong signature"),
            "409": _problem("The same webhook id is being processed"),
            "413": _problem("Body over the size limit"),
            "415": _problem("Not application/json"),
            "422": _problem("Webhook id reused with another body"),
            "503": _problem("The store could not commit; retry"),
        },
    }


_LIST_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}


def _replay_operation(operation_id: str, summary: str, request_schema: str, answer: str) -> dict[str, Any]:
    """An admin replay: a JSON body of the component ``request_schema``, answered 200 with an object."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(request_schema)}}},
        "responses": {
            "200": _ok(answer, {"type": "object"}),
            "400": _problem("Bad request body"),
            "413": _problem("Body over the size limit"),
        },
    }


_ADMIN: dict[str, dict[str, Any]] = {
    "overview": {
        "operationId": "admin_overview",
        "summary": "The overview: streams (last and next run, freshness, cursor) and sinks (state, backlog)",
        "responses": {"200": _ok("The overview, as `tanpuhui status --json` prints it", ref("Overview"))},
    },
    "streams": {
        "operationId": "admin_streams",
        "summary": "Every stream: cursor, last success, last error, schedule, running",
        "responses": {
            "200": _ok(
                "Streams",
                {"type": "object", "properties": {"streams": {"type": "array", "items": ref("StreamStatus")}}},
            )
        },
    },
    "pull": {
        "operationId": "admin_pull",
        "summary": "Pull a stream now (202 started; ?wait=true waits and returns the summary)",
        "parameters": [
            {"name": "adapter", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "stream", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "true: answer when the pull has finished, with its summary",
                "schema": {"type": "boolean"},
            },
        ],
        "responses": {
            "200": _ok("Finished (with ?wait=true)", {"type": "object"}),
            "202": _ok("Started", {"type": "object"}),
            "400": _problem("`wait` is not a boolean (true, false, 1, 0, yes, no)"),
            "404": _problem("No such configured stream"),
            "409": _problem("A pull of this stream is running, or it is a push stream"),
            "503": _problem("The pull was stopped by a shutdown (with ?wait=true); it resumes from its cursor"),
        },
    },
    "quarantine_list": {
        "operationId": "admin_quarantine_list",
        "summary": "Quarantined items (without their raw payloads)",
        "parameters": [
            {"name": "adapter", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "status", "in": "query", "required": False, "schema": {"enum": ["open", "resolved", "discarded"]}},
            _LIST_LIMIT,
        ],
        "responses": {
            "200": _ok(
                "Entries",
                {"type": "object", "properties": {"entries": {"type": "array", "items": ref("QuarantineEntry")}}},
            ),
            "400": _problem("Bad query"),
        },
    },
    "quarantine_show": {
        "operationId": "admin_quarantine_show",
        "summary": "One quarantined item with its raw payload, personal data masked",
        "parameters": [
            {
                "name": "entry_id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            }
        ],
        "responses": {"200": _ok("Entry", ref("QuarantineEntry")), "404": _problem("No such entry")},
    },
    "quarantine_replay": _replay_operation(
        "admin_quarantine_replay",
        "Run quarantined items through the pipeline again",
        "QuarantineReplay",
        "Per-entry results",
    ),
    "dead_letters": {
        "operationId": "admin_dead_letters",
        "summary": "Records whose delivery to a sink was given up",
        "parameters": [
            {"name": "sink", "in": "query", "required": False, "schema": {"type": "string"}},
            _LIST_LIMIT,
        ],
        "responses": {"200": _ok("Dead letters", {"type": "object"}), "400": _problem("Bad query")},
    },
    "dead_letters_replay": _replay_operation(
        "admin_dead_letters_replay", "Send dead letters again", "DeadLetterReplay", "Delivered and still failing ids"
    ),
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


def _version() -> str:
    try:
        return version("tanpuhui")
    except PackageNotFoundError:
        return "0+unknown"


def _with_common_answers(operation: Mapping[str, Any]) -> dict[str, Any]:
    """What every route may answer besides its own: 400 for an unknown query parameter, 503 when the worker is
    over ``max_connections`` (a problem document even where the route's own 503 is another document)."""
    op = dict(operation)
    op["parameters"] = [*op.get("parameters", ()), _REQUEST_ID]
    responses = {k: dict(v) for k, v in op["responses"].items()}
    if "400" in responses:
        responses["400"]["description"] += f"; or {_UNKNOWN_QUERY}"
    else:
        responses["400"] = _problem(_UNKNOWN_QUERY[0].upper() + _UNKNOWN_QUERY[1:])
    if "503" in responses:
        answer = responses["503"]
        answer["description"] += "; or this worker is over `[server] max_connections` (retry after Retry-After)"
        answer["content"] = {**answer["content"], **_OVERLOADED["content"]}
        answer["headers"] = _OVERLOADED["headers"]
    else:
        responses["503"] = _OVERLOADED
    op["responses"] = dict(sorted(responses.items()))
    return op


def embedded_schema(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A partner schema as ``components/schemas/<name>``: its own ``#/...`` references re-rooted there (an OpenAPI
    reader resolves them against the document, not the schema), its ``$id`` and ``$schema`` dropped (an ``$id``
    would make the re-rooted references resolve against the schema again)."""
    base = "#/components/schemas/" + name.replace("~", "~0").replace("/", "~1")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                out["$ref"] = base + ref[1:]
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    doc: dict[str, Any] = walk(schema)
    doc.pop("$id", None)
    doc.pop("$schema", None)
    return doc


def document(endpoints: Iterable[Endpoint], partner_schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``endpoints``; ``partner_schemas`` are the webhook item schemas by name."""
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(openapi_path(e.path), {})[e.method.lower()] = _with_common_answers(e.operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tanpuhui sidecar",
            "version": _version(),
            "description": "Webhooks, validation, health, metrics and administration of a tanpuhui hub.",
        },
        "paths": paths,
        "components": {
            "schemas": {**COMPONENT_SCHEMAS, **{k: embedded_schema(k, v) for k, v in partner_schemas.items()}},
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
