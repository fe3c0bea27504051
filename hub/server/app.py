"""The sidecar: a Starlette app around one :class:`~tanpuhui.hub.hub.Hub`, with its background work.

This module wires and runs; the routes live by concern: :mod:`.public` (``/healthz``, ``/readyz``, ``/metrics``,
``/openapi.json``, ``POST /v1/validate/{schema}``), :mod:`.webhooks` (``POST /v1/webhooks/{adapter}/{stream}``, one
per configured push stream, group-committed by :mod:`.ingest`), :mod:`.admin` (``/v1/admin/...`` behind the
admin token) and :mod:`.schemas_api` (``/v1/schemas``, ``/catalogue/``: the published catalogue, no token). The
OpenAPI document (:mod:`.openapi`) is generated from the same endpoint table as the routes, so they cannot drift
apart; :mod:`.middleware` gives every request an id and an access-log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from tanpuhui.sdk import ConfigError, HttpOptions, Pseudonymiser, Sink

from ..catalogue.entries import Catalogue
from ..config import HubConfig
from ..console.mount import Console, Sessions, console_mount
from ..forwarder import Forwarder, ForwardSummary
from ..hub import Hub
from ..metrics import HubMetrics, InstrumentedSink, SinkStateCollector, StateCollector
from ..pipeline import PageResult
from ..plugins import Plugins, load_plugins
from ..run_history import RunCollector
from ..scheduler import ForwarderLoop, Schedule, Scheduler, Stopping
from ..store.base import RunLog
from ..store.sink_log import SinkStateLog
from . import openapi
from .admin import AdminApi
from .errors import exception_handlers
from .ingest import IngestWorker
from .middleware import RequestContext
from .openapi import Endpoint
from .public import PublicApi
from .schemas_api import SchemasApi
from .settings import ServerSettings
from .streams import Configured
from .webhooks import WebhookRoute

__all__ = ["Sidecar", "routes_of"]

log = logging.getLogger("tanpuhui.server")


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
        self.settings = cfg = settings or ServerSettings.from_config(config)
        self.stopping = Stopping()
        self.metrics = HubMetrics()
        self.hub = Hub(
            config,
            plugins=plugins if plugins is not None else load_plugins(),
            pseudonymiser=pseudonymiser,
            http=HttpOptions(sleep=self.stopping.sleep),
            observers=[self.metrics],  # plausibility counts, for pulled, pushed and replayed pages alike
        )
        self.configured = Configured.load(self.hub)
        for text in self.configured.plugin_problems:
            log.warning("plugin problem: %s", text)
        for text in self.configured.adapter_problems:
            log.error("adapter not loaded: %s", text)

        self.sinks: dict[str, Sink] = {n: InstrumentedSink(s, self.metrics) for n, s in self.hub.build_sinks().items()}
        self.forwarder = Forwarder.configured(
            self.hub.store,
            self.sinks,
            config.forwarder,
            sleep=self.stopping.sleep,
            owner=self.hub.replica_id,
            lease_ttl=config.hub.lease_ttl,
        )
        self.forwarding = ForwarderLoop(
            self.forwarder,
            self.stopping,
            idle=cfg.forward_idle,
            linger=cfg.forward_linger,
            error_pause=cfg.forward_error_pause,
            on_summary=self._forwarded,
        )
        self.scheduler = Scheduler(
            self.hub,
            self.configured.of_kind("pull"),
            self._schedules(),
            self.stopping,
            on_page=self._pulled_page,
            on_summary=self.metrics.pull,
        )
        self.ingest = IngestWorker(self.hub.pushes, self.metrics, on_commit=self.forwarding.notify)
        self.metrics.registry.register(
            StateCollector(
                self.hub.store,
                lambda: list(self.sinks),
                lambda: self.configured.adapters,
                lambda: len(self.configured.problems),
            )
        )
        shared = self.hub.store.sink_states if isinstance(self.hub.store, SinkStateLog) else None
        self.metrics.registry.register(SinkStateCollector(self.forwarder.states, shared))
        if isinstance(self.hub.store, RunLog):
            self.metrics.registry.register(RunCollector(self.hub.store))
        self._state = _State()
        webhooks = {
            key: WebhookRoute(
                *key,
                self.hub.pushes,
                self.ingest,
                self.metrics,
                limit=cfg.max_body_bytes,
                inflight=self._state.inflight,
            )
            for key in sorted(self.configured.of_kind("push"))
        }
        public = PublicApi(
            self.hub.store,
            self.hub.schemas,
            self.configured,
            self.sinks,
            self.forwarder.states,
            self.metrics,
            self.stopping,
            self.openapi_document,
            max_body_bytes=cfg.max_body_bytes,
            readiness_timeout=cfg.readiness_timeout,
        )
        admin = AdminApi(
            self.hub,
            self.configured,
            self.scheduler,
            self.forwarder,
            self.forwarding,
            token=cfg.admin_token.get_secret_value() if cfg.admin_token is not None else "",
            max_body_bytes=cfg.max_body_bytes,
            stale_after=cfg.stale_after,
        )
        streams = self.configured.streams
        self.endpoints: list[Endpoint] = [
            *public.endpoints(),
            *(
                Endpoint(
                    f"/v1/webhooks/{a}/{s}",
                    "POST",
                    route.handler(),
                    openapi.webhook_operation(a, s, streams[a, s].schema, streams[a, s].description),
                )
                for (a, s), route in webhooks.items()
            ),
            *admin.endpoints(),
            *SchemasApi(Catalogue.of(self.hub.plugins, self.hub.schemas)).endpoints(),
        ]
        self.console = Console(
            self.hub,
            self.configured,
            self.scheduler,
            self.forwarder,
            self.forwarding,
            Sessions(cfg.admin_token.get_secret_value() if cfg.admin_token is not None else "", cfg.console_session),
            cfg.stale_after,
        )
        # The console's HTML routes sit beside the endpoint table: they are not API and not in the OpenAPI document.
        routes: list[BaseRoute] = [e.route() for e in self.endpoints]
        routes.append(console_mount(self.console))
        self.app = Starlette(routes=routes, lifespan=self._lifespan, exception_handlers=exception_handlers())
        direct = {f"/v1/webhooks/{a}/{s}": route.asgi_app() for (a, s), route in webhooks.items()}
        self.app.add_middleware(RequestContext, log_access=cfg.access_log, direct=direct)

    @property
    def adapters(self) -> dict[str, Any]:
        return self.configured.adapters

    @property
    def streams(self) -> dict[tuple[str, str], Any]:
        return self.configured.streams

    @property
    def adapter_problems(self) -> list[str]:
        return self.configured.adapter_problems

    @property
    def problems(self) -> list[str]:
        return self.configured.problems

    @property
    def in_progress(self) -> frozenset[tuple[str, str, str]]:
        """(adapter, stream, webhook id) of the webhook requests being processed now."""
        return frozenset(self._state.inflight)

    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of this sidecar's routes (webhook bodies use the partners' schemas)."""
        schemas = {
            info.schema: dict(self.hub.schemas.document(info.schema))
            for info in self.configured.streams.values()
            if info.kind == "push"
        }
        return openapi.document(self.endpoints, schemas)

    def _schedules(self) -> dict[tuple[str, str], Schedule]:
        out: dict[tuple[str, str], Schedule] = {}
        where = f"{self.config.source}: [server.schedules"
        configured = self.settings.stream_schedules()
        pull_streams = self.configured.of_kind("pull")
        for (adapter, stream), settings in configured.items():
            if adapter not in self.config.adapters:
                raise ConfigError(f"{where}.{adapter}]: adapter {adapter!r} is not configured in [adapters]")
            if adapter not in self.configured.adapters:
                continue  # not loaded: already reported as a problem
            pulls = [s for a, s in pull_streams if a == adapter]
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
            len(self.configured.of_kind("push")),
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
        await asyncio.to_thread(self.forwarder.states.flush)
        for sink in self.sinks.values():
            try:
                await sink.aclose()
            except Exception:
                log.warning("sink %s did not close cleanly", sink.name, exc_info=True)
        await self.hub.aclose()
        log.info("stopped in %.2f s", time.monotonic() - started)

    async def _maintenance(self) -> None:
        """Forget webhook answers older than ``receipt_retention`` and runs older than ``run_retention`` (at
        start, then hourly)."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.receipt_retention)
            try:
                n = await asyncio.to_thread(self.hub.store.prune_receipts, cutoff.isoformat(timespec="milliseconds"))
                if n:
                    log.info("forgot %d webhook receipt(s) older than %s", n, cutoff.date())
            except Exception:
                log.warning("pruning webhook receipts failed", exc_info=True)
            store = self.hub.store
            if isinstance(store, RunLog):
                runs_cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.run_retention)
                try:
                    n = await asyncio.to_thread(store.prune_runs, runs_cutoff.isoformat(timespec="milliseconds"))
                    if n:
                        log.info("forgot %d run(s) started before %s", n, runs_cutoff.date())
                except Exception:
                    log.warning("pruning the run history failed", exc_info=True)
            if await self.stopping.wait(3600.0):
                return

    def _pulled_page(self, page: PageResult) -> None:
        self.metrics.page(page)
        if page.inserted:
            self.forwarding.notify()

    def _forwarded(self, sink: str, summary: ForwardSummary) -> None:
        s = summary[sink]
        if s.dead_lettered:
            self.metrics.dead_lettered.labels(sink).inc(s.dead_lettered)


def routes_of(app: Starlette) -> Sequence[Route]:
    """The app's routes (for tests comparing them with the OpenAPI document)."""
    return [r for r in app.routes if isinstance(r, Route)]
