"""The audit log in the store: every accepted batch and action is in it, and `tanpuhui audit verify` catches edits.

Tampering is done the way an intruder with the database file would: with plain SQL on the SQLite file.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.adapters.yrd_scenarios.adapter import RecordsPushStream
from tanpuhui.adapters.yrd_scenarios.sandbox import BAD_KINDS as YRD_BAD_KINDS
from tanpuhui.adapters.yrd_scenarios.sandbox import WITHDRAWN_KINDS, Dataset, sandbox_recognition
from tanpuhui.hub.audit import GENESIS, AuditEvent, AuditLog, canonical_details, entry_hash, verify_log
from tanpuhui.hub.cli import main
from tanpuhui.hub.config import load_config
from tanpuhui.hub.demo import to_toml
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.store.base import NewRecord
from tanpuhui.sdk import HttpOptions, ItemRejected, StreamContext, WebhookSigner

from .conftest import KEYS, NO_BAD_ITEMS, SleepRecorder, run
from .sidecar import ADMIN_TOKEN, ITEMS, Running, signed

PUSH_SECRET = "whsec_" + base64.b64encode(b"tanpuhui-audit-test-yrd-push-key!").decode()
ENV = {"TEST_KEYS": KEYS, "TEST_PUSH_SECRET": PUSH_SECRET, "TEST_TRANSIT_SECRET": "unused"}


@pytest.fixture
def sandbox() -> Iterator[TransitSandbox]:
    with TransitSandbox(trips=600, seed=5, bad=NO_BAD_ITEMS) as s:
        yield s


@pytest.fixture
def config_path(tmp_path: Path, sandbox: TransitSandbox, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {**ENV, "TEST_TRANSIT_SECRET": sandbox.client_secret}.items():
        monkeypatch.setenv(key, value)
    document: dict[str, Any] = {
        "hub": {"store": "hub.db", "pseudonym_keys": {"env": "TEST_KEYS"}},
        "adapters": {
            "transit_card": {
                "base_url": sandbox.url,
                "client_id": sandbox.client_id,
                "client_secret": {"env": "TEST_TRANSIT_SECRET"},
                "page_size": 150,
            },
            "yrd_scenarios": {**sandbox_recognition(), "webhook_secrets": [{"env": "TEST_PUSH_SECRET"}]},
        },
    }
    path = tmp_path / "hub.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


def open_hub(config_path: Path) -> Hub:
    return Hub(load_config(config_path), http=HttpOptions(sleep=SleepRecorder()))


def pull(config_path: Path) -> None:
    hub = open_hub(config_path)

    async def body() -> None:
        try:
            (summary,) = await hub.pull("transit_card", "transactions")
            assert summary.error is None
        finally:
            await hub.aclose()

    run(body)


def sql(config_path: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(config_path.parent / "hub.db")
    try:
        with conn:
            return conn.execute(statement, args).fetchall()
    finally:
        conn.close()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def verify(config_path: Path, *extra: str) -> tuple[int, str]:
    return cli("audit", "verify", "--config", str(config_path), *extra)


def test_every_committed_page_is_in_the_log_with_the_digest_of_the_records_it_inserted(config_path: Path) -> None:
    pull(config_path)
    hub = open_hub(config_path)
    try:
        store = hub.store
        assert isinstance(store, AuditLog)
        entries = store.audit_entries(0, 10_000)
        result = verify_log(store, records=True)
        outbox = store.counts()["outbox"]
    finally:
        run(hub.aclose)
    pages = [e for e in entries if e.action == "page.commit"]
    assert pages and all(e.subject == "transit_card:transactions" and e.actor == "hub" for e in pages)
    assert sum(e.details["inserted"] for e in pages) == outbox == 600
    assert all("cursor_sha256" in e.details and "items" in e.details for e in pages)
    assert result.ok and result.entries == len(entries) and result.records_checked == outbox

    code, output = verify(config_path)
    assert code == 0 and f"audit log intact: {len(entries)} entries" in output
    assert f"head {entries[-1].seq}:{entries[-1].hash}" in output


def test_an_edited_entry_is_detected_and_named(config_path: Path) -> None:
    pull(config_path)
    sql(config_path, "UPDATE audit_log SET details = replace(details, '\"inserted\":', '\"inserted\":1') WHERE seq = 2")
    code, output = verify(config_path)
    assert code == 1
    assert "entry 2 (page.commit transit_card:transactions) was edited" in output


def test_a_deleted_entry_is_detected_and_named(config_path: Path) -> None:
    pull(config_path)
    sql(config_path, "DELETE FROM audit_log WHERE seq = 3")
    code, output = verify(config_path)
    assert code == 1 and "entry 3 is missing (deleted)" in output


def test_deleting_the_newest_entries_is_detected_and_stays_visible_after_new_appends(config_path: Path) -> None:
    pull(config_path)
    (last,) = sql(config_path, "SELECT max(seq) FROM audit_log")[0]
    sql(config_path, "DELETE FROM audit_log WHERE seq >= ?", last - 1)
    code, output = verify(config_path)
    assert code == 1 and f"entries {last - 1}-{last} are missing" in output

    pull(config_path)  # new entries chain from the recorded head, so the gap stays in the chain
    code, output = verify(config_path)
    assert code == 1 and f"entry {last - 1}-{last} is missing (deleted)" in output


def test_a_rewritten_log_passes_the_chain_but_not_an_anchor_kept_elsewhere(config_path: Path) -> None:
    pull(config_path)
    code, output = verify(config_path)
    anchor = output.split("head ")[1].split()[0]
    # The intruder halves every batch's count and recomputes the whole chain and the head consistently.
    rows = sql(config_path, "SELECT seq, at, actor, action, subject, details FROM audit_log ORDER BY seq")
    prev = GENESIS
    for seq, at, actor, action, subject, details in rows:
        doc = orjson.loads(details)
        if "inserted" in doc:
            doc["inserted"] //= 2
        text = canonical_details(doc)
        digest = entry_hash(prev, seq, at, actor, action, subject, text)
        sql(config_path, "UPDATE audit_log SET details=?, prev_hash=?, hash=? WHERE seq=?", text, prev, digest, seq)
        prev = digest
    sql(config_path, "UPDATE meta SET value=? WHERE key='audit_head'", f"{rows[-1][0]}:{prev}")

    assert verify(config_path)[0] == 0  # consistent: only something kept outside the database can tell
    code, output = verify(config_path, "--anchor", anchor)
    assert code == 1 and "does not match" in output and "rewritten" in output


def test_an_edited_or_deleted_outbox_row_is_caught_by_its_batch_digest(config_path: Path) -> None:
    pull(config_path)
    sql(config_path, "UPDATE outbox SET body = replace(body, 'reduction_kgco2e', 'reduction_kgCO2e') WHERE seq = 42")
    sql(config_path, "DELETE FROM outbox WHERE seq = 420")
    assert verify(config_path)[0] == 0  # the log itself is intact
    code, output = verify(config_path, "--records")
    assert code == 1
    assert output.count("were edited or deleted") == 2 and "found 0 of" not in output


def test_a_bad_anchor_is_a_usage_error() -> None:
    code, output = cli("audit", "verify", "--anchor", "12:zz")
    assert code == 2 and "SEQ:HASH" in output


def test_webhooks_replays_dead_letters_and_prunes_are_logged_in_one_intact_chain(config_path: Path) -> None:
    pushed = Dataset(40, 3, bad={k: 0 for k in YRD_BAD_KINDS}, withdrawn={k: 0 for k in WITHDRAWN_KINDS}).items
    signer = WebhookSigner(PUSH_SECRET)
    hub = open_hub(config_path)
    try:
        for n in range(2):
            body = orjson.dumps({"items": pushed[n * 20 : (n + 1) * 20]})
            headers = {**signer.headers(f"msg_audit_{n}", body), "content-type": "application/json"}
            outcome = hub.receive("yrd_scenarios", "records_push", headers, body)
            assert outcome.status == 200
        store = hub.store
        assert isinstance(store, AuditLog)
        rows = store.read_outbox(0, 5)
        store.advance_sink("platform", rows[-1].seq, dead=[(row, 8, "HTTP 503") for row in rows])
        letters = store.dead_letters()
        store.delete_dead_letters([d.id for d in letters])
        assert store.prune_receipts("9999-01-01") == 2
        store.audit_append([AuditEvent("admin.test", "ops", {"note": "operator action"}, actor="cli:ops")])
        entries = store.audit_entries(0, 1000)
        result = verify_log(store, records=True)
    finally:
        run(hub.aclose)
    actions = [e.action for e in entries]
    assert actions == [
        "webhook.accept",
        "webhook.accept",
        "deadletter.add",
        "deadletter.delete",
        "receipts.prune",
        "admin.test",
    ]
    accepted = entries[0]
    assert accepted.actor == "partner" and accepted.subject == "yrd_scenarios:records_push"
    assert accepted.details["webhook_id"] == "msg_audit_0" and accepted.details["inserted"] == 20
    assert entries[2].details == {"count": 5, "error": "HTTP 503", "first_seq": 1, "last_seq": 5}
    assert result.ok, result.problems


def test_a_quarantine_replay_is_logged_with_the_records_it_committed(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = Dataset(1, 3, bad={k: 0 for k in YRD_BAD_KINDS}, withdrawn={k: 0 for k in WITHDRAWN_KINDS}).items[0]

    def not_yet(self: RecordsPushStream, item: dict[str, Any], ctx: StreamContext) -> list[Any]:
        raise ItemRejected("the platform's methodology is not recognised yet", "/methodology_code")

    hub = open_hub(config_path)
    try:
        rt = hub.stream("yrd_scenarios", "records_push")
        with monkeypatch.context() as patched:
            patched.setattr(RecordsPushStream, "normalize", not_yet)
            hub.pulls.commit_page(rt, rt.context({}), [item], None)
        (entry,) = hub.store.quarantine_list()
        (replayed,) = run(lambda: hub.replay_quarantine([entry.id]))
        store = hub.store
        assert isinstance(store, AuditLog)
        entries = store.audit_entries(0, 100)
        intact = verify_log(store, records=True).ok
    finally:
        run(hub.aclose)
    assert replayed.status == "resolved" and intact
    assert [e.action for e in entries] == ["page.commit", "quarantine.replay", "quarantine.resolve"]
    assert entries[0].details["quarantine_ids"] == [entry.id, entry.id]
    assert entries[1].details["entry_id"] == entry.id and entries[1].details["inserted"] == 1
    assert "records_sha256" in entries[1].details
    assert entries[2].subject == f"quarantine:{entry.id}" and entries[2].details == {"status": "resolved"}


def test_audit_list_shows_the_newest_entries_and_filters_by_action(config_path: Path) -> None:
    pull(config_path)
    code, output = cli("audit", "list", "--config", str(config_path), "--limit", "2", "--json")
    lines = orjson.loads(output)["entries"]
    (top,) = sql(config_path, "SELECT max(seq) FROM audit_log")[0]
    assert code == 0 and [e["seq"] for e in lines] == [top - 1, top]
    code, output = cli("audit", "list", "--config", str(config_path), "--action", "page.commit", "--after", "0")
    assert code == 0 and "page.commit" in output and "transit_card:transactio" in output


def test_drift_lists_unknown_fields_per_stream(config_path: Path) -> None:
    hub = open_hub(config_path)
    try:
        rt = hub.stream("yrd_scenarios", "records_push")
        ctx = rt.context({})
        item = dict(
            Dataset(1, 3, bad={k: 0 for k in YRD_BAD_KINDS}, withdrawn={k: 0 for k in WITHDRAWN_KINDS}).items[0]
        )
        item["green_points"] = 12
        result = hub.pulls.commit_page(rt, ctx, [item], None)
    finally:
        run(hub.aclose)
    assert result.drift == {"green_points": 1} and result.inserted == 1
    code, output = cli("drift", "--config", str(config_path), "--json")
    (row,) = orjson.loads(output)["drift"]
    assert code == 0 and row["field"] == "green_points" and row["stream"] == "records_push" and row["items"] == 1


def test_page_digests_do_not_count_a_record_twice_when_a_page_repeats_it(config_path: Path) -> None:
    hub = open_hub(config_path)
    try:
        store = hub.store
        assert isinstance(store, AuditLog)
        body = b'{"a":1}'
        record = NewRecord("R1", "fp1", "bus", 0.1, body)
        store.commit_page(
            "transit_card", "transactions", [record, record, NewRecord("R2", "fp2", "bus", 0.1, body)], [], None
        )
        result = verify_log(store, records=True)
    finally:
        run(hub.aclose)
    assert result.ok and result.records_checked == 2


def test_admin_requests_are_logged_with_the_client_address_before_they_run(tmp_path: Path) -> None:
    running = Running(tmp_path)
    try:
        auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        body = orjson.dumps({"items": ITEMS[:2]})
        assert running.push(body, signed(body, "msg_admin_1")).status_code == 200
        replay = running.http.post("/v1/admin/quarantine/replay", json={"ids": [7, 9]}, headers=auth)
        letters = running.http.post("/v1/admin/dead-letters/replay", json={"ids": [3]}, headers=auth)
        refused = running.http.post("/v1/admin/quarantine/replay", json={"ids": [1]}, headers={"authorization": "x"})
        streams = running.http.get("/v1/admin/streams", headers=auth)
        store = running.sidecar.hub.store
        assert isinstance(store, AuditLog)
        entries = store.audit_entries(0, 100)
        intact = verify_log(store).ok
    finally:
        running.stop()
    assert replay.status_code == letters.status_code == streams.status_code == 200 and refused.status_code == 401
    assert [e.action for e in entries] == ["webhook.accept", "admin.quarantine.replay", "admin.dead_letters.replay"]
    assert entries[1].actor == entries[2].actor == "admin@127.0.0.1"
    assert entries[1].details["ids"] == [7, 9] and entries[2].details["ids"] == [3]
    assert entries[1].details["request_id"]  # to find the request in the JSON access log
    assert intact
