"""The component schemas of the sidecar's OpenAPI document: problems, validation reports, receipts, admin
documents and replay requests (the operations are in :mod:`.openapi`)."""

from __future__ import annotations

from typing import Any

from .http import MAX_ID

__all__ = ["COMPONENT_SCHEMAS", "ref"]


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


_REPLAY_IDS = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "minItems": 1}


def _replay_request(scope: str, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f'`{{"ids": [1, 2]}}`, or `{{"all": true}}` optionally with `{scope}`',
        "properties": {
            "ids": {**_REPLAY_IDS, "maxItems": 100_000},
            "all": {"type": "boolean"},
            scope: {"type": "string", "minLength": 1, "description": description},
        },
        "additionalProperties": False,
        "anyOf": [{"required": ["ids"]}, {"required": ["all"], "properties": {"all": {"const": True}}}],
    }


def _with_release(request: dict[str, Any]) -> dict[str, Any]:
    release = {
        "type": "boolean",
        "description": "credit entries held by a plausibility rule even if the rule still fires (written into the "
        "record, audited as quarantine.release); other entries replay as usual",
    }
    return {**request, "properties": {**request["properties"], "release": release}}


_ERROR = {
    "type": "object",
    "required": ["pointer", "message"],
    "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}, "keyword": {"type": "string"}},
}

COMPONENT_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
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
                        "stage": {"enum": ["raw", "normalize", "record", "plausibility"]},
                        "errors": {"type": "array", "items": ref("Error")},
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
                        "errors": {"type": "array", "items": ref("Error")},
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
    "Overview": {
        "description": "What the console's overview page and `tanpuhui status --json` show: each stream's last and "
        "next run, freshness and cursor; each sink's state, backlog and last delivery (read from the shared store)",
        "type": "object",
        "required": ["streams", "sinks", "counts", "stale_after_seconds"],
        "properties": {
            "streams": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["adapter", "stream", "kind", "paused", "running", "stale"],
                    "properties": {
                        "adapter": {"type": "string"},
                        "stream": {"type": "string"},
                        "kind": {"enum": ["pull", "push", "unconfigured"]},
                        "schedule_seconds": {"type": ["number", "null"]},
                        "last_run": {"type": ["object", "null"], "description": "the newest run's counters"},
                        "next_run": {"type": ["string", "null"]},
                        "last_success": {"type": ["string", "null"]},
                        "freshness_seconds": {"type": ["number", "null"]},
                        "stale": {"type": "boolean"},
                        "cursor": {"type": "string", "description": "compact JSON text; empty when none"},
                        "paused": {"type": "boolean"},
                        "running": {"type": "boolean"},
                        "last_error": {"type": ["string", "null"]},
                        "last_request": {
                            "type": ["object", "null"],
                            "description": "push: the newest webhook request on file, as its receipt answered it",
                            "required": [
                                "received_at",
                                "webhook_id",
                                "status",
                                "items",
                                "accepted",
                                "quarantined",
                                "records",
                            ],
                            "properties": {
                                "received_at": {"type": "string"},
                                "webhook_id": {"type": "string"},
                                "status": {"type": "integer"},
                                "items": {"type": "integer"},
                                "accepted": {"type": "integer"},
                                "quarantined": {"type": "integer"},
                                "records": {
                                    "type": "integer",
                                    "description": "records the accepted items made, new and already on file alike",
                                },
                            },
                            "additionalProperties": False,
                        },
                    },
                },
            },
            "sinks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "state", "backlog"],
                    "properties": {
                        "name": {"type": "string"},
                        "state": {"enum": ["ok", "retrying", "stopped", "paused"]},
                        "backlog": {"type": "integer"},
                        "oldest_waiting": {"type": ["string", "null"]},
                        "position": {"type": "integer"},
                        "last_delivery": {"type": ["string", "null"]},
                        "last_error": {"type": ["string", "null"]},
                        "dead_letters": {"type": "integer"},
                        "since": {"type": ["string", "null"]},
                    },
                },
            },
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "stale_after_seconds": {"type": "number"},
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
            "errors": {"type": "array", "items": ref("Error")},
            "status": {"type": "string"},
            "created_at": {"type": "string"},
            "resolved_at": {"type": ["string", "null"]},
            "repeats": {"type": "integer", "description": "times the same item was quarantined again since"},
            "last_seen": {"type": "string", "description": "when the item was last quarantined"},
            "raw": {"description": "the partner item, personal data masked (show only)"},
        },
    },
    "QuarantineReplay": _with_release(_replay_request("adapter", "only this adapter's entries (with `all`)")),
    "DeadLetterReplay": _replay_request("sink", "only this sink's dead letters (with `all`)"),
}
