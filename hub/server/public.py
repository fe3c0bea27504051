"""The sidecar's public routes: health, readiness, metrics, its OpenAPI document and the validate endpoint.

``/readyz`` is 503 unless the store commits, every configured adapter loaded, and every sink is both reachable
(``sink.check()``) and delivering: a sink the forwarder is retrying through an outage, or that stopped (410 Gone,
a bug in the sink), makes the sidecar not ready, and its entry says which state, since when and why (redacted).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tanpuhui.sdk import SchemaError, Sink, redact

from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import HubMetrics, sink_error_text
from ..scheduler import Stopping
from ..sink_state import SinkState
from ..store.base import Store
from ..store.sink_log import SinkStateLog, StoredSinkState
from ..validation import SchemaRegistry, read_documents, report_documents
from . import openapi
from .http import BodyTooLarge, json_response, media_type, problem, read_body, too_large
from .openapi import Endpoint
from .streams import Configured

__all__ = ["VALIDATE_TYPES", "PublicApi"]

VALIDATE_TYPES = frozenset(openapi.VALIDATE_TYPES)


@dataclass(eq=False)
class PublicApi:
    """Routes that need no token (see the module docstring)."""

    store: Store
    schemas: SchemaRegistry
    configured: Configured
    sinks: Mapping[str, Sink]
    sink_states: Mapping[str, SinkState]
    metrics: HubMetrics
    stopping: Stopping
    openapi_document: Callable[[], dict[str, Any]]
    _: KW_ONLY
    max_body_bytes: int
    readiness_timeout: float

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("/healthz", "GET", self.healthz, openapi.health_operation()),
            Endpoint("/readyz", "GET", self.readyz, openapi.ready_operation()),
            Endpoint("/metrics", "GET", self.metrics_endpoint, openapi.metrics_operation()),
            Endpoint("/openapi.json", "GET", self.openapi_endpoint, openapi.openapi_operation()),
            Endpoint("/v1/validate/{schema}", "POST", self.validate, openapi.validate_operation(self.schemas.names())),
        ]

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok", "pid": os.getpid()})  # which worker answered (serve --workers)

    async def readyz(self, request: Request) -> Response:
        checks: dict[str, Any] = {}
        ready = True
        try:
            await asyncio.to_thread(self.store.check_writable)
            checks["store"] = {"ok": True}
        except Exception as exc:
            ready = False
            checks["store"] = {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
        configured = self.configured
        checks["plugins"] = {
            "ok": not configured.adapter_problems,
            "adapters": sorted(configured.adapters),
            "problems": configured.problems,
        }
        ready = ready and not configured.adapter_problems
        timeout = self.readiness_timeout

        async def check(sink: Sink) -> tuple[str, str | None]:
            try:
                await asyncio.wait_for(sink.check(), timeout)
            except TimeoutError:
                return sink.name, f"no answer within {timeout:g} s"
            except Exception as exc:
                return sink.name, redact(sink_error_text(exc))
            return sink.name, None

        results = await asyncio.gather(*(check(s) for s in self.sinks.values()))
        # Another worker or replica may be the one draining a sink: what it wrote to the store counts too.
        shared: dict[str, StoredSinkState] = {}
        if isinstance(self.store, SinkStateLog):
            try:
                shared = await asyncio.to_thread(self.store.sink_states)
            except Exception:  # the store check above reports a store that cannot be read
                shared = {}
        sinks: dict[str, Any] = {}
        for name, error in results:
            state = self.sink_states.get(name, SinkState())
            elsewhere = shared.get(name)
            if state.ok and elsewhere is not None and elsewhere.state != "ok":
                state = SinkState.from_stored(elsewhere)
            delivery = state.as_dict()
            if delivery.get("last_error"):
                delivery["last_error"] = redact(delivery["last_error"])
            if error is None and not state.ok:
                error = (
                    f"{state.state} since {delivery['since']}, {state.attempts} failed attempt(s): "
                    f"{delivery['last_error']}"
                )
            sinks[name] = {"ok": error is None, **delivery, **({"error": error} if error else {})}
        checks["sinks"] = sinks
        ready = ready and all(entry["ok"] for entry in sinks.values())
        if self.stopping.is_set:
            ready = False
            checks["shutdown"] = {"ok": False, "error": "shutting down"}
        return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        body = await asyncio.to_thread(self.metrics.render)
        return Response(body, 200, media_type=METRICS_CONTENT_TYPE)

    async def openapi_endpoint(self, request: Request) -> Response:
        return json_response(self.openapi_document())

    async def validate(self, request: Request) -> Response:
        name = request.path_params["schema"]
        try:
            compiled = self.schemas.get(name)
        except SchemaError as exc:
            return problem(404, str(exc))
        if media_type(request.headers.get("content-type")) not in VALIDATE_TYPES:
            return problem(415, f"send {', '.join(sorted(VALIDATE_TYPES))}")
        limit = self.max_body_bytes
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return too_large(limit)

        def report() -> dict[str, Any]:
            # What `tanpuhui validate --json` prints for a file.
            results = [r.as_dict() for r in report_documents(read_documents(body, "request body"), compiled)]
            return {
                "source": "request body",
                "schema": name,
                "documents": len(results),
                "invalid": sum(1 for r in results if not r["valid"]),
                "results": results,
            }

        try:
            return json_response(await asyncio.to_thread(report))
        except SchemaError as exc:
            return problem(400, str(exc))
