"""The pull path's shortcuts (issue 19, round two) give what the plain code gave, byte for byte: details masked from
the context's cache, the plausibility rules looked up once, the batch digest hashed over joined rows."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from builtin_context import builtin_context

from tanpuhui.hub.audit import batch_digest
from tanpuhui.hub.plausibility import DayCounts, Plausibility, plausibility_settings
from tanpuhui.hub.store.base import DayCount
from tanpuhui.sdk import StreamContext

CST = timezone(timedelta(hours=8))
MOBILE = "13800138000"


def _ctx() -> StreamContext:
    return builtin_context("transit_card", "0.3.0", "transactions")


def _metro(ctx: StreamContext, txn: str, details: dict[str, Any]) -> dict[str, Any]:
    return ctx.record(
        raw={"txn_id": txn},
        partner_record_id=txn,
        subject=ctx.subject("card", "9900355694391974"),
        scenario="metro",
        start=datetime(2024, 11, 5, 8, 1, tzinfo=CST),
        end=datetime(2024, 11, 5, 8, 31, tzinfo=CST),
        region="340100",
        activity=12.4,
        unit="pkm",
        methodology="tph.transit.metro",
        details=details,
    )


def test_details_are_masked_alike_whether_the_text_is_cached_or_not() -> None:
    details = {
        "origin_stop": "M1-03",
        "destination_stop": f"call {MOBILE}",
        "transfers": 1,
        "accessible": True,
        "line_in": "M1",
        "note": None,
    }
    ctx = _ctx()
    first = _metro(ctx, "HF0001", details)  # every text new to the context's cache
    second = _metro(ctx, "HF0002", details)  # every text remembered
    expected = {**details, "destination_stop": "call 138****8000"}
    for record in (first, second):
        assert record["activity"]["details"] == expected
        assert list(record["activity"]["details"]) == list(details)  # the partner's order, as JSON writes it
        assert record["activity"]["details"] is not details
    assert orjson.dumps(first["activity"]) == orjson.dumps(second["activity"])


def test_a_record_built_without_earlier_keys_carries_no_alias_fingerprints() -> None:
    record = _metro(_ctx(), "HF0003", {"line_in": "M1"})
    assert record.aliases == ()  # type: ignore[attr-defined]


def test_plausibility_findings_follow_the_configured_rules_after_the_lookup_is_prepared() -> None:
    settings = plausibility_settings(
        {
            "rules": {
                "metro_speed": {"limit": 20, "action": "flag"},
                "transit_trips_per_day": {"limit": 2, "action": "hold"},
            }
        },
        "hub.toml",
    )
    rules = Plausibility(settings)
    ctx = _ctx()
    state = DayCounts((), [], ())  # a page's day counts, nothing committed before it
    findings = [rules.check(_metro(ctx, f"HF01{i}", {}), state) for i in range(3)]
    # 12.4 pkm in 30 min is 24.8 km/h: above 20, flagged on every trip; the third trip of the day is held
    assert [[(f.rule, f.action) for f in found] for found in findings] == [
        [("metro_speed", "flag")],
        [("metro_speed", "flag")],
        [("metro_speed", "flag"), ("transit_trips_per_day", "hold")],
    ]
    # the same record again keeps its place in the day's count
    again = rules.check(_metro(ctx, "HF010", {}), state)
    assert [(f.rule, f.action) for f in again] == [("metro_speed", "flag")]


def _trip(ctx: StreamContext, txn: str, card: int, day: int, minute: int, scenario: str) -> dict[str, Any]:
    start = datetime(2024, 11, day, 7, 0, tzinfo=CST) + timedelta(minutes=minute)
    return ctx.record(
        raw={"txn_id": txn},
        partner_record_id=txn,
        subject=ctx.subject("card", f"99003556943919{card:02d}"),
        scenario=scenario,
        start=start,
        end=start + timedelta(minutes=20),
        region="340100",
        activity=6.0,
        unit="pkm",
        methodology=f"tph.transit.{scenario}",
    )


class _PlainDayCounts:
    """The day counts as first written: each place the highest of the subject's day plus one, every record counted
    kept per key until its page commits (the reference the shortcuts are checked against)."""

    def __init__(self, store: list[DayCount], uncommitted: dict[tuple[str, str, str], dict[str, int]]) -> None:
        self.seen: dict[tuple[str, str, str], dict[str, int]] = {}
        for c in store:
            self.seen.setdefault((c.rule, c.day, c.subject), {})[c.record_id] = c.n
        for key, places in uncommitted.items():
            self.seen.setdefault(key, {}).update(places)
        self.uncommitted = uncommitted
        self.added: list[DayCount] = []

    def check(self, doc: dict[str, Any], rules: list[tuple[str, float, str]]) -> list[tuple[str, str, str, str]]:
        found = []
        day, subject = doc["period"]["start"][:10], doc["subject"]["pseudonym"][:16]
        for name, limit, action in rules:
            places = self.seen.setdefault((name, day, subject), {})
            n = places.get(doc["record_id"])
            if n is None:
                n = places[doc["record_id"]] = max(places.values(), default=0) + 1
                self.uncommitted.setdefault((name, day, subject), {})[doc["record_id"]] = n
                self.added.append(DayCount(name, day, subject, doc["record_id"], n))
            if n > limit:
                message = f"record {n} of this person on {day}, above the limit of {limit:g} a day"
                found.append((name, action, message, "/subject"))
        return found

    def committed(self) -> None:
        for c in self.added:
            places = self.uncommitted[c.rule, c.day, c.subject]
            del places[c.record_id]
            if not places:
                del self.uncommitted[c.rule, c.day, c.subject]


def test_day_counts_worked_out_once_a_page_place_records_as_the_plain_count_does() -> None:
    # Two max_per_day rules on metro (one of them on bus too), records of three cards over two days, items sent
    # again, a store holding earlier places with a gap, and pages processed before the earlier ones commit.
    settings = plausibility_settings(
        {
            "rules": {
                "metro_speed": {"action": "off"},
                "metro_trip_length": {"action": "off"},
                "bus_trip_length": {"action": "off"},
                "transit_trips_per_day": {"limit": 4},
                "metro_per_day": {"kind": "max_per_day", "scenarios": ["metro"], "limit": 2, "action": "flag"},
            }
        },
        "hub.toml",
    )
    by_scenario = {
        "metro": [("transit_trips_per_day", 4.0, "hold"), ("metro_per_day", 2.0, "flag")],
        "bus": [("transit_trips_per_day", 4.0, "hold")],
    }
    ctx = _ctx()
    trips = [(f"T{i:03d}", i % 3, 5 + (i // 7) % 2, i, "metro" if i % 4 else "bus") for i in range(60)]
    docs = [_trip(ctx, *trip) for trip in trips]
    again = [_trip(ctx, *trip) for trip in trips[:10] + trips[22:26]]  # items sent again: the same record ids
    pages = [docs[0:20], docs[20:35] + again[5:10], docs[35:60] + again[:5] + again[10:]]
    first = docs[0]
    store = [
        DayCount("transit_trips_per_day", "2024-11-05", first["subject"]["pseudonym"][:16], "EARLIER1", 1),
        DayCount("transit_trips_per_day", "2024-11-05", first["subject"]["pseudonym"][:16], "EARLIER3", 3),
    ]
    plain_store = list(store)

    def read(keys: set[tuple[str, str, str]]) -> list[DayCount]:
        return [c for c in store if (c.rule, c.day, c.subject) in keys]

    rules = Plausibility(settings)
    uncommitted: dict[tuple[str, str, str], dict[str, int]] = {}
    fast, plain = [], []
    for page in pages:  # the second page is processed before the first commits, the third before the second
        counts = rules.counts(ctx, page, read)
        reference = _PlainDayCounts(plain_store, uncommitted)
        for doc, keys in zip(page, counts.doc_keys, strict=True):
            found = rules.check(doc, counts, keys)
            assert [(f.rule, f.action, f.message, f.pointer) for f in found] == reference.check(
                doc, by_scenario[doc["scenario"]]
            )
        assert counts.added == reference.added
        fast.append(counts)
        plain.append(reference)
        if len(fast) >= 2:
            store.extend(fast[-2].added)
            fast[-2].committed()
            plain_store.extend(plain[-2].added)
            plain[-2].committed()
    store.extend(fast[-1].added)
    fast[-1].committed()
    final = rules.counts(ctx, docs + again, read)  # every page committed: the places come from the store alone
    for doc, keys in zip(docs + again, final.doc_keys, strict=True):
        rules.check(doc, final, keys)
    assert final.added == []
    assert [d["record_id"] for d in again] == [d["record_id"] for d in docs[:10] + docs[22:26]]
    assert any(c.rule == "transit_trips_per_day" and c.n > 4 for c in store)  # some held, some not
    assert len(store) == 2 + 2 * 45 + 15  # every distinct record counted once a rule, the re-sent ones not again
    final.committed()
    store.clear()  # the days pruned: the committed pages count no more, on this context either
    pruned = rules.counts(ctx, docs[:3], read)
    for doc, keys in zip(docs[:3], pruned.doc_keys, strict=True):
        rules.check(doc, pruned, keys)
    assert [c.n for c in pruned.added] == [1] * 5
    # Without the page's keys (check() makes them) the places are the same.
    fresh = DayCounts((), [], ())
    expected = _PlainDayCounts([], {})
    for doc in docs + again:
        found = rules.check(doc, fresh)
        assert [(f.rule, f.action, f.message, f.pointer) for f in found] == expected.check(
            doc, by_scenario[doc["scenario"]]
        )


def test_the_batch_digest_is_the_sha256_of_the_rows_written_one_after_another() -> None:
    rows = [(f"01JC{i:022d}", orjson.dumps({"n": i, "pad": "x" * (i % 37)})) for i in range(700)]
    expected = hashlib.sha256(b"".join(rid.encode() + b"\0" + body + b"\n" for rid, body in rows)).hexdigest()
    assert batch_digest(iter(rows)) == expected  # 700 rows: past the 256-row chunks, with a partial one at the end
    assert (
        batch_digest(iter(rows[:256]))
        == hashlib.sha256(b"".join(rid.encode() + b"\0" + body + b"\n" for rid, body in rows[:256])).hexdigest()
    )
    assert batch_digest(()) == hashlib.sha256(b"").hexdigest()
