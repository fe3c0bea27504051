"""The forwarder: drains the outbox to sinks in batches, riding out consumer outages; dead letters and replay.

Each sink has its own position in the outbox (``store.sink_position``); the forwarder reads rows after it with a
keyset cursor, hands a batch to the sink, and moves the position past the batch in one transaction — that is the
"delivered" mark. A crash between send and mark re-sends the batch: delivery is at-least-once, and the record id
(the CloudEvents ``id``) lets the consumer make it exactly-once.

Per batch, a transient failure (429, 5xx, timeouts, refused connections) pauses the sink on that batch: nothing
after it is sent to that sink, and it is tried again (with tenacity) after the consumer's ``Retry-After`` (capped at
``max_retry_after``) or an exponential backoff with jitter capped at ``max_backoff``. A batch is dead-lettered for
a transient failure only once it has had ``attempts`` tries *and* the sink has been failing for ``give_up_after``
(``0``: as soon as its ``attempts`` ran out). ``drain(ride_out=True)`` (the sidecar) keeps retrying until then;
a plain ``drain()`` (``tanpuhui forward``) makes ``attempts`` tries and leaves a still-failing batch in the outbox
(the sink's summary says ``retrying``). A permanent failure (another 4xx) dead-letters the batch at once with the
consumer's answer and the number of tries, in the transaction that moves the position, and draining goes on. A
410 Gone stops that sink and leaves its position where it was. Each sink's state (ok / retrying since when, with
the last error and the failed tries / stopped) is kept in :attr:`Forwarder.states` (:mod:`.sink_state`), which
logs an outage and its end, counts recoveries and appends ``sink.recovered`` to the audit log when the store keeps
one.

Sinks drain concurrently and independently: one sink being down never holds back another. Several replicas on one
store: each sink is drained under a lease (``[hub] lease_ttl``), so one replica drains it at a time (and rides out
its outage) and the others skip it (``leased_elsewhere``).

Sink errors and their outcome::

    SinkError(retryable=True)    retried; dead letters only after attempts and give_up_after of failure
    SinkError(retryable=False)   dead letters at once
    SinkError(gone=True)         the sink stops; its rows stay in the outbox for it
    any other exception          a bug in the sink: it stops, nothing is marked, the error is reported
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from tanpuhui.sdk import ConfigError, OutboxRow, Sink, SinkError

from .config import ForwarderSettings
from .leasing import HeldLease, hold_lease
from .sink_state import SinkState, SinkStates
from .store.base import SINK_LEASES, DeadLetter, Store
from .store.leases import new_owner_id

__all__ = ["ForwardSummary", "Forwarder", "ReplayResult", "SinkState", "SinkStates", "SinkSummary"]

log = logging.getLogger("tanpuhui.forwarder")

Progress = Callable[[str, int], None]


@dataclass(slots=True)
class SinkSummary:
    """What one drain did for one sink."""

    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    gone: bool = False
    retrying: bool = False
    """The batch in hand still failed transiently when the drain ended: it stays in the outbox (nothing after it
    was sent); the next drain tries it again."""
    failed: bool = False
    """Stopped by an unexpected error in the sink (a bug, not a delivery failure); nothing was marked."""
    leased_elsewhere: bool = False
    """Skipped: another replica holds the sink's lease (it is draining the sink now)."""
    last_error: str | None = None


@dataclass(slots=True)
class ForwardSummary:
    """Per-sink results of :meth:`Forwarder.drain`, by sink name."""

    sinks: dict[str, SinkSummary] = field(default_factory=dict)

    def __getitem__(self, sink: str) -> SinkSummary:
        return self.sinks[sink]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sinks)

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.sinks.values())

    @property
    def dead_lettered(self) -> int:
        return sum(s.dead_lettered for s in self.sinks.values())

    @property
    def ok(self) -> bool:
        """True when nothing was dead-lettered and no sink is gone, failed or left retrying."""
        return all(not (s.dead_lettered or s.gone or s.failed or s.retrying) for s in self.sinks.values())


@dataclass(slots=True)
class ReplayResult:
    """Dead-letter ids delivered (and deleted) and still failing (kept); unpacks as ``delivered, still_failing``.

    ``missing``: requested ids that are not dead letters (already replayed, or never were); ``errors``: the last
    error per sink that still fails.
    """

    delivered: list[int] = field(default_factory=list)
    still_failing: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[list[int]]:
        return iter((self.delivered, self.still_failing))


class _Stop(Exception):
    """The sink must not be used any more in this run (410 Gone, or a bug in the sink)."""


class _Outcome(NamedTuple):
    """How one batch ended: delivered, dead (to be dead-lettered with ``error``) or left in the outbox."""

    kind: Literal["delivered", "dead", "left"]
    attempts: int
    error: SinkError | None = None


class Forwarder:
    """Drains the outbox of ``store`` to ``sinks`` (by name); see the module docstring for the semantics.

    ``sleep`` is what retries wait with (the sidecar passes its shutdown-aware sleep; tests pass a recorder). The
    sinks stay owned by the caller, who closes them (``await sink.aclose()``) on the event loop that used them.
    """

    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        *,
        batch_size: int = 1000,
        attempts: int = 8,
        initial_backoff: float = 0.5,
        max_backoff: float = 300.0,
        max_retry_after: float = 300.0,
        give_up_after: float = 3 * 86400.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        owner: str | None = None,
        lease_ttl: float = 30.0,
        read: Callable[[int, int], list[OutboxRow]] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        if give_up_after < 0:
            raise ValueError(f"give_up_after must not be negative, got {give_up_after}")
        self.store = store
        self.sinks = dict(sinks)
        self.batch_size = batch_size
        self.attempts = attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.give_up_after = give_up_after
        self._sleep = sleep
        self.owner = owner or new_owner_id()
        """Lease owner name: one replica drains a sink at a time (the others skip it)."""
        self.lease_ttl = lease_ttl
        self._read = read or store.read_outbox
        """``read(after_seq, limit)``: the store's :meth:`read_outbox`, or what answers as it does
        (:class:`tanpuhui.hub.feed.CommittedFeed`: pages this process just committed, from memory)."""
        self.states = SinkStates(
            self.sinks, give_up_after=give_up_after, max_backoff=max_backoff, store=store, owner=self.owner
        )
        """Each sink's delivery state, by name (:class:`SinkState`, replaced whole on each change)."""

    @classmethod
    def configured(
        cls,
        store: Store,
        sinks: Mapping[str, Sink],
        settings: ForwarderSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        owner: str | None = None,
        lease_ttl: float = 30.0,
        read: Callable[[int, int], list[OutboxRow]] | None = None,
    ) -> Forwarder:
        """A forwarder with hub.toml's ``[forwarder]`` settings, each the keyword argument of the same name (and
        ``[hub] lease_ttl`` for its sink leases)."""
        return cls(store, sinks, **settings.model_dump(), sleep=sleep, owner=owner, lease_ttl=lease_ttl, read=read)

    # -- draining --------------------------------------------------------------------------------------------

    async def drain(
        self,
        sink: str | None = None,
        progress: Progress | None = None,
        *,
        ride_out: bool = False,
        follow: Callable[[], Callable[[], Awaitable[bool]]] | None = None,
    ) -> ForwardSummary:
        """Deliver everything after each sink's position (or only ``sink``'s) until the outbox is exhausted.

        ``progress(sink_name, rows)`` is called after each batch is marked (delivered or dead-lettered).
        ``ride_out``: keep retrying a transiently failing batch (holding the sink's lease) until it is delivered or
        dead-lettered after ``give_up_after``; without it, a batch still failing after ``attempts`` tries is left
        in the outbox and the sink's summary says ``retrying``.
        ``follow``: makes one waiter per sink; when the outbox is exhausted, the sink's waiter is awaited and the
        outbox read again while it returns True (``tanpuhui run``: more pages are being committed; see
        :meth:`tanpuhui.hub.feed.CommittedFeed.follower`), the sink's lease held throughout. Without it, the drain
        ends there.
        """
        names = [self._known(sink)] if sink is not None else list(self.sinks)
        summary = ForwardSummary({name: SinkSummary() for name in names})
        await asyncio.gather(
            *(
                self._drain_one(name, summary.sinks[name], progress, ride_out, follow() if follow else None)
                for name in names
            )
        )
        await self.states.settled()
        return summary

    def _known(self, name: str) -> str:
        if name not in self.sinks:
            known = ", ".join(sorted(self.sinks)) or "none"
            raise ConfigError(f"unknown sink {name!r}; configured sinks: {known}")
        return name

    async def _drain_one(
        self,
        name: str,
        summary: SinkSummary,
        progress: Progress | None,
        ride_out: bool,
        follow: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        # With several replicas on one store, one drains a sink at a time; the lease is renewed in the background
        # and given back at the end. A replica that dies mid-batch: the next owner sends that batch again.
        async with hold_lease(self.store, SINK_LEASES, name, self.owner, self.lease_ttl) as lease:
            if lease is None:
                summary.leased_elsewhere = True
                self.states.forget(name)
                return
            await self._drain_leased(name, summary, progress, lease, ride_out, follow)
            if lease.lost:
                self.states.forget(name)

    async def _drain_leased(
        self,
        name: str,
        summary: SinkSummary,
        progress: Progress | None,
        lease: HeldLease,
        ride_out: bool,
        follow: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        sink = self.sinks[name]
        store = self.store
        read = self._read
        # The next batch is read (in a thread) while the current one is on the wire: the read does not depend on
        # how delivery ends, since the position moves past a batch whether it was delivered or dead-lettered (and
        # a batch left in the outbox ends the drain).
        last = store.sink_position(name)
        reading = asyncio.ensure_future(asyncio.to_thread(read, last, self.batch_size))
        try:
            while True:
                rows = await reading
                if lease.lost:
                    return
                if not rows:
                    if follow is None or not await follow() or lease.lost:
                        return
                    reading = asyncio.ensure_future(asyncio.to_thread(read, last, self.batch_size))
                    continue
                last = rows[-1].seq
                reading = asyncio.ensure_future(asyncio.to_thread(read, last, self.batch_size))
                try:
                    outcome = await self._deliver(name, sink, rows, summary, lease=lease, ride_out=ride_out)
                except _Stop:
                    return
                if outcome.kind == "left":
                    summary.retrying = True
                    return
                if outcome.error is None:
                    store.advance_sink(name, last)
                    summary.delivered += len(rows)
                else:
                    message = str(outcome.error)
                    store.advance_sink(name, last, dead=[(row, outcome.attempts, message) for row in rows])
                    summary.dead_lettered += len(rows)
                    log.warning(
                        "sink %s: %d records (seq %d-%d) dead-lettered after %d attempt(s): %s",
                        name,
                        len(rows),
                        rows[0].seq,
                        last,
                        outcome.attempts,
                        message,
                    )
                summary.batches += 1
                if progress is not None:
                    progress(name, len(rows))
        finally:
            if not reading.done():
                await asyncio.wait([reading])
            if not reading.cancelled():
                reading.exception()  # retrieved, so an abandoned read error is not reported as unhandled

    async def _deliver(
        self,
        name: str,
        sink: Sink,
        rows: Sequence[OutboxRow],
        summary: SinkSummary,
        *,
        lease: HeldLease | None,
        ride_out: bool = False,
    ) -> _Outcome:
        """Send one batch with retries; raises :class:`_Stop` when the sink is gone or broken.

        Draining (``lease`` given) keeps the sink's state: a transient failure makes it ``retrying``, an answer
        ends the outage. A replay (no lease) leaves the state alone and makes ``attempts`` tries at most.
        """
        track = lease is not None
        attempts = 0

        def failed(state: RetryCallState) -> None:
            if track:
                self.states.failing(name, str(_exception(state)))

        def stop(state: RetryCallState) -> bool:
            if lease is not None and lease.lost:
                return True
            if state.attempt_number < self.attempts:
                return False
            return not ride_out or self.states.given_up(name)

        def before_sleep(state: RetryCallState) -> None:
            summary.retries += 1
            summary.last_error = str(_exception(state))
            if track:
                self.states.waiting(name, state.upcoming_sleep)
            log.info(
                "sink %s: try %d of records seq %d-%d failed, next in %.1f s: %s",
                name,
                state.attempt_number,
                rows[0].seq,
                rows[-1].seq,
                state.upcoming_sleep,
                summary.last_error,
            )

        try:
            async for attempt in self._retrying(stop, failed, before_sleep):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await sink.send(rows)
        except SinkError as exc:
            summary.last_error = str(exc)
            if exc.gone:
                summary.gone = True
                if track:
                    self.states.stopped(name, str(exc))
                log.error("sink %s is gone (410); stopped, its records stay in the outbox: %s", name, exc)
                raise _Stop from exc
            if not _retryable(exc) or not track:
                if track:  # a permanent answer: the consumer is up again, whatever it thinks of this batch
                    self.states.answered(name)
                return _Outcome("dead", attempts, exc)
            if lease is not None and lease.lost:
                return _Outcome("left", attempts, exc)
            if attempts >= self.attempts and self.states.given_up(name):
                self.states.give_up(name, rows[0].seq, rows[-1].seq)
                return _Outcome("dead", attempts, exc)
            return _Outcome("left", attempts, exc)
        except Exception as exc:
            summary.failed = True
            summary.last_error = f"{type(exc).__name__}: {exc}"
            if track:
                self.states.stopped(name, summary.last_error)
            log.exception("sink %s failed unexpectedly; stopped, nothing marked", name)
            raise _Stop from exc
        if track:
            self.states.answered(name)
        return _Outcome("delivered", attempts)

    def _retrying(
        self,
        stop: Callable[[RetryCallState], bool],
        after: Callable[[RetryCallState], None],
        before_sleep: Callable[[RetryCallState], None],
    ) -> AsyncRetrying:
        def wait(state: RetryCallState) -> float:
            exc = _exception(state)
            if isinstance(exc, SinkError) and exc.retry_after is not None:
                return min(max(exc.retry_after, 0.0), self.max_retry_after)
            # The exponent is bounded: a sink can fail for days, and 2.0 ** 1100 overflows a float.
            base = self.initial_backoff * 2.0 ** min(state.attempt_number - 1, 60)
            return min(self.max_backoff, base * random.uniform(1.0, 1.5))

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            after=after,
            before_sleep=before_sleep,
            reraise=True,
        )

    # -- dead letters ----------------------------------------------------------------------------------------

    async def replay(self, ids: Sequence[int]) -> ReplayResult:
        """Send the given dead letters again (with retries), grouped by sink; delivered ones are deleted.

        A dead letter whose sink is not configured any more, or that fails again, stays (its id is in
        ``still_failing``).
        """
        result = ReplayResult()
        found = self.store.dead_letter_rows(ids)
        found_ids = {letter.id for letter, _ in found}
        result.missing = [i for i in ids if i not in found_ids]
        by_sink: dict[str, list[tuple[DeadLetter, OutboxRow]]] = {}
        for letter, row in sorted(found, key=lambda pair: pair[1].seq):
            by_sink.setdefault(letter.sink, []).append((letter, row))
        await asyncio.gather(*(self._replay_one(name, pairs, result) for name, pairs in by_sink.items()))
        return result

    async def _replay_one(self, name: str, pairs: list[tuple[DeadLetter, OutboxRow]], result: ReplayResult) -> None:
        sink = self.sinks.get(name)
        if sink is None:
            result.still_failing.extend(letter.id for letter, _ in pairs)
            result.errors[name] = f"sink {name!r} is not configured"
            return
        summary = SinkSummary()
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            letter_ids = [letter.id for letter, _ in chunk]
            try:
                outcome = await self._deliver(name, sink, [row for _, row in chunk], summary, lease=None)
            except _Stop:
                rest = [letter.id for letter, _ in pairs[start:]]
                result.still_failing.extend(rest)
                result.errors[name] = summary.last_error or "stopped"
                return
            if outcome.error is None:
                self.store.delete_dead_letters(letter_ids)
                result.delivered.extend(letter_ids)
            else:
                result.still_failing.extend(letter_ids)
                result.errors[name] = str(outcome.error)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, SinkError) and exc.retryable and not exc.gone


def _exception(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None
