"""The replay driver: quarantined items run through the pipeline again (after a partner fix or an adapter upgrade).

An item that now passes is committed (its records, and the stream's pending state it changed; never the cursor)
and its entry marked ``resolved``; one that still fails stays open and its new problems are reported. Entries from
the "incomplete" stage (e.g. unpaired tap-ins) replay through ``normalize`` like any item. Entries of the
"plausibility" stage (held by a rule, ``tanpuhui.hub.plausibility``) are checked again against today's thresholds, or
released: credited anyway, the release in the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tanpuhui.sdk import Problem, TanpuhuiError, redact

from ..audit import AuditEvent
from ..pipeline import Pipeline
from ..runtime import Runtime
from ..store.base import Checkpoint

__all__ = ["ReplayDriver", "ReplayResult"]


@dataclass(frozen=True)
class ReplayResult:
    entry_id: int
    status: str  # "resolved" (now valid and committed), "failed" (still invalid), "missing"
    problems: list[Problem]


class ReplayDriver:
    """Replays quarantine entries by id (see the module docstring)."""

    def __init__(self, runtime: Runtime, pipeline: Pipeline) -> None:
        self.runtime = runtime
        self.pipeline = pipeline

    async def replay(self, ids: Sequence[int], *, release: bool = False) -> list[ReplayResult]:
        """Replay the entries ``ids`` (in order); an id that is not an open entry is ``missing``.

        ``release``: an entry held by a plausibility rule is credited even if the rule still fires (the release is
        written into the record and audited); other entries replay as usual.
        """
        return [await self._replay_one(entry_id, release) for entry_id in ids]

    async def _replay_one(self, entry_id: int, release: bool = False) -> ReplayResult:
        runtime = self.runtime
        store = runtime.store
        entry = store.quarantine_get(entry_id)
        if entry is None or entry.status != "open":
            return ReplayResult(entry_id, "missing", [])
        bound = runtime.stream(entry.adapter, entry.stream)
        item = runtime.quarantine_raw(entry)
        checkpoint = store.load_checkpoint(entry.adapter, entry.stream)
        ctx = bound.context(dict(checkpoint.state))
        try:
            await bound.stream.prepare(ctx)
        except TanpuhuiError as exc:
            return ReplayResult(entry_id, "failed", [Problem("", redact(str(exc)), "prepare")])
        release = release and entry.stage == "plausibility"
        processed = self.pipeline.process(bound, ctx, [item], flush=False, release=release)
        rejected = processed.rejected.get(0)
        if rejected is not None:
            return ReplayResult(entry_id, "failed", list(rejected[1]))
        action = "quarantine.release" if release else "quarantine.replay"
        audit = AuditEvent(action, bound.label, {"entry_id": entry_id})
        # the cursor stays where it is, but pending state (e.g. a tap-in now open) is kept
        store.commit_pages([processed.write(Checkpoint(checkpoint.cursor, ctx.state), audit)])
        store.quarantine_resolve(entry_id, "resolved")
        return ReplayResult(entry_id, "resolved", [])
