"""Console pages for running the hub: sinks (pause, resume, last errors) and the audit log (filter, verify)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tanpuhui.sdk import redact

from ..audit import AuditEntry, AuditLog, verify_log
from ..pausing import SINK_LEASES, pause_sink, resume
from ..store.queries import AuditQuery, DeadLetterQuery, FailureQueries, time_bound
from ..store.sink_log import SinkStateLog
from .core import PREFIX, Form, Pages
from .failures import PAGE, page_links
from .streams import console_overview

__all__ = ["OperationPages"]

_SINKS = f"{PREFIX}/sinks"


class OperationPages(Pages):
    """``/console/sinks`` and ``/console/audit`` with their actions."""

    def routes(self) -> list[Route]:
        return self.c.routes(
            pages={"/sinks": self.sinks, "/audit": self.audit},
            actions={
                "/sinks/{sink}/pause": self.pause,
                "/sinks/{sink}/resume": self.resume,
                "/audit/verify": self.verify,
            },
        )

    async def sinks(self, request: Request) -> Response:
        data = await asyncio.to_thread(console_overview, self.c)
        errors = await asyncio.to_thread(self._errors, [k.name for k in data.sinks])
        return self.c.render(request, "sinks.html", "Sinks", "Sinks", sinks=data.sinks, errors=errors)

    def _errors(self, sinks: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        """Each sink's recent failed deliveries (any replica's) and, after them, its newest dead letters."""
        store = self.c.hub.store
        out: dict[str, list[tuple[str, str, str]]] = {}
        for name in sinks:
            rows = out.setdefault(name, [])
            if isinstance(store, SinkStateLog):
                rows.extend((f.at, f"{f.state} (failed try)", redact(f.error)) for f in store.sink_failures(name, 10))
            if isinstance(store, FailureQueries):
                newest = store.dead_letters_find(DeadLetterQuery(sink=name), 0, 5, newest=True)
                rows.extend((d.created_at, "dead-lettered", redact(d.error)) for d in newest)
        return out

    async def _audited_sink(self, request: Request, verb: str) -> str | Response:
        """The sink the path names, its ``console.sink.{verb}`` request audited; or, when there is no such sink, the
        answer that says so."""
        sink: str = request.path_params["sink"]
        if sink not in self.c.forwarder.sinks:
            return self.c.back(_SINKS, f"no sink {sink!r}", error=True)
        await self.c.audit(request, f"console.sink.{verb}", sink, {})
        return sink

    async def pause(self, request: Request, form: Form) -> Response:
        sink = await self._audited_sink(request, "pause")
        if isinstance(sink, Response):
            return sink
        if not await asyncio.to_thread(pause_sink, self.c.hub.store, sink):
            return self.c.back(
                _SINKS, f"{sink} could not be paused (its lease keeps changing hands): try again", error=True
            )
        return self.c.back(_SINKS, f"{sink} paused: records wait in the outbox until resumed")

    async def resume(self, request: Request, form: Form) -> Response:
        sink = await self._audited_sink(request, "resume")
        if isinstance(sink, Response):
            return sink
        await asyncio.to_thread(resume, self.c.hub.store, SINK_LEASES, sink)
        self.c.forwarding.notify()
        return self.c.back(_SINKS, f"{sink} resumed")

    def _entries(self, q: AuditQuery, before: int) -> tuple[list[AuditEntry], bool, int]:
        store = self.c.hub.store
        if not isinstance(store, FailureQueries):
            return [], False, 0
        rows = store.audit_find(q, before, PAGE + 1)
        return rows[:PAGE], len(rows) > PAGE, store.audit_count(q)

    async def audit(self, request: Request) -> Response:
        q = request.query_params
        typed = {k: q.get(k, "").strip()[:200] for k in ("action", "subject", "actor", "since")}
        text = q.get("before", "")
        before = int(text) if text.isdigit() and int(text) < 2**63 else 0
        error = ""
        try:
            since = time_bound(typed["since"]) if typed["since"] else ""
        except ValueError as exc:
            since, error = "", f"since: {exc}"
        query = AuditQuery(typed["action"], typed["subject"], typed["actor"], since)
        entries, more, total = await asyncio.to_thread(self._entries, query, before)
        links = page_links(f"{PREFIX}/audit", typed, "before", entries[-1].seq if more else None, before == 0)
        return self.c.render(
            request,
            "audit.html",
            "Audit log",
            "Audit",
            entries=[(e, redact(str(dict(e.details)))) for e in entries],
            total=total,
            links=links,
            kept=isinstance(self.c.hub.store, AuditLog),
            filter=typed,
            filter_error=error,
        )

    async def verify(self, request: Request, form: Form) -> Response:
        store = self.c.hub.store
        back = f"{PREFIX}/audit"
        if not isinstance(store, AuditLog):
            return self.c.back(back, "this store keeps no audit log", error=True)
        result = await asyncio.to_thread(verify_log, store, records=True)
        if result.ok:
            head = f", head {result.head[0]}:{result.head[1][:16]}…" if result.head else ""
            return self.c.back(
                back, f"verified: {result.entries} entries intact, {result.records_checked} records checked{head}"
            )
        return self.c.back(back, f"BROKEN: {'; '.join(result.problems[:3])}", error=True)
