"""Prometheus metrics of the sidecar (``GET /metrics``, text exposition format).

Counted as things happen (thread-safe, a few microseconds each):

==========================================================  =========================================================
``tanpuhui_records_total{adapter,stream,outcome}``          outcome: inserted, duplicate, held (claimed by another
                                                            source), quarantined (items)
``tanpuhui_plausibility_total{adapter,stream,rule,action}``  records a plausibility rule fired on; action: hold,
                                                            flag, released
``tanpuhui_webhook_requests_total{adapter,stream,status}``  every webhook request by HTTP status
``tanpuhui_webhook_request_duration_seconds{adapter,stream}``  histogram, body read to answer
``tanpuhui_commit_group_size``                              webhook requests committed per transaction (histogram)
``tanpuhui_pulls_total{adapter,stream,result}``             result: ok, error, skipped (already running)
``tanpuhui_pull_duration_seconds{adapter,stream}``          histogram
``tanpuhui_delivered_records_total{sink}``                  records a sink accepted
``tanpuhui_dead_lettered_records_total{sink}``              records given up on (replayable)
``tanpuhui_delivery_duration_seconds{sink}``                histogram of one batch send (each attempt)
``tanpuhui_delivery_failures_total{sink}``                  failed send attempts
==========================================================  =========================================================

Read from the store and the partner clients at scrape time:

==========================================================  =========================================================
``tanpuhui_quarantine_open``                                open quarantine entries
``tanpuhui_dead_letters``                                   dead letters waiting for replay
``tanpuhui_outbox_backlog_records{sink}``                   committed records the sink has not had yet
``tanpuhui_outbox_oldest_age_seconds{sink}``                age of the oldest of them (0 when none)
``tanpuhui_partner_requests_total{adapter,status}``         partner API responses by status (PartnerClient.stats)
``tanpuhui_partner_retries_total{adapter}``                 partner requests retried
``tanpuhui_partner_token_fetches_total{adapter}``           OAuth2 tokens fetched
``tanpuhui_partner_request_duration_seconds{adapter}``      summary (count, sum) of partner request time
``tanpuhui_plugin_problems``                                plugins that failed to load or configure
==========================================================  =========================================================

Read from the forwarder's sink states at scrape time (this process's view: the process draining the sink):

==========================================================  =========================================================
``tanpuhui_sink_state{sink,state}``                         1 for the sink's current state (ok, retrying, stopped),
                                                            0 for the others
``tanpuhui_sink_outage_seconds{sink}``                      how long it has been retrying or stopped (0 when ok)
``tanpuhui_sink_failed_attempts{sink}``                     failed tries since it stopped delivering (0 when ok)
``tanpuhui_sink_recoveries_total{sink}``                    times delivery recovered after retrying or a stop
==========================================================  =========================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from tanpuhui.sdk import Adapter, ClientStats, OutboxRow, Sink, SinkError

from .drivers.pull import PullSummary
from .pipeline import PageResult, ProcessedPage
from .runtime import BoundStream
from .sink_state import SinkCondition, SinkState
from .store.base import Store
from .store.sink_log import StoredSinkState

__all__ = ["CONTENT_TYPE", "HubMetrics", "InstrumentedSink", "SinkStateCollector", "StateCollector", "partner_stats"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("tanpuhui.metrics")

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class HubMetrics:
    """The sidecar's metrics, in a registry of their own (several sidecars in one process do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records = Counter(
            "tanpuhui_records", "Records and items by outcome", ["adapter", "stream", "outcome"], registry=r
        )
        self.plausibility = Counter(
            "tanpuhui_plausibility",
            "Records a plausibility rule fired on, by rule and action (hold, flag, released)",
            ["adapter", "stream", "rule", "action"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "tanpuhui_webhook_requests", "Webhook requests by HTTP status", ["adapter", "stream", "status"], registry=r
        )
        self.webhook_seconds = Histogram(
            "tanpuhui_webhook_request_duration_seconds",
            "Webhook request handling time (body read to answer)",
            ["adapter", "stream"],
            buckets=_FAST,
            registry=r,
        )
        self.commit_group = Histogram(
            "tanpuhui_commit_group_size",
            "Webhook requests committed in one transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.pulls = Counter("tanpuhui_pulls", "Pull runs by result", ["adapter", "stream", "result"], registry=r)
        self.pull_seconds = Histogram(
            "tanpuhui_pull_duration_seconds", "Pull run time", ["adapter", "stream"], buckets=_SLOW, registry=r
        )
        self.delivered = Counter("tanpuhui_delivered_records", "Records a sink accepted", ["sink"], registry=r)
        self.dead_lettered = Counter(
            "tanpuhui_dead_lettered_records", "Records dead-lettered after failed delivery", ["sink"], registry=r
        )
        self.delivery_seconds = Histogram(
            "tanpuhui_delivery_duration_seconds", "Time to send one batch", ["sink"], buckets=_FAST, registry=r
        )
        self.delivery_failures = Counter(
            "tanpuhui_delivery_failures", "Failed batch send attempts", ["sink"], registry=r
        )

    def page(self, page: PageResult) -> None:
        """Count a committed page or webhook request."""
        a, s = page.adapter, page.stream
        for outcome, n in (
            ("inserted", page.inserted),
            ("duplicate", page.duplicates),
            ("held", page.held),
            ("quarantined", page.quarantined),
        ):
            if n:
                self.records.labels(a, s, outcome).inc(n)

    def page_processed(self, stream: BoundStream, items: Sequence[Any], page: ProcessedPage) -> None:
        """Count the plausibility rules that fired on a page, whichever way it came (pull, push, replay): the hub
        calls this for every page its pipeline processes (a :class:`~tanpuhui.hub.pipeline.PageObserver`)."""
        a, s = stream.key
        for (rule, action), n in page.result.plausibility.items():
            self.plausibility.labels(a, s, rule, action).inc(n)

    def pull(self, summary: PullSummary) -> None:
        """Count a finished pull run (its pages were counted as they committed)."""
        result = "error" if summary.error else "ok"
        self.pulls.labels(summary.adapter, summary.stream, result).inc()
        self.pull_seconds.labels(summary.adapter, summary.stream).observe(summary.seconds)

    def render(self) -> bytes:
        """The exposition text (runs the scrape-time collectors: call it off the event loop)."""
        return generate_latest(self.registry)


def partner_stats(adapter: Adapter) -> list[ClientStats]:
    """The stats of the partner clients an adapter made with :meth:`Adapter.partner_client`."""
    # The SDK keeps the clients it made for the adapter (to close them); it has no public accessor yet.
    clients: Sequence[object] = getattr(adapter, "_clients", ())
    return [stats for c in clients if isinstance(stats := getattr(c, "stats", None), ClientStats)]


class StateCollector(Collector):
    """Gauges and partner counters read at scrape time from the store and the adapters."""

    def __init__(
        self,
        store: Store,
        sinks: Callable[[], Iterable[str]],
        adapters: Callable[[], Mapping[str, Adapter]],
        problems: Callable[[], int],
    ) -> None:
        self._store = store
        self._sinks = sinks
        self._adapters = adapters
        self._problems = problems

    def describe(self) -> list[Metric]:
        return []  # collected on demand only; nothing to describe up front

    def collect(self) -> Iterable[Metric]:
        store = self._store
        try:
            counts = store.pending_counts()
            backlogs = [store.sink_backlog(name) for name in self._sinks()]
        except Exception:  # a scrape must not fail because the store is busy or closing
            log.warning("metrics: store not readable", exc_info=True)
            counts, backlogs = {}, []
        if counts:
            yield GaugeMetricFamily("tanpuhui_quarantine_open", "Open quarantine entries", counts["quarantine_open"])
            yield GaugeMetricFamily("tanpuhui_dead_letters", "Dead letters waiting for replay", counts["dead_letters"])
        depth = GaugeMetricFamily(
            "tanpuhui_outbox_backlog_records", "Committed records not yet delivered to the sink", labels=["sink"]
        )
        age = GaugeMetricFamily(
            "tanpuhui_outbox_oldest_age_seconds", "Age of the oldest record not yet delivered", labels=["sink"]
        )
        now = time.time()
        for b in backlogs:
            depth.add_metric([b.sink], b.depth)
            oldest = datetime.fromisoformat(b.oldest_created_at).timestamp() if b.oldest_created_at else now
            age.add_metric([b.sink], max(0.0, now - oldest))
        yield depth
        yield age
        requests = CounterMetricFamily(
            "tanpuhui_partner_requests", "Partner API responses by status", labels=["adapter", "status"]
        )
        retries = CounterMetricFamily("tanpuhui_partner_retries", "Partner requests retried", labels=["adapter"])
        tokens = CounterMetricFamily("tanpuhui_partner_token_fetches", "OAuth2 tokens fetched", labels=["adapter"])
        seconds = SummaryMetricFamily(
            "tanpuhui_partner_request_duration_seconds", "Partner request time", labels=["adapter"]
        )
        for name, adapter in sorted(self._adapters().items()):
            stats = partner_stats(adapter)
            if not stats:
                continue
            by_status: dict[int, int] = {}
            for st in stats:
                for status, n in st.by_status.items():
                    by_status[status] = by_status.get(status, 0) + n
            for status, n in sorted(by_status.items()):
                requests.add_metric([name, str(status)], n)
            retries.add_metric([name], sum(st.retries for st in stats))
            tokens.add_metric([name], sum(st.token_fetches for st in stats))
            seconds.add_metric([name], sum(st.requests for st in stats), sum(st.seconds for st in stats))
        yield requests
        yield retries
        yield tokens
        yield seconds
        yield GaugeMetricFamily(
            "tanpuhui_plugin_problems", "Plugins that failed to load or configure", self._problems()
        )


class SinkStateCollector(Collector):
    """The sinks' delivery states (:class:`~tanpuhui.hub.sink_state.SinkState`, by sink name) at scrape time."""

    def __init__(
        self, states: Mapping[str, SinkState], shared: Callable[[], Mapping[str, StoredSinkState]] | None = None
    ) -> None:
        self._states = states
        self._shared = shared
        """The states every replica wrote to the store: a sink retrying in another worker or replica shows here."""

    def describe(self) -> list[Metric]:
        return []  # collected on demand only; nothing to describe up front

    def collect(self) -> Iterable[Metric]:
        states = sorted(self._states.items())  # each state is replaced whole, so each one read is consistent
        if self._shared is not None:
            try:
                shared = self._shared()
            except Exception:  # a scrape must not fail because the store is busy or closing
                log.warning("metrics: shared sink states not readable", exc_info=True)
                shared = {}
            states = [
                (name, _elsewhere(state, shared[name]) if state.ok and name in shared else state)
                for name, state in states
            ]
        current = GaugeMetricFamily(
            "tanpuhui_sink_state", "Delivery state of the sink: 1 for the current one", labels=["sink", "state"]
        )
        outage = GaugeMetricFamily(
            "tanpuhui_sink_outage_seconds",
            "How long the sink has been retrying or stopped (0 when ok)",
            labels=["sink"],
        )
        failed = GaugeMetricFamily(
            "tanpuhui_sink_failed_attempts", "Failed tries since the sink stopped delivering", labels=["sink"]
        )
        recoveries = CounterMetricFamily(
            "tanpuhui_sink_recoveries", "Times delivery to the sink recovered after retrying or a stop", labels=["sink"]
        )
        for name, state in states:
            for condition in get_args(SinkCondition):
                current.add_metric([name, condition], 1.0 if state.state == condition else 0.0)
            outage.add_metric([name], state.seconds())
            failed.add_metric([name], state.attempts)
            recoveries.add_metric([name], state.recoveries)
        yield current
        yield outage
        yield failed
        yield recoveries


def _elsewhere(local: SinkState, stored: StoredSinkState) -> SinkState:
    """An ok state here, or the failing one another process wrote (recoveries stay this process's count)."""
    if stored.state == "ok":
        return local
    return replace(SinkState.from_stored(stored), recoveries=local.recoveries)


class InstrumentedSink(Sink):
    """Wraps a sink to time its sends and count what it accepted; everything else is the wrapped sink's."""

    kind = "instrumented"

    def __init__(self, inner: Sink, metrics: HubMetrics) -> None:
        super().__init__(inner.name, inner.settings)
        self.inner = inner
        self._seconds = metrics.delivery_seconds.labels(inner.name)
        self._delivered = metrics.delivered.labels(inner.name)
        self._failures = metrics.delivery_failures.labels(inner.name)

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        started = time.perf_counter()
        try:
            await self.inner.send(batch)
        except BaseException:
            self._failures.inc()
            raise
        finally:
            self._seconds.observe(time.perf_counter() - started)
        self._delivered.inc(len(batch))

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()


def sink_error_text(exc: BaseException) -> str:
    """A one-line description of a failed sink check."""
    return str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
