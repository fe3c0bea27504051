"""The sidecar: a Starlette app around one :class:`~tanpuhui.hub.pipeline.Hub`, with its background work.

Routes (the OpenAPI document at ``/openapi.json`` is generated from the same table, so they cannot drift apart):

- ``POST /v1/webhooks/{adapter}/{stream}``: one route per push stream of the configured adapters
- ``POST /v1/validate/{schema}``: the report of ``tanpuhui validate --format json`` for a posted body
- ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /openapi.json``
- ``/v1/admin/...`` behind ``Authorization: Bearer <[server] admin_token>``: streams, pull now, quarantine,
  dead letters

A webhook request, in order: content type (415), size (413, checked while the body streams in), signature
(401; a malformed header is never a 500), an id already being processed (409), then the group commit: a repeat of
a committed id gets the first answer again, the same id with another body 422, an unparseable body 400, else the
items are validated, normalized and committed with the answer (200, one result per item) in one transaction.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tanpuhui.sdk import (
    Adapter,
    HttpOptions,
    Problem,
    Pseudonymiser,
    PushStream,
    SchemaError,
    SignatureError,
    Sink,
    TanpuhuiError,
    redact,
)
from tanpuhui.sdk.errors import ConfigError

from ..audit import AuditEvent, AuditLog
from ..config import HubConfig
from ..forwarder import Forwarder, ForwardSummary
from ..logging import new_request_id, request_id
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import HubMetrics, InstrumentedSink, StateCollector, sink_error_text
from ..pipeline import Hub, PullSummary, PushOutcome, problem_body
from ..plugins import Plugins, load_plugins
from ..privacy_view import masked
from ..scheduler import ForwarderLoop, Schedule, Scheduler, Stopping, StreamBusy
from ..store.base import DriftLog
from ..validation import DocumentReport, read_documents
from . import openapi
from .ingest import IngestWorker
from .settings import ServerSettings

__all__ = ["Endpoint", "Sidecar"]

log = logging.getLogger("tanpuhui.server")
access_log = logging.getLogger("tanpuhui.access")

JSON = "application/json"
PROBLEM = "application/problem+json"
WEBHOOK_TYPES = frozenset({JSON})
VALIDATE_TYPES = frozenset({JSON, "application/x-ndjson", "application/jsonl", "application/ndjson"})
_LIST_LIMIT = 1000
_MAX_ID = 2**63 - 1
"""Store ids are 64-bit integers."""
_MAX_IDS = 100_000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route and its OpenAPI operation."""

    path: str
    """Starlette path (``{entry_id:int}`` convertors allowed; the document shows ``{entry_id}``)."""
    method: str
    handler: Callable[[Request], Awaitable[Response]]
    operation: dict[str, Any]


class _BodyTooLarge(Exception):
    pass


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers=headers, media_type=JSON)


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem response; ``detail`` is redacted."""
    return Response(
        problem_body(status, HTTPStatus(status).phrase, detail), status, headers=headers, media_type=PROBLEM
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (while it streams in, not after) to hold more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and _is_number(declared) and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Response:
    return problem(413, f"request body is larger than {limit} bytes", {"connection": "close"})


_Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
"""A webhook answer: status, body, content type, extra headers (sent before content-length and content-type)."""
_JSON = JSON.encode()
_PROBLEM = PROBLEM.encode()
_CLOSE = [(b"connection", b"close")]
_REPLAYED = [(b"x-webhook-replayed", b"true")]


def _problem(status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> _Answer:
    """:func:`problem` as a webhook answer."""
    return status, problem_body(status, HTTPStatus(status).phrase, detail), _PROBLEM, list(extra or ())


def _media_type_of(content_type: bytes | None) -> str:
    """:func:`_media_type` from the raw header value."""
    if content_type is None:
        return ""
    return content_type.decode("latin-1").partition(";")[0].strip().lower()


async def _receive_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """:func:`_read_body` on the ASGI messages themselves (no ``Request``, no async generator per request)."""
    if declared is not None:
        text = declared.decode("latin-1")
        if _is_number(text) and int(text) > limit:
            raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RequestContext:
    """Pure ASGI middleware: the request id (``X-Request-ID`` in, echoed out, in every log line) and access log.

    ``direct``: path -> a pure ASGI app answering ``POST`` on that path itself (the webhook routes). It is called
    instead of the Starlette stack below (router, exception middleware, ``Request``/``Response`` objects), which
    cost about as much per request as verifying, processing and committing a one-record webhook. Any other method
    on such a path still goes through the router (405). Starlette's ``ServerErrorMiddleware`` stays outermost.
    """

    def __init__(self, app: ASGIApp, *, log_access: bool = True, direct: Mapping[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.log_access = log_access
        self.direct = direct if direct is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                offered = value.decode("latin-1")
                break
        rid = new_request_id(offered)
        header = (b"x-request-id", rid.encode())
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        app = self.app
        if self.direct and scope["method"] == "POST" and not scope.get("root_path"):
            app = self.direct.get(scope["path"], app)
        try:
            await app(scope, receive, send_with_id)
        finally:
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                ms = round((time.perf_counter() - started) * 1000, 2)
                path = scope.get("path", "")
                access_log.info(
                    "%s %s %d",
                    scope.get("method", ""),
                    path,
                    status,
                    extra={"fields": {"method": scope.get("method", ""), "path": path, "status": status, "ms": ms}},
                )
            request_id.reset(token)


@dataclass
class _Stream:
    adapter: str
    stream: str
    kind: str  # "pull" | "push"
    schema: str
    description: str = ""


@dataclass
class _State:
    started: bool = False
    inflight: set[tuple[str, str, str]] = field(default_factory=set)
    loop: asyncio.AbstractEventLoop | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class Sidecar:
    """The sidecar process's runtime: hub, sinks, group commit, scheduler, forwarder loop and the ASGI app.

    ``Sidecar(config).app`` is the ASGI application; its lifespan starts and stops the background work. Adapters
    that cannot be configured are reported (``/readyz``, ``problems``) instead of stopping the others; a bad
    ``[server]`` table, schedule or sink is a :class:`~tanpuhui.sdk.ConfigError` at construction.
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        plugins: Plugins | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        settings: ServerSettings | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or ServerSettings.from_config(config)
        self.stopping = Stopping()
        self.metrics = HubMetrics()
        self.hub = Hub(
            config,
            plugins=plugins if plugins is not None else load_plugins(),
            pseudonymiser=pseudonymiser,
            http=HttpOptions(sleep=self.stopping.sleep),
        )
        self.plugin_problems: list[str] = [redact(p) for p in self.hub.plugins.problems]
        self.adapter_problems: list[str] = []
        self.adapters: dict[str, Adapter] = {}
        self.streams: dict[tuple[str, str], _Stream] = {}
        for name in config.adapters:
            try:
                adapter = self.hub.adapter(name)
                streams = list(adapter.streams())
            except TanpuhuiError as exc:
                self.adapter_problems.append(redact(str(exc)))
                continue
            self.adapters[name] = adapter
            for s in streams:
                kind = "push" if isinstance(s, PushStream) else "pull"
                self.streams[(name, s.name)] = _Stream(name, s.name, kind, s.schema, s.description)
                if kind == "push":
                    self.hub.push_runtime(name, s.name)  # compile its schemas now, not on the first request
        for problem_text in self.plugin_problems:
            log.warning("plugin problem: %s", problem_text)
        for problem_text in self.adapter_problems:
            log.error("adapter not loaded: %s", problem_text)

        raw_sinks = self.hub.build_sinks()
        self.sinks: dict[str, Sink] = {n: InstrumentedSink(s, self.metrics) for n, s in raw_sinks.items()}
        f = config.forwarder
        self.forwarder = Forwarder.configured(
            self.hub.store,
            self.sinks,
            f,
            sleep=self.stopping.sleep,
            owner=self.hub.replica_id,
            lease_ttl=config.hub.lease_ttl,
        )
        cfg = self.settings
        self.forwarding = ForwarderLoop(
            self.forwarder,
            self.stopping,
            idle=cfg.forward_idle,
            linger=cfg.forward_linger,
            error_pause=cfg.forward_error_pause,
            on_summary=self._forwarded,
        )
        pull_streams = [k for k, v in self.streams.items() if v.kind == "pull"]
        self.scheduler = Scheduler(
            self.hub,
            pull_streams,
            self._schedules(),
            self.stopping,
            on_page=self._pulled_page,
            on_summary=self.metrics.pull,
        )
        self.ingest = IngestWorker(self.hub, self.metrics, on_commit=self.forwarding.notify)
        self.metrics.registry.register(
            StateCollector(
                self.hub.store,
                lambda: list(self.sinks),
                lambda: self.adapters,
                lambda: len(self.plugin_problems) + len(self.adapter_problems),
            )
        )
        token = cfg.admin_token.get_secret_value() if cfg.admin_token is not None else ""
        self._admin_token = token.encode()
        self._state = _State()
        self.endpoints = self._endpoints()
        self.app = Starlette(
            routes=[Route(e.path, e.handler, methods=[e.method]) for e in self.endpoints],
            lifespan=self._lifespan,
        )
        direct = {
            f"/v1/webhooks/{adapter}/{stream}": self._webhook_app(adapter, stream)
            for (adapter, stream), info in self.streams.items()
            if info.kind == "push"
        }
        self.app.add_middleware(RequestContext, log_access=cfg.access_log, direct=direct)

    @property
    def in_progress(self) -> frozenset[tuple[str, str, str]]:
        """(adapter, stream, webhook id) of the webhook requests being processed now."""
        return frozenset(self._state.inflight)

    @property
    def problems(self) -> list[str]:
        return self.plugin_problems + self.adapter_problems

    def _schedules(self) -> dict[tuple[str, str], Schedule]:
        out: dict[tuple[str, str], Schedule] = {}
        where = f"{self.config.source}: [server.schedules"
        configured = self.settings.stream_schedules()
        for (adapter, stream), settings in configured.items():
            if adapter not in self.config.adapters:
                raise ConfigError(f"{where}.{adapter}]: adapter {adapter!r} is not configured in [adapters]")
            if adapter not in self.adapters:
                continue  # not loaded: already reported as a problem
            pulls = [k[1] for k, v in self.streams.items() if k[0] == adapter and v.kind == "pull"]
            if stream is None:
                for name in pulls:
                    if (adapter, name) not in configured:
                        out[(adapter, name)] = settings.schedule()
            elif stream in pulls:
                out[(adapter, stream)] = settings.schedule()
            else:
                raise ConfigError(
                    f"{where}.{adapter}.{stream}]: {adapter!r} has no pull stream {stream!r}; "
                    f"pull streams: {', '.join(pulls) or 'none'}"
                )
        return out

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        state = self._state
        state.loop = asyncio.get_running_loop()
        self.scheduler.start()
        if self.settings.forward and self.sinks:
            self.forwarding.start()
        task = state.loop.create_task(self._maintenance(), name="maintenance")
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        state.started = True
        log.info(
            "sidecar ready: %d push route(s), %d scheduled stream(s), %d sink(s)",
            sum(1 for v in self.streams.values() if v.kind == "push"),
            sum(1 for r in self.scheduler.runs.values() if r.schedule is not None),
            len(self.sinks),
        )

    def begin_shutdown(self) -> None:
        """Stop starting new work now (SIGTERM); safe to call from a signal handler on the loop's thread."""
        loop = self._state.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.stopping.set)

    async def shutdown(self) -> None:
        """Stop background work within ``shutdown_timeout``, then close sinks, adapters and the store."""
        if not self._state.started:
            return
        self._state.started = False
        started = time.monotonic()
        deadline = started + self.settings.shutdown_timeout
        log.info("shutting down: waiting up to %.1f s for running pulls and deliveries", self.settings.shutdown_timeout)
        self.stopping.set()
        await asyncio.gather(self.scheduler.stop(deadline), self.forwarding.stop(deadline))
        for task in list(self._state.tasks):
            task.cancel()
        await self.ingest.stop()
        for sink in self.sinks.values():
            try:
                await sink.aclose()
            except Exception:
                log.warning("sink %s did not close cleanly", sink.name, exc_info=True)
        await self.hub.aclose()
        log.info("stopped in %.2f s", time.monotonic() - started)

    async def _maintenance(self) -> None:
        """Forget webhook answers older than ``receipt_retention`` (at start, then hourly)."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.receipt_retention)
            try:
                n = await asyncio.to_thread(self.hub.store.prune_receipts, cutoff.isoformat(timespec="milliseconds"))
                if n:
                    log.info("forgot %d webhook receipt(s) older than %s", n, cutoff.date())
            except Exception:
                log.warning("pruning webhook receipts failed", exc_info=True)
            if await self.stopping.wait(3600.0):
                return

    def _pulled_page(self, page: Any) -> None:
        self.metrics.page(page)
        if page.inserted:
            self.forwarding.notify()

    def _forwarded(self, sink: str, summary: ForwardSummary) -> None:
        s = summary[sink]
        if s.dead_lettered:
            self.metrics.dead_lettered.labels(sink).inc(s.dead_lettered)

    # -- routes ------------------------------------------------------------------------------------------------

    def _endpoints(self) -> list[Endpoint]:
        admin = openapi.admin_operation
        out = [
            Endpoint("/healthz", "GET", self.healthz, openapi.health_operation()),
            Endpoint("/readyz", "GET", self.readyz, openapi.ready_operation()),
            Endpoint("/metrics", "GET", self.metrics_endpoint, openapi.metrics_operation()),
            Endpoint("/openapi.json", "GET", self.openapi_endpoint, openapi.openapi_operation()),
            Endpoint(
                "/v1/validate/{schema}", "POST", self.validate, openapi.validate_operation(self.hub.schemas.names())
            ),
        ]
        for (adapter, stream), info in sorted(self.streams.items()):
            if info.kind == "push":
                out.append(
                    Endpoint(
                        f"/v1/webhooks/{adapter}/{stream}",
                        "POST",
                        self._webhook_handler(adapter, stream),
                        openapi.webhook_operation(adapter, stream, info.schema, info.description),
                    )
                )
        out += [
            Endpoint("/v1/admin/streams", "GET", self._admin(self.admin_streams), admin("streams")),
            Endpoint("/v1/admin/streams/{adapter}/{stream}/pull", "POST", self._admin(self.admin_pull), admin("pull")),
            Endpoint("/v1/admin/quarantine", "GET", self._admin(self.admin_quarantine_list), admin("quarantine_list")),
            Endpoint(
                "/v1/admin/quarantine/{entry_id:int}",
                "GET",
                self._admin(self.admin_quarantine_show),
                admin("quarantine_show"),
            ),
            Endpoint(
                "/v1/admin/quarantine/replay",
                "POST",
                self._admin(self.admin_quarantine_replay),
                admin("quarantine_replay"),
            ),
            Endpoint("/v1/admin/dead-letters", "GET", self._admin(self.admin_dead_letters), admin("dead_letters")),
            Endpoint(
                "/v1/admin/dead-letters/replay",
                "POST",
                self._admin(self.admin_dead_letters_replay),
                admin("dead_letters_replay"),
            ),
        ]
        return out

    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of this sidecar's routes (webhook bodies use the partners' schemas)."""
        schemas = {
            info.schema: dict(self.hub.schemas.document(info.schema))
            for info in self.streams.values()
            if info.kind == "push"
        }
        return openapi.document(self.endpoints, schemas)

    # -- public endpoints ------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok", "pid": os.getpid()})  # which worker answered (serve --workers)

    async def readyz(self, request: Request) -> Response:
        checks: dict[str, Any] = {}
        ready = True
        try:
            await asyncio.to_thread(self.hub.store.check_writable)
            checks["store"] = {"ok": True}
        except Exception as exc:
            ready = False
            checks["store"] = {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
        checks["plugins"] = {
            "ok": not self.adapter_problems,
            "adapters": sorted(self.adapters),
            "problems": self.problems,
        }
        ready = ready and not self.adapter_problems

        async def check(sink: Sink) -> tuple[str, str | None]:
            try:
                await asyncio.wait_for(sink.check(), self.settings.readiness_timeout)
            except TimeoutError:
                return sink.name, f"no answer within {self.settings.readiness_timeout:g} s"
            except Exception as exc:
                return sink.name, redact(sink_error_text(exc))
            return sink.name, None

        results = await asyncio.gather(*(check(s) for s in self.sinks.values()))
        checks["sinks"] = {
            name: {"ok": error is None, **({"error": error} if error else {})} for name, error in results
        }
        ready = ready and all(error is None for _, error in results)
        if self.stopping.is_set:
            ready = False
            checks["shutdown"] = {"ok": False, "error": "shutting down"}
        return _json({"ready": ready, "checks": checks}, 200 if ready else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        body = await asyncio.to_thread(self.metrics.render)
        return Response(body, 200, media_type=METRICS_CONTENT_TYPE)

    async def openapi_endpoint(self, request: Request) -> Response:
        return _json(self.openapi_document())

    async def validate(self, request: Request) -> Response:
        name = request.path_params["schema"]
        try:
            compiled = self.hub.schemas.get(name)
        except SchemaError as exc:
            return problem(404, str(exc))
        if _media_type(request) not in VALIDATE_TYPES:
            return problem(415, f"send {', '.join(sorted(VALIDATE_TYPES))}")
        limit = self.settings.max_body_bytes
        try:
            body = await _read_body(request, limit)
        except _BodyTooLarge:
            return _too_large(limit)

        def report() -> dict[str, Any]:
            # What `tanpuhui validate --format json` prints for a file.
            reports = []
            for index, line, doc in read_documents(body, "request body"):
                problems = [doc] if isinstance(doc, Problem) else compiled.problems(doc)
                reports.append(DocumentReport(index, line, problems))
            return {
                "source": "request body",
                "schema": name,
                "documents": len(reports),
                "invalid": sum(1 for r in reports if not r.valid),
                "results": [r.as_dict() for r in reports],
            }

        try:
            return _json(await asyncio.to_thread(report))
        except SchemaError as exc:
            return problem(400, str(exc))

    def _webhook_handler(self, adapter: str, stream: str) -> Callable[[Request], Awaitable[Response]]:
        """The route's Starlette handler (used when the direct path does not apply, e.g. under a root path)."""
        answer = self._webhook_answer(adapter, stream)

        async def webhook(request: Request) -> Response:
            status, body, media_type, extra = await answer(request.headers.raw, request.receive)
            response = Response(body, status, media_type=media_type.decode())
            response.raw_headers[:0] = extra
            return response

        return webhook

    def _webhook_app(self, adapter: str, stream: str) -> ASGIApp:
        """The same route as a pure ASGI app: what :class:`RequestContext` calls for ``POST`` on the path."""
        answer = self._webhook_answer(adapter, stream)

        async def webhook(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                status, body, media_type, extra = await answer(scope["headers"], receive)
            except ClientDisconnect:
                return  # nobody to answer
            headers = [*extra, (b"content-length", str(len(body)).encode()), (b"content-type", media_type)]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return webhook

    def _webhook_answer(
        self, adapter: str, stream: str
    ) -> Callable[[Sequence[tuple[bytes, bytes]], Receive], Awaitable[_Answer]]:
        """A webhook request -> (status, body, content type, extra headers); see the module docstring."""
        seconds = self.metrics.webhook_seconds.labels(adapter, stream)
        requests = self.metrics.webhook_requests
        counters: dict[int, Any] = {}
        limit = self.settings.max_body_bytes
        inflight = self._state.inflight
        hub = self.hub
        ingest = self.ingest

        async def answer(raw_headers: Sequence[tuple[bytes, bytes]], receive: Receive) -> _Answer:
            started = time.perf_counter()
            result = await handle(raw_headers, receive)
            status = result[0]
            counter = counters.get(status)
            if counter is None:
                counter = counters[status] = requests.labels(adapter, stream, str(status))
            counter.inc()
            seconds.observe(time.perf_counter() - started)
            return result

        async def handle(raw_headers: Sequence[tuple[bytes, bytes]], receive: Receive) -> _Answer:
            content_type: bytes | None = None
            declared: bytes | None = None
            for name, value in raw_headers:  # the first of each, as Headers.get
                if name == b"content-type":
                    if content_type is None:
                        content_type = value
                elif name == b"content-length" and declared is None:
                    declared = value
            if _media_type_of(content_type) not in WEBHOOK_TYPES:
                return _problem(415, "send the items as application/json")
            try:
                body = await _receive_body(receive, declared, limit)
            except _BodyTooLarge:
                return _problem(413, f"request body is larger than {limit} bytes", _CLOSE)
            headers = Headers(raw=list(raw_headers))
            try:
                key = hub.verify_push(adapter, stream, headers, body)
            except SignatureError as exc:
                return _problem(401, f"signature rejected: {exc}")
            except Exception as exc:  # never a 500 for what a client sent
                log.warning("webhook %s:%s: signature check failed: %s: %s", adapter, stream, type(exc).__name__, exc)
                return _problem(400, "malformed webhook signature headers")
            slot = (adapter, stream, key)
            if slot in inflight:
                return _problem(409, f"webhook {key!r} is being processed; retry later for its answer")
            inflight.add(slot)
            try:
                outcome: PushOutcome = await ingest.push(adapter, stream, key, headers, body)
            finally:
                inflight.discard(slot)
            extra = _REPLAYED if outcome.replayed else []
            return outcome.status, outcome.body, _JSON if outcome.status < 400 else _PROBLEM, extra

        return answer

    # -- admin -----------------------------------------------------------------------------------------------

    def _admin(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if not self._admin_token:
                return problem(403, 'the admin API is disabled: set [server] admin_token = { env = "..." }')
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            offered = credentials.strip().encode()
            if scheme.lower() != "bearer" or not hmac.compare_digest(offered, self._admin_token):
                return problem(
                    401,
                    "admin API: missing or wrong bearer token",
                    {"www-authenticate": 'Bearer realm="tanpuhui-admin"'},
                )
            return await handler(request)

        return guarded

    async def _audit_request(self, request: Request, action: str, subject: str, details: dict[str, Any]) -> None:
        """Log an admin request in the audit log before it is carried out (what it changes is logged as it
        commits). The actor is the client address: the admin token is one shared secret, not a person."""
        store = self.hub.store
        if isinstance(store, AuditLog):
            host = request.client.host if request.client else "unknown"
            event = AuditEvent(action, subject, {**details, "request_id": request_id.get()}, actor=f"admin@{host}")
            await asyncio.to_thread(store.audit_append, [event])

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        try:
            raw = await _read_body(request, self.settings.max_body_bytes)
        except _BodyTooLarge:
            return _too_large(self.settings.max_body_bytes)
        if not raw.strip():
            return {}
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return problem(400, f"body is not JSON: {exc}")
        if not isinstance(doc, dict):
            return problem(400, "body must be a JSON object")
        return doc

    async def admin_streams(self, request: Request) -> Response:
        store = self.hub.store
        statuses = {(s.adapter, s.stream): s for s in await asyncio.to_thread(store.stream_status)}
        drift: dict[tuple[str, str], list[dict[str, Any]]] = {}
        if isinstance(store, DriftLog):
            for d in await asyncio.to_thread(store.schema_drift):
                drift.setdefault((d.adapter, d.stream), []).append(
                    {
                        "field": d.field,
                        "items": d.items,
                        "example": d.example,
                        "first_seen": d.first_seen,
                        "last_seen": d.last_seen,
                    }
                )
        out = []
        for key in sorted(set(self.streams) | set(statuses)):
            info = self.streams.get(key)
            st = statuses.get(key)
            run = self.scheduler.runs.get(key)
            doc: dict[str, Any] = {
                "adapter": key[0],
                "stream": key[1],
                "kind": info.kind if info else "unconfigured",
                "cursor": st.cursor if st else None,
                "last_success": st.last_success if st else None,
                "last_error": st.last_error if st else None,
                "last_error_at": st.last_error_at if st else None,
                "drift": drift.get(key, []),
            }
            if run is not None:
                doc.update(run.as_dict())
            out.append(doc)
        return _json({"streams": out})

    async def admin_pull(self, request: Request) -> Response:
        adapter = request.path_params["adapter"]
        stream = request.path_params["stream"]
        info = self.streams.get((adapter, stream))
        if info is None:
            return problem(404, f"no configured stream {adapter}:{stream}")
        if info.kind != "pull":
            return problem(409, f"{adapter}:{stream} is a push stream; partners send it to the sidecar")
        await self._audit_request(request, "admin.pull", f"{adapter}:{stream}", {})
        try:
            task = await self.scheduler.start_now(adapter, stream)
        except StreamBusy as exc:
            return problem(409, str(exc))
        if request.query_params.get("wait", "").lower() not in ("1", "true", "yes"):
            return _json({"status": "started", "adapter": adapter, "stream": stream}, 202)
        summary = await asyncio.shield(task)
        if summary is None:
            return problem(503, "the pull was stopped by a shutdown; it resumes from its cursor")
        return _json({"status": "finished", "summary": _summary(summary)})

    async def admin_quarantine_list(self, request: Request) -> Response:
        q = request.query_params
        status = q.get("status", "open")
        if status not in ("open", "resolved", "discarded"):
            return problem(400, "status must be open, resolved or discarded")
        limit = _limit(q.get("limit"))
        if limit is None:
            return problem(400, f"limit must be an integer from 1 to {_LIST_LIMIT}")
        entries = await asyncio.to_thread(self.hub.store.quarantine_list, q.get("adapter") or None, status, limit)
        return _json({"entries": [_entry(e) for e in entries]})

    async def admin_quarantine_show(self, request: Request) -> Response:
        entry_id = request.path_params["entry_id"]
        if not 0 < entry_id <= _MAX_ID:  # the store's ids are 64-bit: a larger one is no entry (not a 500)
            return problem(404, f"no quarantine entry {entry_id}")
        entry = await asyncio.to_thread(self.hub.store.quarantine_get, entry_id)
        if entry is None:
            return problem(404, f"no quarantine entry {entry_id}")
        doc = _entry(entry)
        try:
            personal = self.hub.stream_schema(entry.adapter, entry.stream).personal_fields
            doc["raw"] = masked(self.hub.quarantine_raw(entry), personal)
        except Exception as exc:  # e.g. sealed under a pseudonym key that is no longer configured
            doc["raw"] = None
            doc["raw_error"] = redact(f"{type(exc).__name__}: {exc}")
        return _json(doc)

    async def admin_quarantine_replay(self, request: Request) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        ids = _ids(body)
        if ids is None and body.get("all") is True:
            adapter = body.get("adapter")
            entries = await asyncio.to_thread(self.hub.store.quarantine_list, adapter, "open", 1_000_000)
            ids = [e.id for e in entries]
        if ids is None:
            return problem(400, 'send {"ids": [1, 2]} or {"all": true} (optionally with "adapter")')
        await self._audit_request(request, "admin.quarantine.replay", "quarantine", {"ids": ids})
        results = await self.hub.replay_quarantine(ids)
        self.forwarding.notify()
        docs = [{"id": r.entry_id, "status": r.status, "errors": [p.as_dict() for p in r.problems]} for r in results]
        counts = {k: sum(1 for d in docs if d["status"] == k) for k in ("resolved", "failed", "missing")}
        return _json({**counts, "results": docs})

    async def admin_dead_letters(self, request: Request) -> Response:
        q = request.query_params
        limit = _limit(q.get("limit"))
        if limit is None:
            return problem(400, f"limit must be an integer from 1 to {_LIST_LIMIT}")
        letters = await asyncio.to_thread(self.hub.store.dead_letters, q.get("sink") or None, limit)
        return _json(
            {
                "dead_letters": [
                    {
                        "id": d.id,
                        "sink": d.sink,
                        "seq": d.seq,
                        "record_id": d.record_id,
                        "attempts": d.attempts,
                        "error": redact(d.error),
                        "created_at": d.created_at,
                    }
                    for d in letters
                ]
            }
        )

    async def admin_dead_letters_replay(self, request: Request) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        ids = _ids(body)
        if ids is None and body.get("all") is True:
            sink = body.get("sink")
            letters = await asyncio.to_thread(self.hub.store.dead_letters, sink, 1_000_000)
            ids = [d.id for d in letters]
        if ids is None:
            return problem(400, 'send {"ids": [1, 2]} or {"all": true} (optionally with "sink")')
        await self._audit_request(request, "admin.dead_letters.replay", "dead_letters", {"ids": ids})
        result = await self.forwarder.replay(ids)
        return _json(
            {
                "delivered": result.delivered,
                "still_failing": result.still_failing,
                "missing": result.missing,
                "errors": {k: redact(v) for k, v in result.errors.items()},
            }
        )


def _entry(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "adapter": e.adapter,
        "stream": e.stream,
        "stage": e.stage,
        "partner_record_id": e.partner_record_id,
        "errors": e.problems,
        "status": e.status,
        "created_at": e.created_at,
        "resolved_at": e.resolved_at,
    }


def _summary(s: PullSummary) -> dict[str, Any]:
    return {
        "adapter": s.adapter,
        "stream": s.stream,
        "pages": s.pages,
        "pulled": s.pulled,
        "valid": s.valid,
        "records": s.records,
        "inserted": s.inserted,
        "duplicates": s.duplicates,
        "held": s.held,
        "quarantined": s.quarantined,
        "seconds": round(s.seconds, 3),
        "error": s.error,
    }


def _is_number(raw: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²" and "١", which ``int()`` then refuses or misreads."""
    return raw.isascii() and raw.isdigit()


def _limit(raw: str | None) -> int | None:
    if raw is None:
        return 100
    if not _is_number(raw) or not 1 <= int(raw) <= _LIST_LIMIT:
        return None
    return int(raw)


def _ids(body: dict[str, Any]) -> list[int] | None:
    """Entry ids from ``{"ids": [...]}``: 1 to 100,000 positive 64-bit integers, else None (a 400)."""
    ids = body.get("ids")
    if (
        isinstance(ids, list)
        and 0 < len(ids) <= _MAX_IDS
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= _MAX_ID for i in ids)
    ):
        return list(ids)
    return None


def routes_of(app: Starlette) -> Sequence[Route]:
    """The app's routes (for tests comparing them with the OpenAPI document)."""
    return [r for r in app.routes if isinstance(r, Route)]
