"""The run history on ``/metrics``: each stream's newest recorded run, read from the store at scrape time.

The same counters the console and the admin API show (``tanpuhui_last_run_*{adapter,stream}``), from the store the
replicas share, so every worker answers the same; the process-local pull counters stay in :mod:`.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .store.base import RunLog, RunRecord

__all__ = ["RunCollector"]

log = logging.getLogger("tanpuhui.metrics")

_COUNTERS = ("pages", "items", "inserted", "duplicates", "held", "quarantined", "quarantine_repeats")


class RunCollector(Collector):
    """Gauges of each stream's newest run (see the module docstring)."""

    def __init__(self, store: RunLog) -> None:
        self._store = store

    def describe(self) -> list[Metric]:
        return []  # collected on demand only

    def collect(self) -> Iterable[Metric]:
        try:
            runs: list[RunRecord] = self._store.latest_runs()
        except Exception:  # a scrape must not fail because the store is busy or closing
            log.warning("metrics: run history not readable", exc_info=True)
            return
        labels = ["adapter", "stream"]
        families = {
            name: GaugeMetricFamily(f"tanpuhui_last_run_{name}", f"The stream's newest run: {name}", labels=labels)
            for name in _COUNTERS
        }
        seconds = GaugeMetricFamily("tanpuhui_last_run_seconds", "The stream's newest run: duration", labels=labels)
        ok = GaugeMetricFamily("tanpuhui_last_run_ok", "1 when the newest finished run succeeded", labels=labels)
        started = GaugeMetricFamily(
            "tanpuhui_last_run_started_timestamp_seconds", "When the stream's newest run started", labels=labels
        )
        for run in runs:
            key = [run.adapter, run.stream]
            for name, family in families.items():
                family.add_metric(key, getattr(run, name))
            seconds.add_metric(key, run.seconds or 0.0)
            ok.add_metric(key, 1.0 if run.outcome == "ok" else 0.0)
            started.add_metric(key, datetime.fromisoformat(run.started_at).timestamp())
        yield from families.values()
        yield seconds
        yield ok
        yield started
