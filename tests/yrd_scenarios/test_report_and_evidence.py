"""``tanpuhui report`` equals what the consumer holds (corrections and voids included); ``tanpuhui evidence`` proves
a record: recomputation, the audit entry that committed it and the chain to the head."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.reconcile import parse_period, period_of, statement_totals

from .conftest import HubFactory
from .test_corrections import CONSUMER_SECRET, forward, push, rows, trip

KEYS = "v1:" + base64.b64encode(bytes(range(1, 33))).decode()
DECEMBER = {"start_time": "2024-12-02T08:11:00+08:00", "end_time": "2024-12-02T08:43:00+08:00"}


def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def hub_toml(tmp_path: Path, consumer_url: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[hub]\nstore = "{tmp_path / "hub.db"}"\n\n'
        f'[sinks.platform]\ntype = "http"\nurl = "{consumer_url}"\nsecret = {{ env = "PLATFORM_SECRET" }}\n'
    )
    return path


def busy_month(hub: Hub) -> None:
    """Three November trips and one in December; then trip 1 corrected, trip 2 re-sent unchanged, trip 3 cancelled."""
    push(hub, trip(1), trip(2), trip(3), trip(4, **DECEMBER))
    push(hub, trip(1, reduction_kgco2e=0.65, updated_at="2024-11-06T09:00:00+08:00"))
    push(hub, trip(2, updated_at="2024-11-06T09:00:00+08:00"))
    push(hub, trip(3, status="cancelled", updated_at="2024-11-07T10:00:00+08:00"))


def held_by_consumer(current: dict[str, dict[str, Any]], period: str) -> dict[str, Any]:
    """The consumer's own totals of its current records in the period (what the statement must equal)."""
    p = parse_period(period)
    return statement_totals(
        [(r["source"]["adapter"], r) for r in current.values() if (d := period_of(r, p.tz)) and p.contains(d)]
    )


def test_the_monthly_and_daily_statements_equal_what_the_consumer_holds(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = hub_factory()
    busy_month(hub)
    env = {"TANPUHUI_PSEUDONYM_KEYS": KEYS, "PLATFORM_SECRET": CONSUMER_SECRET}
    with ConsumerServer(CONSUMER_SECRET) as consumer:
        forward(hub, consumer)
        config = hub_toml(tmp_path, consumer.url)
        code, out, err = cli(
            "report", "--config", str(config), "--period", "2024-11", "--json", "--forward", "platform", env=env
        )
        assert code == 0, err
        monthly = orjson.loads(out)
        current = consumer.current()
        statement_events = [d for d in consumer.deliveries() if d.content_type == "application/cloudevents+json"]
    expected = held_by_consumer(current, "2024-11")
    for key in ("totals", "by_adapter", "by_scenario", "by_region", "rows", "records_sha256"):
        assert monthly[key] == expected[key], key
    assert monthly["totals"] == {"records": 2, "kgco2e": pytest.approx(0.65 + 0.7006)}
    assert monthly["events"] == {"created": 3, "corrected": 1, "voided": 1}
    assert monthly["forwarded"]["webhook-id"] == statement_events[0].webhook_id  # accepted: the signature verified
    assert statement_events[0].ids == ["statement-2024-11-" + str(monthly["through_seq"])]

    code, out, _ = cli("report", "--config", str(config), "--period", "2024-11-05", "--json", env=env)
    daily = orjson.loads(out)
    assert (code, daily["totals"], daily["records_sha256"]) == (0, monthly["totals"], monthly["records_sha256"])
    code, out, _ = cli("report", "--config", str(config), "--period", "2024-12", env=env)
    assert code == 0 and "yrd_scenarios" in out and "1 created, 0 corrected, 0 voided" in out


def test_a_bad_period_is_one_line_naming_the_option(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub_factory()
    env = {"TANPUHUI_PSEUDONYM_KEYS": KEYS, "PLATFORM_SECRET": CONSUMER_SECRET}
    code, _, err = cli(
        "report", "--config", str(hub_toml(tmp_path, "http://127.0.0.1:9/")), "--period", "2024-13", env=env
    )
    assert code == 2 and "--period '2024-13'" in err and "Traceback" not in err


def test_the_evidence_pack_proves_a_correction_and_names_what_it_supersedes(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    hub = hub_factory()
    busy_month(hub)
    (_, original), *_ = rows(hub)
    correction = next(doc for kind, doc in rows(hub) if kind == "corrected")
    env = {"TANPUHUI_PSEUDONYM_KEYS": KEYS, "PLATFORM_SECRET": CONSUMER_SECRET}
    config = hub_toml(tmp_path, "http://127.0.0.1:9/")
    code, out, err = cli("evidence", "--config", str(config), correction["record_id"], original["record_id"], env=env)
    assert code == 0, err
    pack, old = orjson.loads(out)["packs"]
    assert pack["record"] == correction and pack["kind"] == "corrected"
    assert pack["supersedes"] == original["record_id"] and old["superseded_by"] == correction["record_id"]
    assert pack["raw_item"]["sha256"] == correction["source"]["raw_sha256"]
    assert pack["computation"]["matches"] and pack["computation"]["recomputed_kgco2e"] == pytest.approx(0.65)
    methodology = pack["methodology"]
    assert (methodology["id"], methodology["version"]) == (
        correction["quantification"]["methodology_id"],
        correction["quantification"]["methodology_version"],
    )
    assert all(f["source"] for f in methodology["factors_applied"])
    audit = pack["audit"]
    assert audit["log_verifies"] and audit["batch"]["matches_entry"]
    assert audit["entry"]["details"]["records_sha256"] == audit["batch"]["records_sha256"]
    assert [correction["record_id"]] == [rid for rid, _ in audit["batch"]["rows"]]
    chain = [audit["entry"], *audit["chain_to_head"]]
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(chain))
    assert audit["head"] == f"{chain[-1]['seq']}:{chain[-1]['hash']}"


def test_evidence_for_an_unknown_record_fails_naming_it(hub_factory: HubFactory, tmp_path: Path) -> None:
    hub_factory()
    env = {"TANPUHUI_PSEUDONYM_KEYS": KEYS, "PLATFORM_SECRET": CONSUMER_SECRET}
    code, _, err = cli(
        "evidence", "--config", str(hub_toml(tmp_path, "http://127.0.0.1:9/")), "01JBWTJ4H0V1TBG5HPV6E821QQ", env=env
    )
    assert code == 1 and "record '01JBWTJ4H0V1TBG5HPV6E821QQ' is not in the outbox" in err
