"""The admin API, ``/v1/admin/...``, behind ``Authorization: Bearer <[server] admin_token>``: the overview (what the
console's overview page and ``tanpuhui status --json`` show), streams (with their run state and drift), pull now, quarantine (list, show masked, replay) and dead letters (list, replay).

Every state-changing request is written to the audit log before it is carried out (what it changes is logged as
it commits); the actor is the client address, since the admin token is one shared secret, not a person.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, asdict, dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tanpuhui.sdk import redact

from ..console.overview import gather_overview
from ..drivers.pull import PullSummary
from ..forwarder import Forwarder
from ..hub import Hub
from ..pausing import paused
from ..privacy_view import masked
from ..scheduler import ForwarderLoop, Scheduler, StreamBusy
from ..store.base import DeadLetter, DriftLog, QuarantineEntry, RunLog
from . import openapi
from .http import (
    LIST_LIMIT,
    MAX_ID,
    BodyTooLarge,
    audit_request,
    declares_large_body,
    json_response,
    parse_bool,
    parse_limit,
    problem,
    read_body,
    replay_choice,
    too_large,
)
from .openapi import Endpoint
from .streams import Configured

__all__ = ["AdminApi"]

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(eq=False)
class AdminApi:
    """The admin routes of one sidecar (see the module docstring)."""

    hub: Hub
    configured: Configured
    scheduler: Scheduler
    forwarder: Forwarder
    forwarding: ForwarderLoop
    _: KW_ONLY
    token: str = field(repr=False)
    max_body_bytes: int
    stale_after: float

    def endpoints(self) -> list[Endpoint]:
        op = openapi.admin_operation
        guard = self._guard
        return [
            Endpoint("/v1/admin/overview", "GET", guard(self.overview), op("overview")),
            Endpoint("/v1/admin/streams", "GET", guard(self.streams), op("streams")),
            Endpoint("/v1/admin/streams/{adapter}/{stream}/pull", "POST", guard(self.pull), op("pull")),
            Endpoint("/v1/admin/quarantine", "GET", guard(self.quarantine_list), op("quarantine_list")),
            Endpoint("/v1/admin/quarantine/{entry_id:int}", "GET", guard(self.quarantine_show), op("quarantine_show")),
            Endpoint("/v1/admin/quarantine/replay", "POST", guard(self.quarantine_replay), op("quarantine_replay")),
            Endpoint("/v1/admin/dead-letters", "GET", guard(self.dead_letters), op("dead_letters")),
            Endpoint(
                "/v1/admin/dead-letters/replay", "POST", guard(self.dead_letters_replay), op("dead_letters_replay")
            ),
        ]

    def _guard(self, handler: Handler) -> Handler:
        """The token is checked from the headers alone, before a byte of the body is read; a refused request that
        declares a large body is answered with ``connection: close``, so the server does not read (and discard)
        it."""

        async def guarded(request: Request) -> Response:
            close = {"connection": "close"} if declares_large_body(request.headers) else {}
            if not self.token:
                return problem(403, 'the admin API is disabled: set [server] admin_token = { env = "..." }', close)
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            offered = credentials.strip().encode()
            if scheme.lower() != "bearer" or not hmac.compare_digest(offered, self.token.encode()):
                return problem(
                    401,
                    "admin API: missing or wrong bearer token",
                    {"www-authenticate": 'Bearer realm="tanpuhui-admin"', **close},
                )
            return await handler(request)

        return guarded

    async def _audit_request(self, request: Request, action: str, subject: str, details: dict[str, Any]) -> None:
        await audit_request(self.hub.store, request, "admin", action, subject, details)

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        try:
            raw = await read_body(request, self.max_body_bytes)
        except BodyTooLarge:
            return too_large(self.max_body_bytes)
        if not raw.strip():
            return {}
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return problem(400, f"body is not JSON: {exc}")
        if not isinstance(doc, dict):
            return problem(400, "body must be a JSON object")
        return doc

    # -- streams -------------------------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        data = await asyncio.to_thread(
            gather_overview,
            self.hub.store,
            self.configured,
            self.scheduler,
            self.forwarder.sinks,
            self.stale_after,
        )
        return json_response(data.as_dict())

    async def streams(self, request: Request) -> Response:
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
        recorded = (
            {(r.adapter, r.stream): r for r in await asyncio.to_thread(store.latest_runs)}
            if isinstance(store, RunLog)
            else {}
        )
        held = await asyncio.to_thread(paused, store)
        configured = self.configured.streams
        out = []
        for key in sorted(set(configured) | set(statuses) | set(recorded)):
            info = configured.get(key)
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
                "paused": key in held,
                "recorded_run": asdict(recorded[key]) if key in recorded else None,
            }
            if run is not None:
                doc.update(run.as_dict())
            out.append(doc)
        return json_response({"streams": out})

    async def pull(self, request: Request) -> Response:
        adapter = request.path_params["adapter"]
        stream = request.path_params["stream"]
        wait = parse_bool(request.query_params.get("wait"))
        if wait is None:
            return problem(400, "wait must be true or false (or 1, 0, yes, no)")
        info = self.configured.streams.get((adapter, stream))
        if info is None:
            return problem(404, f"no configured stream {adapter}:{stream}")
        if info.kind != "pull":
            return problem(409, f"{adapter}:{stream} is a push stream; partners send it to the sidecar")
        await self._audit_request(request, "admin.pull", f"{adapter}:{stream}", {})
        try:
            task = await self.scheduler.start_now(adapter, stream)
        except StreamBusy as exc:
            return problem(409, str(exc))
        if not wait:
            return json_response({"status": "started", "adapter": adapter, "stream": stream}, 202)
        summary = await asyncio.shield(task)
        if summary is None:
            return problem(503, "the pull was stopped by a shutdown; it resumes from its cursor")
        return json_response({"status": "finished", "summary": summary_doc(summary)})

    # -- quarantine ------------------------------------------------------------------------------------------------

    async def quarantine_list(self, request: Request) -> Response:
        q = request.query_params
        status = q.get("status", "open")
        if status not in ("open", "resolved", "discarded"):
            return problem(400, "status must be open, resolved or discarded")
        limit = parse_limit(q.get("limit"))
        if limit is None:
            return problem(400, f"limit must be an integer from 1 to {LIST_LIMIT}")
        entries = await asyncio.to_thread(self.hub.store.quarantine_list, q.get("adapter") or None, status, limit)
        return json_response({"entries": [entry_doc(e) for e in entries]})

    async def quarantine_show(self, request: Request) -> Response:
        entry_id = request.path_params["entry_id"]
        if not 0 < entry_id <= MAX_ID:
            return problem(404, f"no quarantine entry {entry_id}")
        entry = await asyncio.to_thread(self.hub.store.quarantine_get, entry_id)
        if entry is None:
            return problem(404, f"no quarantine entry {entry_id}")
        doc = entry_doc(entry)
        try:
            personal = self.hub.stream_schema(entry.adapter, entry.stream).personal_fields
            doc["raw"] = masked(self.hub.quarantine_raw(entry), personal)
        except Exception as exc:  # e.g. sealed under a pseudonym key that is no longer configured
            doc["raw"] = None
            doc["raw_error"] = redact(f"{type(exc).__name__}: {exc}")
        return json_response(doc)

    async def quarantine_replay(self, request: Request) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        release = body.pop("release", False)
        if not isinstance(release, bool):
            return problem(400, '"release" must be true or false')
        chosen = replay_choice(body, "adapter")
        if isinstance(chosen, str):
            return problem(400, chosen)
        ids, adapter = chosen
        if ids is None:
            entries = await asyncio.to_thread(self.hub.store.quarantine_list, adapter, "open", 1_000_000)
            ids = [e.id for e in entries]
        details: dict[str, Any] = {"ids": ids, "release": True} if release else {"ids": ids}
        await self._audit_request(request, "admin.quarantine.replay", "quarantine", details)
        results = await self.hub.replay_quarantine(ids, release=release)
        self.forwarding.notify()
        docs = [{"id": r.entry_id, "status": r.status, "errors": [p.as_dict() for p in r.problems]} for r in results]
        counts = {k: sum(1 for d in docs if d["status"] == k) for k in ("resolved", "failed", "missing")}
        return json_response({**counts, "results": docs})

    # -- dead letters ----------------------------------------------------------------------------------------------

    async def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"))
        if limit is None:
            return problem(400, f"limit must be an integer from 1 to {LIST_LIMIT}")
        letters = await asyncio.to_thread(self.hub.store.dead_letters, q.get("sink") or None, limit)
        return json_response({"dead_letters": [dead_letter_doc(d) for d in letters]})

    async def dead_letters_replay(self, request: Request) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        chosen = replay_choice(body, "sink")
        if isinstance(chosen, str):
            return problem(400, chosen)
        ids, sink = chosen
        if ids is None:
            letters = await asyncio.to_thread(self.hub.store.dead_letters, sink, 1_000_000)
            ids = [d.id for d in letters]
        await self._audit_request(request, "admin.dead_letters.replay", "dead_letters", {"ids": ids})
        result = await self.forwarder.replay(ids)
        return json_response(
            {
                "delivered": result.delivered,
                "still_failing": result.still_failing,
                "missing": result.missing,
                "errors": {k: redact(v) for k, v in result.errors.items()},
            }
        )


def _attributes(obj: object, names: str, **computed: Any) -> dict[str, Any]:
    """The attributes ``names`` (space-separated, in this order) of ``obj``; those in ``computed`` as given there."""
    return {name: computed[name] if name in computed else getattr(obj, name) for name in names.split()}


def entry_doc(e: QuarantineEntry) -> dict[str, Any]:
    """A quarantine entry as the admin API shows it (without its sealed payload)."""
    return _attributes(
        e,
        "id adapter stream stage partner_record_id errors status created_at resolved_at repeats last_seen",
        errors=e.problems,
    )


def dead_letter_doc(d: DeadLetter) -> dict[str, Any]:
    """A dead letter as the admin API shows it (its error with secrets masked)."""
    return _attributes(d, "id sink seq record_id attempts error created_at", error=redact(d.error))


def summary_doc(s: PullSummary) -> dict[str, Any]:
    """A pull run's totals as the admin API shows them."""
    return _attributes(
        s,
        "adapter stream pages pulled valid records inserted duplicates held quarantined "
        "quarantine_repeats seconds error",
        seconds=round(s.seconds, 3),
    )
