"""The current records, rebuilt from the stream of events the hub forwards: what a consumer keeps.

Three kinds of event (CloudEvents ``type``, or the outbox row's ``kind``):

- ``org.tanpuhui.reduction.v1`` (``created``): a new record; keep it under its ``record_id``;
- ``org.tanpuhui.reduction.corrected.v1`` (``corrected``): a record replacing the one its ``supersedes`` names;
  drop that one, keep this one;
- ``org.tanpuhui.reduction.voided.v1`` (``voided``): ``data.voids`` names a record that no longer counts; drop it.

A record superseded or voided stays gone even if its ``created`` event is delivered again later (a replay). The
consumer example (:mod:`tanpuhui.hub.consumer`) and ``tanpuhui report`` both fold events through :class:`Ledger`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["KIND_OF_TYPE", "Ledger"]

KIND_OF_TYPE = {
    "org.tanpuhui.reduction.v1": "created",
    "org.tanpuhui.reduction.corrected.v1": "corrected",
    "org.tanpuhui.reduction.voided.v1": "voided",
}


class Ledger:
    """Current records by id, with running kgCO2e totals by scenario."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.gone: set[str] = set()
        """Ids superseded or voided: never current again."""
        self.kg_by_scenario: dict[str, float] = {}
        self.count_by_scenario: dict[str, int] = {}
        self.applied = {"created": 0, "corrected": 0, "voided": 0}

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """Apply one CloudEvent (``type`` and ``data``); an unknown type is ignored."""
        kind = KIND_OF_TYPE.get(str(event.get("type", "")))
        data = event.get("data")
        if kind is not None and isinstance(data, dict):
            self.apply(kind, data, str(event.get("id", "")))

    def apply(self, kind: str, data: dict[str, Any], event_id: str = "") -> None:
        """Apply one event's ``data`` of ``kind`` (``created``, ``corrected`` or ``voided``); a record without a
        ``record_id`` is kept under the event's id."""
        if kind == "voided":
            self._drop(str(data.get("voids", "")))
        else:
            record_id = str(data.get("record_id") or event_id)
            if record_id in self.gone or not record_id:
                return
            if kind == "corrected":
                self._drop(str(data.get("supersedes", "")))
            self._drop(record_id, forget=False)
            self.records[record_id] = data
            scenario = str(data.get("scenario", "?"))
            self.kg_by_scenario[scenario] = self.kg_by_scenario.get(scenario, 0.0) + kg_of(data)
            self.count_by_scenario[scenario] = self.count_by_scenario.get(scenario, 0) + 1
        self.applied[kind] = self.applied.get(kind, 0) + 1

    def _drop(self, record_id: str, *, forget: bool = True) -> None:
        if forget and record_id:
            self.gone.add(record_id)
        old = self.records.pop(record_id, None)
        if old is not None:
            scenario = str(old.get("scenario", "?"))
            self.kg_by_scenario[scenario] = self.kg_by_scenario.get(scenario, 0.0) - kg_of(old)
            self.count_by_scenario[scenario] -= 1

    def total_kg(self) -> float:
        return round(sum(kg_of(r) for r in self.records.values()), 6)


def kg_of(record: Mapping[str, Any]) -> float:
    q = record.get("quantification")
    return float(q.get("reduction_kgco2e", 0.0)) if isinstance(q, Mapping) else 0.0
