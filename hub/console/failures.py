"""Console pages about what failed: quarantine (filter, inspect masked, replay, release or discard) and dead letters.

The lists are filtered on the server, and the bulk actions act on exactly what a filter selects now (or on the
rows ticked): the form posts the filter back, and the server lists it again before acting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tanpuhui.sdk import redact

from ..privacy_view import masked
from ..store.base import DeadLetter, QuarantineEntry
from .core import PREFIX, Console, Form

__all__ = ["FailurePages", "QuarantineFilter"]

_ALL = 1_000_000
_SHOWN = 500
_STATUSES = ("open", "resolved", "discarded")


@dataclass(frozen=True, slots=True)
class QuarantineFilter:
    """The quarantine page's filters (every field optional; times are ISO prefixes compared as text)."""

    status: str = "open"
    adapter: str = ""
    stream: str = ""
    stage: str = ""
    problem: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, values: Mapping[str, str]) -> QuarantineFilter:
        status = values.get("status", "open")
        return cls(
            status if status in _STATUSES else "open",
            *(values.get(k, "").strip()[:200] for k in ("adapter", "stream", "stage", "problem", "since", "until")),
        )

    def fields(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__slots__}

    def matches(self, e: QuarantineEntry) -> bool:
        if (self.stream and e.stream != self.stream) or (self.stage and e.stage != self.stage):
            return False
        if self.since and e.last_seen < self.since:
            return False
        if self.until and e.created_at[: len(self.until)] > self.until:
            return False
        if self.problem:
            needle = self.problem.lower()
            texts = (f"{p.get('pointer', '')} {p.get('message', '')} {p.get('keyword', '')}" for p in e.problems)
            if not any(needle in t.lower() for t in texts):
                return False
        return True


class FailurePages:
    """``/console/quarantine`` and ``/console/dead-letters`` with their actions."""

    def __init__(self, console: Console) -> None:
        self.c = console

    def routes(self) -> list[Route]:
        c = self.c
        return [
            Route("/quarantine", c.page(self.quarantine), methods=["GET"]),
            Route("/quarantine/{entry_id:int}", c.page(self.entry), methods=["GET"]),
            Route("/quarantine/act", c.action(self.quarantine_act), methods=["POST"]),
            Route("/dead-letters", c.page(self.dead_letters), methods=["GET"]),
            Route("/dead-letters/replay", c.action(self.dead_letters_replay), methods=["POST"]),
        ]

    # -- quarantine ------------------------------------------------------------------------------------------------

    def _select(self, f: QuarantineFilter) -> list[QuarantineEntry]:
        entries = self.c.hub.store.quarantine_list(f.adapter or None, f.status, _ALL)
        return [e for e in entries if f.matches(e)]

    async def quarantine(self, request: Request) -> Response:
        f = QuarantineFilter.of(request.query_params)
        entries = await asyncio.to_thread(self._select, f)
        every = await asyncio.to_thread(self.c.hub.store.quarantine_list, None, f.status, _ALL)
        return self.c.render(
            request,
            "quarantine.html",
            "Quarantine",
            "Quarantine",
            filter=f,
            entries=entries[:_SHOWN],
            total=len(entries),
            statuses=_STATUSES,
            adapters=sorted({e.adapter for e in every}),
            streams=sorted({e.stream for e in every}),
            stages=sorted({e.stage for e in every}),
        )

    async def entry(self, request: Request) -> Response:
        entry_id = int(request.path_params["entry_id"])
        hub = self.c.hub
        entry = await asyncio.to_thread(hub.store.quarantine_get, entry_id) if 0 < entry_id < 2**63 else None
        if entry is None:
            return self.c.render(
                request, "missing.html", "Not found", "Quarantine", what=f"quarantine entry {entry_id}"
            )
        payload: Any = None
        payload_error = None
        try:
            personal = hub.stream_schema(entry.adapter, entry.stream).personal_fields
            payload = masked(hub.quarantine_raw(entry), personal)
        except Exception as exc:  # e.g. sealed under a pseudonym key no longer configured
            payload_error = redact(f"{type(exc).__name__}: {exc}")
        text = None if payload is None else orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
        return self.c.render(
            request,
            "entry.html",
            f"Quarantine entry {entry.id}",
            "Quarantine",
            entry=entry,
            payload=text,
            payload_error=payload_error,
        )

    async def quarantine_act(self, request: Request, form: Form) -> Response:
        f = QuarantineFilter.of({k: form.get(k) for k in QuarantineFilter.__slots__ if form.all(k)})
        action = form.get("action")
        verb, _, scope = action.partition("-")
        back = f"{PREFIX}/quarantine"
        if verb not in ("replay", "discard", "release") or scope not in ("selected", "filtered", "one"):
            return self.c.back(back, f"unknown action {action!r}", error=True)
        ids = [e.id for e in await asyncio.to_thread(self._select, f)] if scope == "filtered" else form.ids()
        if scope == "one" and ids:
            back = f"{PREFIX}/quarantine/{ids[0]}"
        if not ids:
            return self.c.back(back, "nothing selected", error=True)
        await self.c.audit(
            request, f"console.quarantine.{verb}", "quarantine", {"ids": ids, "scope": scope, **f.fields()}
        )
        if verb == "discard":
            store = self.c.hub.store
            for entry_id in ids:
                await asyncio.to_thread(store.quarantine_resolve, entry_id, "discarded")
            return self.c.back(back, f"discarded {len(ids)} entr{'y' if len(ids) == 1 else 'ies'}")
        # release: entries a plausibility rule held are credited anyway (docs/verification.md); others replay
        results = await self.c.hub.replay_quarantine(ids, release=verb == "release")
        self.c.forwarding.notify()
        counts = {k: sum(1 for r in results if r.status == k) for k in ("resolved", "failed", "missing")}
        done = "released" if verb == "release" else "replayed"
        text = f"{done} {len(ids)}: {counts['resolved']} resolved, {counts['failed']} still failing"
        if counts["missing"]:
            text += f", {counts['missing']} not open"
        return self.c.back(back, text, error=counts["resolved"] == 0)

    # -- dead letters ----------------------------------------------------------------------------------------------

    def _letters(self, sink: str, error: str, since: str) -> list[DeadLetter]:
        letters = self.c.hub.store.dead_letters(sink or None, _ALL)
        return [
            d
            for d in letters
            if (not error or error.lower() in d.error.lower()) and (not since or d.created_at >= since)
        ]

    async def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        sink, error, since = (q.get(k, "").strip()[:200] for k in ("sink", "error", "since"))
        letters = await asyncio.to_thread(self._letters, sink, error, since)
        shown = [(d, redact(d.error)) for d in letters[:_SHOWN]]
        return self.c.render(
            request,
            "dead_letters.html",
            "Dead letters",
            "Dead letters",
            letters=shown,
            total=len(letters),
            sinks=sorted(self.c.forwarder.sinks),
            filter={"sink": sink, "error": error, "since": since},
        )

    async def dead_letters_replay(self, request: Request, form: Form) -> Response:
        back = f"{PREFIX}/dead-letters"
        if form.get("action") == "replay-filtered":
            letters = await asyncio.to_thread(self._letters, form.get("sink"), form.get("error"), form.get("since"))
            ids = [d.id for d in letters]
        else:
            ids = form.ids()
        if not ids:
            return self.c.back(back, "nothing selected", error=True)
        await self.c.audit(request, "console.dead_letters.replay", "dead_letters", {"ids": ids})
        result = await self.c.forwarder.replay(ids)
        text = f"replayed {len(ids)}: {len(result.delivered)} delivered, {len(result.still_failing)} still failing"
        return self.c.back(back, text, error=not result.delivered)
