"""The reconciliation statement (``tanpuhui report``): totals per adapter, scenario and region for a period.

The statement folds the outbox in ``seq`` order exactly as a consumer folds the events it receives
(:class:`~tanpuhui.hub.ledger.Ledger`: a correction replaces the record it supersedes, a void removes one), so its
totals are the sum of the current records a consumer holds whose activity falls in the period. A record belongs
to the day (``2024-11-05``) or month (``2024-11``) its ``period.start`` falls in, in the statement's time zone
(UTC+8 by default). ``through_seq`` says how far the outbox was read: everything, or what a sink has been handed
(``--sink``). ``records_sha256`` digests the current records (id and kgCO2e, sorted by id), so a consumer can
check it holds exactly the same set. docs/verification.md ("Reconciliation report") shows the statement.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson

from tanpuhui.sdk import OutboxRow, TanpuhuiError

from .ledger import Ledger, kg_of
from .overlaps import utc_offset

__all__ = ["STATEMENT_TYPE", "Period", "build_statement", "parse_period", "period_of", "statement_totals"]

STATEMENT_TYPE = "org.tanpuhui.statement.v1"
"""The CloudEvents type a forwarded statement goes as."""

_PERIOD = re.compile(r"^([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?$")
_PAGE = 5000


@dataclass(frozen=True, slots=True)
class Period:
    """A day or a month in a time zone."""

    text: str
    first: date
    last: date
    tz: timezone
    offset: str

    def contains(self, day: date) -> bool:
        return self.first <= day <= self.last

    def bounds(self) -> tuple[str, str]:
        start = datetime.combine(self.first, datetime.min.time(), self.tz)
        end = datetime.combine(self.last + timedelta(days=1), datetime.min.time(), self.tz)
        return start.isoformat(), end.isoformat()


class PeriodError(TanpuhuiError, ValueError):
    """A period or time zone that cannot be read."""


def parse_period(text: str, offset: str = "+08:00") -> Period:
    """``2024-11`` (a month) or ``2024-11-05`` (a day) in the UTC ``offset``."""
    match = _PERIOD.match(text.strip())
    tz = utc_offset(offset)
    if tz is None:
        raise PeriodError(f"--timezone {offset!r}: expected a UTC offset like +08:00")
    if match is None:
        raise PeriodError(f"--period {text!r}: expected a month (2024-11) or a day (2024-11-05)")
    year, month, day = match.groups()
    try:
        if day is not None:
            first = last = date(int(year), int(month), int(day))
        else:
            first = date(int(year), int(month), 1)
            last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    except ValueError as exc:
        raise PeriodError(f"--period {text!r}: {exc}") from None
    return Period(text.strip(), first, last, tz, offset)


def period_of(record: Mapping[str, Any], tz: timezone) -> date | None:
    """The day a record's activity starts, in ``tz`` (None when it has no readable period)."""
    try:
        return datetime.fromisoformat(record["period"]["start"]).astimezone(tz).date()
    except (KeyError, TypeError, ValueError):
        return None


def outbox_rows(store: Any, through_seq: int) -> Iterator[OutboxRow]:
    """The outbox in ``seq`` order up to ``through_seq``."""
    after = 0
    while after < through_seq:
        rows = store.read_outbox(after, _PAGE)
        for row in rows:
            if row.seq > through_seq:
                return
            yield row
        if len(rows) < _PAGE:
            return
        after = rows[-1].seq


def build_statement(
    store: Any, period: Period, *, sink: str | None = None, generated_at: str | None = None
) -> dict[str, Any]:
    """The statement for ``period`` (see the module docstring); ``sink``: only what that sink has been handed."""
    through = store.sink_position(sink) if sink else store.outbox_max_seq()
    ledger = Ledger()
    origin: dict[str, tuple[str, str]] = {}  # record id -> (adapter, its day in the period or "")
    events = {"created": 0, "corrected": 0, "voided": 0}
    for row in outbox_rows(store, through):
        doc = orjson.loads(row.body)
        if row.kind == "voided":
            touched = origin.get(str(doc.get("voids", "")), ("", ""))[1]
        else:
            day = period_of(doc, period.tz)
            touched = day.isoformat() if day is not None and period.contains(day) else ""
            origin[row.record_id] = (row.adapter, touched)
        if touched:
            events[row.kind] = events.get(row.kind, 0) + 1
        ledger.apply(row.kind, doc, row.record_id)
    current = [
        (origin.get(rid, ("?", ""))[0], doc) for rid, doc in ledger.records.items() if origin.get(rid, ("", ""))[1]
    ]
    start, end = period.bounds()
    return {
        "type": STATEMENT_TYPE,
        "period": period.text,
        "timezone": period.offset,
        "from": start,
        "to": end,
        "through_seq": through,
        "sink": sink,
        "generated_at": generated_at or datetime.now(period.tz).isoformat(timespec="seconds"),
        **statement_totals(current),
        "events": events,
    }


def statement_totals(records: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Totals of ``(adapter, record)`` pairs: overall, per adapter, scenario and region, and per combination."""
    by: dict[str, dict[str, list[float]]] = {"adapter": {}, "scenario": {}, "region": {}}
    rows: dict[tuple[str, str, str], list[float]] = {}
    digest_rows = []
    total = 0.0
    for adapter, record in records:
        kg = kg_of(record)
        total += kg
        key = (adapter, str(record.get("scenario", "?")), str(record.get("region", "?")))
        for name, value in zip(("adapter", "scenario", "region"), key, strict=True):
            cell = by[name].setdefault(value, [0, 0.0])
            cell[0] += 1
            cell[1] += kg
        cell = rows.setdefault(key, [0, 0.0])
        cell[0] += 1
        cell[1] += kg
        digest_rows.append(f"{record.get('record_id', '')}:{round(kg, 6)!r}")
    digest = hashlib.sha256("\n".join(sorted(digest_rows)).encode()).hexdigest()

    def cells(table: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
        return {k: {"records": int(v[0]), "kgco2e": round(v[1], 6)} for k, v in sorted(table.items())}

    return {
        "totals": {"records": len(records), "kgco2e": round(total, 6)},
        "by_adapter": cells(by["adapter"]),
        "by_scenario": cells(by["scenario"]),
        "by_region": cells(by["region"]),
        "rows": [
            {"adapter": a, "scenario": s, "region": r, "records": int(v[0]), "kgco2e": round(v[1], 6)}
            for (a, s, r), v in sorted(rows.items())
        ],
        "records_sha256": digest,
    }
