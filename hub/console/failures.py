"""Console pages about what failed: quarantine (filter, inspect masked, replay, release or discard) and dead letters.

The filters run in the store's SQL over the whole table (:mod:`tanpuhui.hub.store.queries`), a page of
:data:`PAGE` rows at a time (keyset paging: ``after`` the last id shown), with the count of everything that
matches. The bulk actions act on exactly what a filter selects now (or on the rows ticked): the form posts the
filter back, and the server selects it again before acting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tanpuhui.sdk import redact

from ..privacy_view import masked
from ..store.queries import DeadLetterQuery, FailureQueries, QuarantineQuery, time_bound
from .core import PREFIX, Form, Pages

__all__ = ["PAGE", "DeadLetterFilter", "FailurePages", "QuarantineFilter", "page_links"]

PAGE = 100
"""Rows per page of a console list."""
_STATUSES = ("open", "resolved", "discarded")
Q = TypeVar("Q", QuarantineQuery, DeadLetterQuery)


@dataclass(frozen=True, slots=True)
class _Filter(Generic[Q]):
    """A console list's filters as typed: the store's query (:attr:`typed`) with its fields as the form gave them
    (every field optional, times still text, in UTC unless they say otherwise); :meth:`query` reads the times."""

    typed: Q

    @staticmethod
    def _typed(query: type[Q], values: Mapping[str, str]) -> Q:
        """The query's fields from ``values``, each stripped and cut to 200 characters."""
        return query(**{f.name: values.get(f.name, "").strip()[:200] for f in fields(query)})

    def fields(self) -> dict[str, str]:
        return {f.name: getattr(self.typed, f.name) for f in fields(self.typed)}

    def query(self) -> Q:
        """The store's query; ValueError naming the filter when a time is not one."""
        raise NotImplementedError

    def unfiltered(self) -> Q:
        """The query shown instead when :meth:`query` refuses the filters."""
        raise NotImplementedError

    def checked(self) -> tuple[Q, str]:
        """The store's query and ``""``; or, when a time is not one, the unfiltered query and what is wrong."""
        try:
            return self.query(), ""
        except ValueError as exc:
            return self.unfiltered(), str(exc)


class QuarantineFilter(_Filter[QuarantineQuery]):
    """The quarantine page's filters (:class:`QuarantineQuery`'s fields); a status not one of ours is "open"."""

    NAMES = tuple(f.name for f in fields(QuarantineQuery))

    @classmethod
    def of(cls, values: Mapping[str, str]) -> QuarantineFilter:
        typed = cls._typed(QuarantineQuery, values)
        status = values.get("status", "open")
        return cls(replace(typed, status=status if status in _STATUSES else "open"))

    def query(self) -> QuarantineQuery:
        t = self.typed
        return replace(t, since=_time("seen since", t.since), until=_time("created until", t.until, end=True))

    def unfiltered(self) -> QuarantineQuery:
        return QuarantineQuery(self.typed.status)


class DeadLetterFilter(_Filter[DeadLetterQuery]):
    """The dead-letter page's filters (:class:`DeadLetterQuery`'s fields)."""

    NAMES = tuple(f.name for f in fields(DeadLetterQuery))

    @classmethod
    def of(cls, values: Mapping[str, str]) -> DeadLetterFilter:
        return cls(cls._typed(DeadLetterQuery, values))

    def query(self) -> DeadLetterQuery:
        return replace(self.typed, since=_time("since", self.typed.since))

    def unfiltered(self) -> DeadLetterQuery:
        return DeadLetterQuery()


def _time(name: str, text: str, *, end: bool = False) -> str:
    if not text:
        return ""
    try:
        return time_bound(text, end=end)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _after(request: Request) -> int:
    text = request.query_params.get("after", "")
    return int(text) if text.isdigit() and int(text) < 2**63 else 0


def page_links(path: str, filters: Mapping[str, str], key: str, last: int | None, first: bool) -> dict[str, str]:
    """The next page's URL (``key`` = ``last``, when there is one) and the first page's (when not on it)."""
    kept = {k: v for k, v in filters.items() if v}
    out = {}
    if last is not None:
        out["next"] = f"{path}?{urlencode({**kept, key: last})}"
    if not first:
        out["first"] = f"{path}?{urlencode(kept)}" if kept else path
    return out


class FailurePages(Pages):
    """``/console/quarantine`` and ``/console/dead-letters`` with their actions."""

    def routes(self) -> list[Route]:
        return self.c.routes(
            pages={
                "/quarantine": self.quarantine,
                "/quarantine/{entry_id:int}": self.entry,
                "/dead-letters": self.dead_letters,
            },
            actions={"/quarantine/act": self.quarantine_act, "/dead-letters/replay": self.dead_letters_replay},
        )

    @property
    def store(self) -> FailureQueries:
        store = self.c.hub.store
        assert isinstance(store, FailureQueries), "the console needs a store that filters in SQL"
        return store

    # -- quarantine ------------------------------------------------------------------------------------------------

    def _quarantine_page(self, q: QuarantineQuery, after: int) -> dict[str, Any]:
        store = self.store
        rows = store.quarantine_find(q, after, PAGE + 1)
        facets = store.quarantine_facets(q.status)
        return {
            "entries": rows[:PAGE],
            "more": len(rows) > PAGE,
            "total": store.quarantine_count(q),
            "adapters": facets["adapter"],
            "streams": facets["stream"],
            "stages": facets["stage"],
        }

    async def quarantine(self, request: Request) -> Response:
        f = QuarantineFilter.of(request.query_params)
        q, error = f.checked()
        after = _after(request)
        data = await asyncio.to_thread(self._quarantine_page, q, after)
        entries = data["entries"]
        links = page_links(
            f"{PREFIX}/quarantine", f.fields(), "after", entries[-1].id if data["more"] else None, after == 0
        )
        return self.c.render(
            request,
            "quarantine.html",
            "Quarantine",
            "Quarantine",
            filter=f.fields(),
            filter_error=error,
            entries=entries,
            total=data["total"],
            links=links,
            statuses=_STATUSES,
            adapters=data["adapters"],
            streams=data["streams"],
            stages=data["stages"],
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
        f = QuarantineFilter.of({k: form.get(k) for k in QuarantineFilter.NAMES if form.all(k)})
        action = form.get("action")
        verb, _, scope = action.partition("-")
        back = f"{PREFIX}/quarantine"
        if verb not in ("replay", "discard", "release") or scope not in ("selected", "filtered", "one"):
            return self.c.back(back, f"unknown action {action!r}", error=True)
        if scope == "filtered":
            try:
                query = f.query()
            except ValueError as exc:
                return self.c.back(back, f"nothing done: {exc}", error=True)
            ids = await asyncio.to_thread(self.store.quarantine_ids, query)
        else:
            ids = form.ids()
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

    def _letters_page(self, q: DeadLetterQuery, after: int) -> tuple[list[Any], bool, int]:
        rows = self.store.dead_letters_find(q, after, PAGE + 1)
        return rows[:PAGE], len(rows) > PAGE, self.store.dead_letters_count(q)

    async def dead_letters(self, request: Request) -> Response:
        f = DeadLetterFilter.of(request.query_params)
        q, error = f.checked()
        after = _after(request)
        letters, more, total = await asyncio.to_thread(self._letters_page, q, after)
        links = page_links(f"{PREFIX}/dead-letters", f.fields(), "after", letters[-1].id if more else None, after == 0)
        return self.c.render(
            request,
            "dead_letters.html",
            "Dead letters",
            "Dead letters",
            letters=[(d, redact(d.error)) for d in letters],
            total=total,
            links=links,
            sinks=sorted(self.c.forwarder.sinks),
            filter=f.fields(),
            filter_error=error,
        )

    async def dead_letters_replay(self, request: Request, form: Form) -> Response:
        back = f"{PREFIX}/dead-letters"
        if form.get("action") == "replay-filtered":
            try:
                query = DeadLetterFilter.of({k: form.get(k) for k in DeadLetterFilter.NAMES}).query()
            except ValueError as exc:
                return self.c.back(back, f"nothing replayed: {exc}", error=True)
            ids = await asyncio.to_thread(self.store.dead_letter_ids, query)
        else:
            ids = form.ids()
        if not ids:
            return self.c.back(back, "nothing selected", error=True)
        await self.c.audit(request, "console.dead_letters.replay", "dead_letters", {"ids": ids})
        result = await self.c.forwarder.replay(ids)
        text = f"replayed {len(ids)}: {len(result.delivered)} delivered, {len(result.still_failing)} still failing"
        return self.c.back(back, text, error=not result.delivered)
