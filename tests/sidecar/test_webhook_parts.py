"""A webhook batch bigger than a part is committed in parts (bounded memory), under one all-or-nothing receipt.

Every item is answered at its own index, every record committed once, the audit chain holds an entry per part;
a store failure between two parts leaves no receipt (the partner gets a 5xx and sends it again), and the request
sent again commits the rest without doubling what the first try committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tanpuhui.hub.audit import verify_log
from tanpuhui.hub.drivers.push import PART_ITEMS
from tanpuhui.hub.store.queries import AuditQuery

from .conftest import SidecarFactory, hub_config, ride

COUNT = PART_ITEMS * 2 + 321
BAD = [i for i in range(COUNT) if i % 500 == 7]  # an implausible ride: quarantined at normalize


def _items() -> list[dict[str, Any]]:
    return [ride(i, km=75.0 if i in BAD else 2.4) for i in range(COUNT)]


def test_a_big_batch_is_committed_in_parts_with_one_receipt_answering_every_item(
    start_sidecar: SidecarFactory, tmp_path: Path
) -> None:
    running = start_sidecar(hub_config(tmp_path))
    store = running.sidecar.hub.store
    answer = running.post_ride(_items(), "msg_big_batch_0001")
    assert answer.status_code == 200, answer.text
    doc = orjson.loads(answer.content)
    assert (doc["items"], doc["accepted"], doc["quarantined"]) == (COUNT, COUNT - len(BAD), len(BAD))
    assert [r["index"] for r in doc["results"] if r["status"] == "quarantined"] == BAD
    assert [r["index"] for r in doc["results"]] == list(range(COUNT))
    assert store.counts()["outbox"] == COUNT - len(BAD)
    assert store.counts()["quarantine_open"] == len(BAD)
    assert store.audit_count(AuditQuery(action="webhook.part")) == 2
    assert store.audit_count(AuditQuery(action="webhook.accept")) == 1
    check = verify_log(store, records=True)
    assert check.ok, check.problems

    again = running.post_ride(_items(), "msg_big_batch_0001")  # a repeat: the same answer, nothing new
    assert again.status_code == 200 and again.content == answer.content
    assert store.counts()["outbox"] == COUNT - len(BAD)


def test_a_failure_between_parts_leaves_no_receipt_and_the_retry_commits_the_rest_once(
    start_sidecar: SidecarFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_sidecar(hub_config(tmp_path))
    store = running.sidecar.hub.store
    commit = store.commit_pages
    calls = []

    def second_part_fails(pages: Any) -> Any:
        calls.append(len(pages))
        if len(calls) == 2:
            raise OSError("disk full (test)")
        return commit(pages)

    monkeypatch.setattr(store, "commit_pages", second_part_fails)
    failed = running.post_ride(_items(), "msg_big_batch_0002")
    assert failed.status_code >= 500
    assert store.receipt_get("bike_share", "rides", "msg_big_batch_0002") is None
    first_part = store.counts()["outbox"]
    assert 0 < first_part < COUNT - len(BAD)

    monkeypatch.setattr(store, "commit_pages", commit)
    retried = running.post_ride(_items(), "msg_big_batch_0002")
    assert retried.status_code == 200, retried.text
    doc = orjson.loads(retried.content)
    assert (doc["items"], doc["quarantined"]) == (COUNT, len(BAD))
    assert store.counts()["outbox"] == COUNT - len(BAD)  # the first try's records are duplicates now
    assert store.counts()["quarantine_open"] == len(BAD)  # its quarantined items repeats of their entries
    assert verify_log(store, records=True).ok
