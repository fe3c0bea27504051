"""A demand-response result re-sent so that it credits nothing (at or above its baseline) withdraws the record credited
for it: a void downstream, the netting that depended on it undone; a result re-sent with bad data voids nothing.

On SQLite and PostgreSQL (the rules are the store's, written once; the hub is the same).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from store.pg import temporary_database, temporary_schema

from tanpuhui.hub.hub import Hub
from tanpuhui.hub.ledger import Ledger
from tanpuhui.hub.store.postgres import PostgresStore
from tanpuhui.sdk import recompute

from .conftest import HubFactory, dr_result, signed
from .test_no_double_credit import EF, SAME_EVENING, readings

RESENT = "the partner re-sent the item and it no longer credits anything"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with temporary_database() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, make_hub: HubFactory, tmp_path: Path) -> Iterator[Hub]:
    if request.param == "sqlite":
        yield make_hub(hub_options={"store": str(tmp_path / "hub.db")})
        return
    with temporary_schema(request.getfixturevalue("pg_database")) as dsn:
        PostgresStore(dsn, migrate=True).close()  # as `tanpuhui migrate` does before a hub starts
        yield make_hub(hub_options={"store": dsn})


def push(hub: Hub, *items: dict[str, Any]) -> Any:
    body = orjson.dumps(list(items))
    return hub.receive(
        "state_grid", "demand_response", signed(body, "msg_" + hashlib.sha256(body).hexdigest()[:24]), body
    ).page


def rows(hub: Hub) -> list[tuple[str, dict[str, Any]]]:
    """The outbox as a sink reads it (once per test: a PostgreSQL reader keeps its safe mark)."""
    return [(r.kind, orjson.loads(r.body)) for r in hub.store.read_outbox(0, 1000)]


def current(found: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    ledger = Ledger()
    for kind, doc in found:
        ledger.apply(kind, doc)
    return {doc["source"]["partner_record_id"]: doc for doc in ledger.records.values()}


def test_a_result_re_sent_at_its_baseline_voids_its_record_and_credits_again_when_re_sent_below(hub: Hub) -> None:
    push(hub, dr_result(1), dr_result(2))
    at_baseline = push(hub, dr_result(1, actual_kwh=1.86))
    assert (at_baseline.valid_items, at_baseline.records, at_baseline.quarantined) == (1, 0, 0)
    push(hub, dr_result(1, actual_kwh=1.86, baseline_method="re-settled"))  # still nothing credited: voided already
    push(hub, dr_result(3))  # a page without results 1 and 2 withdraws neither
    push(hub, dr_result(1, actual_kwh=1.0))  # the partner settles it below the baseline again
    found = rows(hub)
    assert [kind for kind, _ in found] == ["created", "created", "voided", "created", "corrected"]
    (_, first), _, (_, void), _, (_, again) = found
    assert void["voids"] == first["record_id"] and void["reason"] == RESENT
    assert void["source"] == {
        "adapter": "state_grid",
        "stream": "demand_response",
        "partner_record_id": first["source"]["partner_record_id"],
    }
    assert again["supersedes"] == first["record_id"]
    held = current(found)
    assert sorted(held) == ["DR2024110801-000001", "DR2024110801-000002", "DR2024110801-000003"]
    assert held["DR2024110801-000001"]["quantification"]["reduction_kgco2e"] == pytest.approx(0.86 * EF)


def test_a_result_re_sent_with_bad_data_is_quarantined_and_voids_nothing(hub: Hub) -> None:
    push(hub, dr_result(1))
    inverted = push(hub, dr_result(1, actual_kwh=1.86, window_end="2024-11-08T17:00:00+08:00"))
    missing = dr_result(1, actual_kwh=1.86)
    del missing["baseline_kwh"]
    invalid = push(hub, missing)
    assert (inverted.quarantined, invalid.quarantined) == (1, 1)  # bad data is not a withdrawal
    found = rows(hub)
    assert [kind for kind, _ in found] == ["created"]
    assert list(current(found)) == ["DR2024110801-000001"]


def test_a_result_re_sent_at_its_baseline_gives_the_peak_day_its_full_saving_back(hub: Hub) -> None:
    readings(hub)
    push(hub, dr_result(1, **SAME_EVENING))
    push(hub, dr_result(1, **SAME_EVENING, actual_kwh=1.86))
    found = rows(hub)
    assert [kind for kind, _ in found] == ["created", "created", "corrected", "voided", "corrected"]
    (day,) = current(found).values()
    q = day["quantification"]
    assert day["scenario"] == "peak_electricity_saving" and "deductions" not in q
    assert q["reduction_kgco2e"] == pytest.approx(1.0 * EF) == recompute(day)


def test_in_one_page_the_last_version_of_a_result_counts(hub: Hub) -> None:
    push(hub, dr_result(1))
    push(hub, dr_result(1, actual_kwh=1.86), dr_result(1, actual_kwh=1.0))  # nothing, then a credit: a correction
    found = rows(hub)
    assert [kind for kind, _ in found] == ["created", "corrected"]
    assert current(found)["DR2024110801-000001"]["quantification"]["reduction_kgco2e"] == pytest.approx(0.86 * EF)
