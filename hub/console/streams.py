"""Console pages about streams: the overview (streams and sinks) and one stream (runs, pull, pause, cursor)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..audit import AuditEvent
from ..pausing import PAUSED, pause_soon, paused, resume
from ..scheduler import StreamBusy
from ..store.base import Checkpoint, PageWrite, RunLog, RunRecord
from ..store.queries import FailureQueries
from .core import PREFIX, Console, Form, Pages
from .overview import Overview, PushRequest, gather_overview

__all__ = ["StreamPages", "console_overview"]

_CONSOLE_LEASE = "console"


def console_overview(console: Console) -> Overview:
    """The overview the console shows (blocking: call off the event loop)."""
    return gather_overview(
        console.hub.store, console.configured, console.scheduler, console.forwarder.sinks, console.stale_after
    )


class StreamPages(Pages):
    """``/console/`` and ``/console/streams/{adapter}/{stream}`` with its actions."""

    def routes(self) -> list[Route]:
        base = "/streams/{adapter}/{stream}"
        return self.c.routes(
            pages={"/": self.overview, base: self.stream},
            actions={
                f"{base}/pull": self.pull,
                f"{base}/pause": self.pause,
                f"{base}/resume": self.resume,
                f"{base}/cursor": self.cursor,
            },
        )

    async def overview(self, request: Request) -> Response:
        data = await asyncio.to_thread(console_overview, self.c)
        return self.c.render(request, "overview.html", "Overview", "Overview", data=data)

    def _key(self, request: Request) -> tuple[str, str]:
        return request.path_params["adapter"], request.path_params["stream"]

    async def stream(self, request: Request) -> Response:
        adapter, stream = key = self._key(request)
        store = self.c.hub.store
        data = await asyncio.to_thread(console_overview, self.c)
        row = next((s for s in data.streams if (s.adapter, s.stream) == key), None)
        if row is None:
            return self.c.render(request, "missing.html", "Not found", what=f"stream {adapter}:{stream}")
        runs: list[RunRecord] = []
        if isinstance(store, RunLog):
            runs = await asyncio.to_thread(store.runs, adapter, stream, 200)
        totals = {
            name: sum(getattr(r, name) for r in runs)
            for name in ("pages", "items", "inserted", "duplicates", "held", "quarantined", "quarantine_repeats")
        }
        widest = max([r.items for r in runs] + [1])
        requests: list[PushRequest] = []
        if row.kind == "push" and isinstance(store, FailureQueries):
            receipts = await asyncio.to_thread(store.recent_receipts, adapter, stream, 200)
            requests = [PushRequest.of(r) for r in receipts]
        request_totals = {
            name: sum(getattr(q, name) for q in requests) for name in ("items", "accepted", "quarantined", "records")
        }
        return self.c.render(
            request,
            "stream.html",
            f"Stream {adapter}:{stream}",
            "Overview",
            row=row,
            runs=runs,
            totals=totals,
            widest=widest,
            requests=requests,
            request_totals=request_totals,
            path=f"{PREFIX}/streams/{adapter}/{stream}",
        )

    async def pull(self, request: Request, form: Form) -> Response:
        adapter, stream = self._key(request)
        here = f"{PREFIX}/streams/{adapter}/{stream}"
        info = self.c.configured.streams.get((adapter, stream))
        if info is None or info.kind != "pull":
            return self.c.back(here, f"{adapter}:{stream} is not a configured pull stream", error=True)
        if (adapter, stream) in await asyncio.to_thread(paused, self.c.hub.store):
            return self.c.back(here, "the stream is paused: resume it to pull", error=True)
        await self.c.audit(request, "console.pull", f"{adapter}:{stream}", {})
        try:
            await self.c.scheduler.start_now(adapter, stream)
        except StreamBusy as exc:
            return self.c.back(here, str(exc), error=True)
        return self.c.back(here, "pull started: its run shows below when it ends")

    async def pause(self, request: Request, form: Form) -> Response:
        adapter, stream = self._key(request)
        here = f"{PREFIX}/streams/{adapter}/{stream}"
        await self.c.audit(request, "console.stream.pause", f"{adapter}:{stream}", {})
        if not await pause_soon(self.c.hub.store, adapter, stream):
            return self.c.back(here, "a run holds the stream now: pause it when the run ends", error=True)
        return self.c.back(here, "paused: no scheduled or manual pull runs until resumed")

    async def resume(self, request: Request, form: Form) -> Response:
        adapter, stream = self._key(request)
        await self.c.audit(request, "console.stream.resume", f"{adapter}:{stream}", {})
        await asyncio.to_thread(resume, self.c.hub.store, adapter, stream)
        return self.c.back(f"{PREFIX}/streams/{adapter}/{stream}", "resumed")

    async def cursor(self, request: Request, form: Form) -> Response:
        adapter, stream = self._key(request)
        here = f"{PREFIX}/streams/{adapter}/{stream}"
        if form.get("confirm") != f"{adapter}:{stream}":
            return self.c.back(here, f"not changed: type {adapter}:{stream} to confirm", error=True)
        reset = form.get("op") == "reset"
        cursor: Any = None
        if not reset:
            text = form.get("cursor")
            if not text:
                return self.c.back(here, "not changed: give the new cursor (JSON, or plain text)", error=True)
            try:
                cursor = orjson.loads(text)
            except orjson.JSONDecodeError:
                cursor = text
        done = await asyncio.to_thread(self._set_cursor, adapter, stream, cursor, reset, request)
        if not done:
            return self.c.back(here, "a run holds the stream now: change the cursor when it ends", error=True)
        return self.c.back(here, "cursor reset: the next run starts from the beginning" if reset else "cursor set")

    def _set_cursor(self, adapter: str, stream: str, cursor: Any, reset: bool, request: Request) -> bool:
        """Write the checkpoint under the stream's lease (the pause's, or one taken for it), audited with it."""
        store = self.c.hub.store
        owner = PAUSED if (adapter, stream) in paused(store) else _CONSOLE_LEASE
        if owner == _CONSOLE_LEASE and not store.acquire_lease(adapter, stream, owner, 30.0):
            return False
        host = request.client.host if request.client else "unknown"
        before = store.load_checkpoint(adapter, stream).cursor
        details = {"before": before, "after": cursor, "reset": reset}
        action = "console.cursor.reset" if reset else "console.cursor.set"
        event = AuditEvent(action, f"{adapter}:{stream}", details, actor=f"console@{host}")
        try:
            checkpoint = Checkpoint(cursor, {})
            store.commit_pages([PageWrite(adapter, stream, [], [], checkpoint, lease_owner=owner, audit=event)])
        finally:
            if owner == _CONSOLE_LEASE:
                store.release_lease(adapter, stream, owner)
        return True
