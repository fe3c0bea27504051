"""The store contract, continued: a stream's splits, the same on SQLite and PostgreSQL.

A partitionable pull stream keeps one checkpoint per part (``transactions_0of2`` ...), or one for the unsplit
stream. The store lists them for a base stream (any split, none of another stream or adapter), and forgets a
split's checkpoints with its lapsed leases and an audit entry in one transaction, refused (nothing written) while
a run holds one of their leases (an operator's pause on them, named by the caller, goes with them).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tanpuhui.hub.audit import AuditEvent, AuditLog
from tanpuhui.hub.store.base import Checkpoint, PageWrite, Store
from tanpuhui.hub.store.leases import LeaseHeld

from .records import trips

OLD = ["transactions_0of2", "transactions_1of2"]


def _commit(store: Store, stream: str, cursor: Any, adapter: str = "transit_card") -> None:
    store.commit_pages(
        [PageWrite(adapter, stream, trips(2, prefix=f"SPLIT-{adapter}-{stream}"), [], Checkpoint(cursor))]
    )


def _filled(store: Store) -> None:
    for i, stream in enumerate(OLD):
        _commit(store, stream, {"page": 7 + i, "segment": f"{i}/2"})
    _commit(store, "transactions", {"page": 31})
    _commit(store, "transactions_extra", {"page": 1})  # another stream whose name starts alike
    _commit(store, "trips", "t-9")
    _commit(store, "transactions_0of2", "other-adapter", adapter="state_grid")
    store.record_stream_error("transit_card", "transactions_0of3", "partner answered 503")  # no commit: no cursor


def _event() -> AuditEvent:
    return AuditEvent("cli.stream.repartition", "transit_card:transactions", {"parts": 3}, actor="cli@ops-host-7")


def test_split_checkpoints_are_those_of_the_base_stream_and_its_parts_in_any_split(store: Store) -> None:
    _filled(store)
    found = {s.stream: s for s in store.split_checkpoints("transit_card", "transactions")}
    assert sorted(found) == ["transactions", "transactions_0of2", "transactions_0of3", "transactions_1of2"]
    assert found["transactions_1of2"].cursor == {"page": 8, "segment": "1/2"}
    assert found["transactions_1of2"].last_success is not None
    assert found["transactions_0of3"].last_success is None and found["transactions_0of3"].cursor is None
    assert found["transactions_0of3"].last_error == "partner answered 503"
    assert store.split_checkpoints("transit_card", "refunds") == []


def test_dropping_a_split_removes_its_checkpoints_and_lapsed_leases_with_an_audit_entry(store: Store) -> None:
    _filled(store)
    assert store.acquire_lease("transit_card", OLD[0], "replica-gone:41:ab12", 0.05)
    time.sleep(0.2)  # its holder died: the lease lapsed
    assert isinstance(store, AuditLog)
    head = store.audit_head()
    store.drop_checkpoints("transit_card", [*OLD, "transactions"], _event())
    left = {(s.adapter, s.stream) for s in store.stream_status()}
    assert left == {
        ("transit_card", "transactions_extra"),
        ("transit_card", "trips"),
        ("transit_card", "transactions_0of3"),
        ("state_grid", "transactions_0of2"),
    }
    assert store.load_checkpoint("transit_card", OLD[1]) == Checkpoint()
    assert store.acquire_lease("transit_card", OLD[0], "replica-new:7:cd34", 30)  # its row is gone, free anyway
    assert head is not None
    [entry] = store.audit_entries(head[0])
    assert (entry.action, entry.subject, entry.actor, entry.details) == (
        "cli.stream.repartition",
        "transit_card:transactions",
        "cli@ops-host-7",
        {"parts": 3},
    )


def test_dropping_a_split_is_refused_while_a_run_holds_a_lease_and_nothing_is_written(store: Store) -> None:
    _filled(store)
    assert store.acquire_lease("transit_card", OLD[1], "replica-b:512:ef56", 60)
    assert isinstance(store, AuditLog)
    before = (store.stream_status(), store.audit_head())
    with pytest.raises(LeaseHeld, match="transit_card:transactions_1of2 \\(by replica-b:512:ef56"):
        store.drop_checkpoints("transit_card", OLD, _event())
    assert (store.stream_status(), store.audit_head()) == before
    assert [x.owner for x in store.leases()] == ["replica-b:512:ef56"]


def test_an_owner_named_lifting_is_removed_with_the_split(store: Store) -> None:
    _filled(store)
    assert store.acquire_lease("transit_card", OLD[0], "paused-by-operator", 3600)
    store.drop_checkpoints("transit_card", OLD, _event(), lifting=("paused-by-operator",))
    assert store.leases() == []
    assert store.split_checkpoints("transit_card", "transactions")[0].stream == "transactions"
