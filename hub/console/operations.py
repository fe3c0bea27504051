"""Console pages for running the hub: sinks (pause, resume, last errors) and the audit log (filter, verify)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tanpuhui.sdk import redact

from ..audit import AuditEntry, AuditLog, verify_log
from ..pausing import SINK_LEASES, pause_soon, resume
from .core import PREFIX, Console, Form
from .streams import gather_overview

__all__ = ["OperationPages"]

_AUDIT_WINDOW = 5000
"""Newest audit entries the page filters (the whole log is verified by the button)."""
_AUDIT_SHOWN = 300


class OperationPages:
    """``/console/sinks`` and ``/console/audit`` with their actions."""

    def __init__(self, console: Console) -> None:
        self.c = console

    def routes(self) -> list[Route]:
        c = self.c
        return [
            Route("/sinks", c.page(self.sinks), methods=["GET"]),
            Route("/sinks/{sink}/pause", c.action(self.pause), methods=["POST"]),
            Route("/sinks/{sink}/resume", c.action(self.resume), methods=["POST"]),
            Route("/audit", c.page(self.audit), methods=["GET"]),
            Route("/audit/verify", c.action(self.verify), methods=["POST"]),
        ]

    async def sinks(self, request: Request) -> Response:
        data = await asyncio.to_thread(gather_overview, self.c)
        letters = await asyncio.to_thread(self.c.hub.store.dead_letters, None, 1_000_000)
        errors: dict[str, list[tuple[str, str]]] = {}
        for d in reversed(letters):
            shown = errors.setdefault(d.sink, [])
            if len(shown) < 5:
                shown.append((d.created_at, redact(d.error)))
        return self.c.render(request, "sinks.html", "Sinks", "Sinks", sinks=data.sinks, errors=errors)

    async def pause(self, request: Request, form: Form) -> Response:
        sink = request.path_params["sink"]
        back = f"{PREFIX}/sinks"
        if sink not in self.c.forwarder.sinks:
            return self.c.back(back, f"no sink {sink!r}", error=True)
        await self.c.audit(request, "console.sink.pause", sink, {})
        if not await pause_soon(self.c.hub.store, SINK_LEASES, sink):
            return self.c.back(back, f"{sink} is delivering now: pause it when the batch ends", error=True)
        return self.c.back(back, f"{sink} paused: records wait in the outbox until resumed")

    async def resume(self, request: Request, form: Form) -> Response:
        sink = request.path_params["sink"]
        back = f"{PREFIX}/sinks"
        if sink not in self.c.forwarder.sinks:
            return self.c.back(back, f"no sink {sink!r}", error=True)
        await self.c.audit(request, "console.sink.resume", sink, {})
        await asyncio.to_thread(resume, self.c.hub.store, SINK_LEASES, sink)
        self.c.forwarding.notify()
        return self.c.back(back, f"{sink} resumed")

    def _entries(self, action: str, subject: str, actor: str, since: str) -> list[AuditEntry]:
        store = self.c.hub.store
        if not isinstance(store, AuditLog):
            return []
        head = store.audit_head()
        after = max(0, (head[0] if head else 0) - _AUDIT_WINDOW)
        out = []
        while True:
            batch = store.audit_entries(after, 1000)
            for e in batch:
                if (
                    (not action or e.action.startswith(action))
                    and (not subject or subject in e.subject)
                    and (not actor or actor in e.actor)
                    and (not since or e.at >= since)
                ):
                    out.append(e)
            if len(batch) < 1000:
                break
            after = batch[-1].seq
        return out[::-1]

    async def audit(self, request: Request) -> Response:
        q = request.query_params
        action, subject, actor, since = (q.get(k, "").strip()[:200] for k in ("action", "subject", "actor", "since"))
        entries = await asyncio.to_thread(self._entries, action, subject, actor, since)
        return self.c.render(
            request,
            "audit.html",
            "Audit log",
            "Audit",
            entries=[(e, redact(str(dict(e.details)))) for e in entries[:_AUDIT_SHOWN]],
            total=len(entries),
            kept=isinstance(self.c.hub.store, AuditLog),
            filter={"action": action, "subject": subject, "actor": actor, "since": since},
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
