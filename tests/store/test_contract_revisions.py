"""The store contract, continued: corrections, voids, overlap rules, the statement and the evidence pack, the same
on SQLite and PostgreSQL (the rules are written once over each dialect's SQL)."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from tanpuhui.hub.audit import verify_log
from tanpuhui.hub.evidence import evidence_pack
from tanpuhui.hub.ledger import Ledger
from tanpuhui.hub.reconcile import build_statement, parse_period
from tanpuhui.hub.store.base import NewRecord, NewVoid, OverlapKey, PageWrite
from tanpuhui.sdk import make_record_id, recompute

from .conftest import Backend
from .records import CST, MORNING, pseudonym

EF = 0.6782
HOUSEHOLD = pseudonym("household-0042")


def reading(
    partner_id: str,
    *,
    stream: str = "readings",
    scenario: str = "peak_electricity_saving",
    activity: float = 3.0,
    baseline: float = 4.0,
    region: str = "340104",
    role: str = "",
    subjects: tuple[str, ...] = (HOUSEHOLD,),
) -> NewRecord:
    """A State Grid record as the pipeline hands it over (partner id, raw hash, overlap key of the default rule);
    ``subjects``: the household's pseudonym under the current key, then those under earlier keys still configured
    (an overlap key each)."""
    record_id = make_record_id(MORNING, "state_grid", stream, partner_id)
    raw = hashlib.sha256(f"{partner_id}:{activity}:{baseline}".encode()).hexdigest()
    doc: dict[str, Any] = {
        "record_id": record_id,
        "schema_version": "1.0",
        "source": {"adapter": "state_grid", "stream": stream, "partner_record_id": partner_id, "raw_sha256": raw},
        "subject": {"kind": "person", "pseudonym": subjects[0], "key_version": "v1"},
        "scenario": scenario,
        "period": {"start": MORNING.isoformat(), "end": MORNING.isoformat()},
        "region": region,
        "activity": {"quantity": activity, "unit": "kWh"},
        "quantification": {
            "methodology_id": "tph.electricity.peak-saving",
            "methodology_version": "1.0.0",
            "formula": "max(baseline - activity, 0) * ef_grid",
            "factors": [{"name": "ef_grid", "value": EF, "unit": "kgCO2e/kWh", "source": "MEE 2022", "default": False}],
            "baseline": {"quantity": baseline, "unit": "kWh", "method": "trailing mean"},
            "reduction_kgco2e": round((baseline - activity) * EF, 6),
        },
        "fingerprint": f"202405010010:{scenario}:{HOUSEHOLD[:32]}",
    }
    doc["quantification"]["reduction_kgco2e"] = recompute(doc)
    keys: tuple[OverlapKey, ...] = ()
    if role:
        saving = round(baseline - activity, 6)
        day = MORNING.astimezone(CST).date()
        keys = tuple(OverlapKey("demand_response_in_peak_saving", f"{p}:{day}", role, "net", saving) for p in subjects)
    return NewRecord(
        record_id,
        doc["fingerprint"],
        scenario,
        doc["quantification"]["reduction_kgco2e"],
        orjson.dumps(doc),
        "",
        partner_id,
        stream,
        raw,
        keys,
    )


def commit(store: Any, stream: str, records: list[NewRecord], voids: tuple[NewVoid, ...] = ()) -> Any:
    (result,) = store.commit_pages([PageWrite("state_grid", stream, records, [], None, voids=voids)])
    return result


def outbox(store: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(r.kind, orjson.loads(r.body)) for r in store.read_outbox(0, 100)]


def test_a_changed_item_is_a_correction_and_a_withdrawn_one_a_void(store: Any) -> None:
    commit(store, "readings", [reading("SG-1"), reading("SG-2")])
    assert commit(store, "readings", [reading("SG-1")]).duplicates == 1  # the same item: nothing new
    commit(store, "readings", [reading("SG-1", activity=3.5)], (NewVoid("SG-2", "readings", "withdrawn"),))
    (k1, one), (_, two), (k3, fixed), (k4, void) = outbox(store)
    assert (k1, k3, k4) == ("created", "corrected", "voided")
    assert fixed["supersedes"] == one["record_id"] and fixed["quantification"]["reduction_kgco2e"] == 0.3391
    assert (void["voids"], void["reason"]) == (two["record_id"], "withdrawn")
    assert verify_log(store, records=True).ok  # every row, revisions included, is in an audit entry's digest

    statement = build_statement(store, parse_period("2024-05"), generated_at="2024-06-01T00:00:00+08:00")
    assert statement["totals"] == {"records": 1, "kgco2e": 0.3391}
    assert statement["events"] == {"created": 2, "corrected": 1, "voided": 1}
    assert build_statement(store, parse_period("2024-05-02"))["totals"]["records"] == 0

    pack = evidence_pack(store, fixed["record_id"], lambda *_: None)
    assert pack["supersedes"] == one["record_id"] and pack["computation"]["matches"]
    assert pack["audit"]["batch"]["matches_entry"] and pack["audit"]["log_verifies"]
    assert evidence_pack(store, one["record_id"], lambda *_: None)["superseded_by"] == fixed["record_id"]


def test_one_partner_id_in_two_streams_is_two_items_each_revised_on_its_own(store: Any) -> None:
    a, b = reading("SG-7"), reading("SG-7", stream="demand_response", scenario="demand_response")
    commit(store, "readings", [a, b._replace(head_stream="demand_response")])
    again = [a, b._replace(head_stream="demand_response")]
    assert commit(store, "readings", again).duplicates == 2  # both heads found, each under its own stream
    changed = reading("SG-7", activity=3.5)
    result = commit(store, "readings", [changed, b._replace(head_stream="demand_response")])
    assert (result.inserted, result.duplicates) == (1, 1)
    kinds = [(kind, doc["source"]["stream"]) for kind, doc in outbox(store)]
    assert kinds == [("created", "readings"), ("created", "demand_response"), ("corrected", "readings")]


@pytest.mark.parametrize("order", ["event first", "peak day first"])
def test_the_overlap_rule_credits_the_same_kwh_once_in_either_order(store: Any, order: str) -> None:
    day = reading("SG-20240501", role="give")  # 1.0 kWh saved over the day
    event = reading(
        "DR-1", stream="demand_response", scenario="demand_response", activity=1.12, baseline=1.86, role="keep"
    )
    pages = [("demand_response", event), ("readings", day)]
    for stream, record in pages if order == "event first" else pages[::-1]:
        commit(store, stream, [record])
    ledger = Ledger()
    for kind, doc in outbox(store):
        ledger.apply(kind, doc)
    current = ledger.records
    netted = next(d for d in current.values() if d["scenario"] == "peak_electricity_saving")
    assert netted["quantification"]["deductions"][0]["record_id"] == event.record_id
    assert netted["quantification"]["reduction_kgco2e"] == round(0.26 * EF, 6) == recompute(netted)
    assert sorted(d["scenario"] for d in current.values()) == ["demand_response", "peak_electricity_saving"]
    assert verify_log(store, records=True).ok


@pytest.mark.parametrize("order", ["day between the events", "day last"])
def test_the_overlap_rule_pairs_records_on_any_pseudonym_of_the_subject_across_two_key_rotations(
    store: Any, order: str
) -> None:
    # v1 -> v2 (v1 kept) -> v3 (v2 kept, v1 dropped): the morning event credited under v1, the day under v2 (v1 its
    # alias), the evening event under v3 (v2 its alias). The day pairs with each event on another pseudonym.
    v1, v2, v3 = (pseudonym(f"household-0042@{v}") for v in ("v1", "v2", "v3"))
    dr = {"stream": "demand_response", "scenario": "demand_response", "role": "keep"}
    morning = reading("DR-1", activity=1.2, baseline=1.5, subjects=(v1,), **dr)
    evening = reading("DR-2", activity=1.46, baseline=1.86, subjects=(v3, v2), **dr)
    day = reading("SG-20240501", role="give", subjects=(v2, v1))  # 1.0 kWh saved over the day
    pages = [("demand_response", morning), ("readings", day), ("demand_response", evening)]
    for stream, record in pages if order == "day between the events" else [pages[0], pages[2], pages[1]]:
        commit(store, stream, [record])
    ledger = Ledger()
    for kind, doc in outbox(store):
        ledger.apply(kind, doc)
    netted = next(d for d in ledger.records.values() if d["scenario"] == "peak_electricity_saving")
    q = netted["quantification"]
    assert sorted(d["record_id"] for d in q["deductions"]) == sorted([morning.record_id, evening.record_id])
    assert q["reduction_kgco2e"] == round(0.3 * EF, 6) == recompute(netted)  # 1.0 - 0.3 - 0.4 kWh
    corrections = 1 if order == "day between the events" else 0  # netted by both at once: never by one of them only
    assert [kind for kind, _ in outbox(store)].count("corrected") == corrections
    assert verify_log(store, records=True).ok


def test_a_page_that_revises_the_outbox_gives_the_in_memory_feed_no_seq_values(store: Any) -> None:
    # `tanpuhui run` forwards committed pages from memory (tanpuhui.hub.feed) only when the store says which seq
    # values the page's records took; a correction's kind is set after its insert and a void is a row of its own,
    # so such a page must be read back from the outbox, never handed on as plain creations.
    assert commit(store, "readings", [reading("SG-7")]).seq_runs  # plain creations: the feed may take them
    corrected = commit(store, "readings", [reading("SG-7", activity=3.5)])
    assert corrected.inserted == 1 and corrected.seq_runs == ()
    voided = commit(store, "readings", [reading("SG-8")], (NewVoid("SG-7", "readings", "withdrawn"),))
    assert voided.inserted == 1 and voided.seq_runs == ()
    assert [kind for kind, _ in outbox(store)] == ["created", "corrected", "created", "voided"]


def test_withdrawing_the_event_gives_the_day_its_full_saving_back(store: Any) -> None:
    event = reading(
        "DR-1", stream="demand_response", scenario="demand_response", activity=1.12, baseline=1.86, role="keep"
    )
    commit(store, "demand_response", [event])
    commit(store, "readings", [reading("SG-20240501", role="give")])
    commit(store, "demand_response", [], (NewVoid("DR-1", "demand_response", "event result withdrawn"),))
    kinds = [kind for kind, _ in outbox(store)]
    assert kinds == ["created", "created", "voided", "corrected"]
    ledger = Ledger()
    for kind, doc in outbox(store):
        ledger.apply(kind, doc)
    (day,) = ledger.records.values()
    q = day["quantification"]
    assert "deductions" not in q and q["formula"] == "max(baseline - activity, 0) * ef_grid"
    assert q["reduction_kgco2e"] == round(1.0 * EF, 6) == recompute(day)
    assert verify_log(store, records=True).ok


RESENT = "the partner re-sent the item and it no longer credits anything"
RESENT_RAW = hashlib.sha256(b"SG-1 re-sent at its baseline").hexdigest()


def test_a_void_of_a_re_sent_item_keeps_its_raw_hash_so_it_can_credit_again_later(store: Any) -> None:
    first = reading("SG-1")
    commit(store, "readings", [first])
    nothing = NewVoid("SG-1", "readings", RESENT, RESENT_RAW)
    commit(store, "readings", [], (nothing,))
    commit(store, "readings", [], (nothing,))  # the same item re-sent again: nothing more
    # The partner sends the item crediting again (its first version, say): a correction of the voided record, not
    # a duplicate of it, so the consumer holds a record again.
    again = commit(store, "readings", [reading("SG-1")])
    assert again.inserted == 1
    rows = outbox(store)
    assert [kind for kind, _ in rows] == ["created", "voided", "corrected"]
    (_, void), (_, revived) = rows[1:]
    assert (void["voids"], void["reason"]) == (first.record_id, RESENT)
    assert revived["supersedes"] == first.record_id
    ledger = Ledger()
    for kind, doc in rows:
        ledger.apply(kind, doc)
    assert list(ledger.records) == [revived["record_id"]]
    assert verify_log(store, records=True).ok


def test_a_voided_record_no_longer_claims_its_behaviour_against_other_sources(store: Any) -> None:
    def other_source(partner_id: str) -> Any:
        (result,) = store.commit_pages([PageWrite("provincial_bigdata", "peak_usage", [reading(partner_id)], [], None)])
        return result

    commit(store, "readings", [reading("SG-1")])
    assert other_source("PB-1").held == 1  # the same behaviour, claimed by state_grid first: a double claim
    commit(store, "readings", [], (NewVoid("SG-1", "readings", "withdrawn"),))
    credited = other_source("PB-2")
    assert (credited.inserted, credited.held) == (1, 0)  # the void released the claim in its commit
    assert other_source("PB-1").inserted == 1  # the record held before the void: credited when sent again
    assert [kind for kind, _ in outbox(store)] == ["created", "voided", "created", "created"]


@pytest.mark.parametrize("page", ["one item", "a bulk page"])
def test_two_replicas_correcting_one_record_at_the_same_moment_write_one_correction_then_the_next(
    backend: Backend, page: str
) -> None:
    replicas = [backend.open(), backend.open()]
    original = reading("SG-1")
    commit(replicas[0], "readings", [original])
    for replica in replicas:
        # Widen the race: each writer dawdles between reading the item's head and writing its revision. Without
        # one writer per partner item, both read the original as the head and both write a correction of it.
        heads = replica.revisions._heads

        def slow_heads(*args: Any, _heads: Any = heads) -> Any:
            found = _heads(*args)
            time.sleep(0.4)
            return found

        replica.revisions._heads = slow_heads
    # The partner's two new versions: other figures, and one also moves the reading to another time window (so the
    # two commits share no behaviour-claim lock: only the partner item is common to them).
    later = f"202405011200:peak_electricity_saving:{HOUSEHOLD[:32]}"
    versions = [reading("SG-1", activity=3.5), reading("SG-1", activity=3.2)._replace(fingerprint=later)]
    # A bulk page (past the per-item lock keys, PostgreSQL locks its items' buckets) still meets the other writer.
    others = [reading(f"SG-BULK-{i:03d}") for i in range(100)] if page == "a bulk page" else []
    barrier = threading.Barrier(2)

    def correct(i: int) -> Any:
        barrier.wait()
        return commit(replicas[i], "readings", [*others, versions[i]] if i == 0 else [versions[i]])

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(correct, range(2)))
    assert sorted(r.inserted for r in results) == sorted([1 + len(others), 1])
    rows = [(r.kind, orjson.loads(r.body)) for r in replicas[0].read_outbox(0, 1000)]
    corrections = [doc for kind, doc in rows if kind == "corrected"]
    assert len(corrections) == 2
    assert [c["supersedes"] for c in corrections].count(original.record_id) == 1  # one correction of the original
    first, second = corrections
    assert second["supersedes"] == first["record_id"]  # the other corrects that correction
    ledger = Ledger()
    for kind, doc in rows:
        ledger.apply(kind, doc)
    assert [r for r in ledger.records if r not in {o.record_id for o in others}] == [second["record_id"]]
    assert verify_log(replicas[0], records=True).ok


def test_an_event_withdrawn_while_another_replica_credits_its_day_leaves_the_day_its_full_saving(
    backend: Backend,
) -> None:
    replicas = [backend.open(), backend.open()]
    event = reading(
        "DR-1", stream="demand_response", scenario="demand_response", activity=1.12, baseline=1.86, role="keep"
    )
    commit(replicas[0], "demand_response", [event])
    # Widen the race: the replica crediting the day dawdles between reading the day's event and writing its netted
    # record. Unless the withdrawal meets it on a lock, it nets the day against an event withdrawn meanwhile.
    overlap = replicas[1].revisions._overlap

    def slow_overlap(*args: Any) -> Any:
        found = overlap(*args)
        time.sleep(0.4)
        return found

    replicas[1].revisions._overlap = slow_overlap
    barrier = threading.Barrier(2)

    def withdraw() -> Any:
        barrier.wait()
        time.sleep(0.1)  # the day's page reads the event first
        return commit(replicas[0], "demand_response", [], (NewVoid("DR-1", "demand_response", "withdrawn"),))

    def credit_the_day() -> Any:
        barrier.wait()
        return commit(replicas[1], "readings", [reading("SG-20240501", role="give")])

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(withdraw), pool.submit(credit_the_day)]:
            done.result()
    ledger = Ledger()
    for kind, doc in outbox(replicas[0]):
        ledger.apply(kind, doc)
    (day,) = ledger.records.values()
    assert day["quantification"]["reduction_kgco2e"] == round(1.0 * EF, 6) == recompute(day)
    assert verify_log(replicas[0], records=True).ok


def test_a_page_of_thousands_of_partner_items_commits_within_the_servers_lock_table(store: Any) -> None:
    # PostgreSQL's shared lock table holds max_locks_per_transaction x max_connections locks (6,400 by default): a
    # page must not take one advisory lock per item.
    many = [reading(f"SG-{i:05d}")._replace(fingerprint=f"fp-{i}") for i in range(8000)]
    assert commit(store, "readings", many).inserted == 8000


@pytest.mark.parametrize(
    "page",
    [
        "new items, each once",  # the shortcut: every record as it came, a head each
        "one item twice, changed",  # the record-by-record rules: the second corrects the first
        "one item twice, unchanged",  # the second is a duplicate
        "an item on file",
    ],
)
def test_a_pages_revision_is_what_the_record_by_record_rules_give(store: Any, page: str) -> None:
    commit(store, "readings", [reading("SG-ON-FILE")])
    untracked = reading("SG-UNTRACKED")._replace(partner_record_id="", fingerprint="fp-untracked")
    other_stream = reading("SG-1", stream="demand_response", scenario="demand_response")
    records = [reading("SG-1"), untracked, other_stream._replace(head_stream="demand_response"), reading("SG-2")]
    if page == "one item twice, changed":
        records.append(reading("SG-1", activity=3.5))
    elif page == "one item twice, unchanged":
        records.append(reading("SG-2"))
    elif page == "an item on file":
        records.append(reading("SG-ON-FILE", activity=3.5))
    revisions = store.revisions
    with store.sql.write() as tx:
        got = revisions.before_insert(tx, "state_grid", "readings", records)
        tracked = {(r.head_stream or "readings", r.partner_record_id) for r in records if r.partner_record_id}
        want = revisions._revise(tx, "readings", records, revisions._heads(tx, "state_grid", tracked))
    assert got == want
    assert list(got.heads.items()) == list(want.heads.items())  # the heads are written in this order
