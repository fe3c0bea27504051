"""The demand_response push stream through Hub.receive: signatures, parsing, quarantine, dedup, crediting."""

from __future__ import annotations

import orjson
import pytest

from tanpuhui.sdk import ConfigError, SignatureError, recompute

from .conftest import KEYS, WEBHOOK_SECRET, HubFactory, dr_result, outbox, quarantine, signed


def test_a_signed_push_is_verified_committed_and_credited(make_hub: HubFactory) -> None:
    hub = make_hub()
    body = orjson.dumps([dr_result(1), dr_result(2, actual_kwh=0.95)])
    result = hub.receive("state_grid", "demand_response", signed(body), body).page
    assert (result.items, result.inserted, result.quarantined) == (2, 2, 0)
    first, second = outbox(hub)
    assert first["scenario"] == "demand_response"
    assert first["period"] == {"start": "2024-11-08T18:00:00+08:00", "end": "2024-11-08T20:00:00+08:00"}
    assert first["subject"]["pseudonym"] == KEYS.pseudonym("account", "3401200001")
    assert first["activity"]["details"] == {
        "event_id": "AHDR2024110801",
        "response_type": "peak_shaving",
        "window_hours": 2.0,
    }
    q = first["quantification"]
    assert (q["methodology_id"], q["methodology_version"]) == ("tph.electricity.demand-response", "1.1.0")
    assert q["baseline"] == {
        "quantity": 1.86,
        "unit": "kWh",
        "method": "mean of the same hours on the 5 working days before the event",
    }
    assert q["reduction_kgco2e"] == pytest.approx((1.86 - 1.12) * 0.6782)
    assert recompute(second) == pytest.approx((1.86 - 0.95) * 0.6782)
    assert "3401200001" not in orjson.dumps(first).decode()


def test_a_bad_signature_is_rejected_before_anything_is_stored(make_hub: HubFactory) -> None:
    hub = make_hub()
    body = orjson.dumps([dr_result(1)])
    headers = signed(body, secret="whsec_" + "QUJD" * 8)  # someone else's secret
    with pytest.raises(SignatureError, match="no webhook signature matches"):
        hub.receive("state_grid", "demand_response", headers, body)
    tampered = signed(body)
    with pytest.raises(SignatureError):
        hub.receive("state_grid", "demand_response", tampered, body.replace(b"1.12", b"0.12"))
    assert hub.store.counts()["outbox"] == 0
    assert hub.store.quarantine_list() == []


def test_a_schema_invalid_result_is_quarantined_while_the_others_go_through(make_hub: HubFactory) -> None:
    hub = make_hub()
    missing_actual = dr_result(2)
    del missing_actual["actual_kwh"]
    body = orjson.dumps({"items": [dr_result(1), missing_actual, dr_result(3, window_start="2024-11-08 18:00")]})
    result = hub.receive("state_grid", "demand_response", signed(body), body).page
    assert (result.items, result.inserted, result.quarantined) == (3, 1, 2)
    entries = quarantine(hub)
    assert [(pid, stage) for pid, stage, _ in entries] == [
        ("DR2024110801-000002", "raw"),
        ("DR2024110801-000003", "raw"),
    ]
    assert entries[0][2][0]["message"] == '"actual_kwh" is a required property'
    assert entries[1][2][0]["pointer"] == "/window_start"


def test_the_same_event_result_pushed_twice_is_stored_once(make_hub: HubFactory) -> None:
    hub = make_hub()
    body = orjson.dumps([dr_result(1), dr_result(2)])
    hub.receive("state_grid", "demand_response", signed(body, "msg_first"), body)
    again = hub.receive("state_grid", "demand_response", signed(body, "msg_retry"), body).page
    assert (again.inserted, again.duplicates) == (0, 2)
    assert len(outbox(hub)) == 2


def test_a_result_at_or_above_its_baseline_gives_no_record(make_hub: HubFactory) -> None:
    hub = make_hub()
    body = orjson.dumps([dr_result(1, actual_kwh=1.86), dr_result(2, actual_kwh=2.4)])
    result = hub.receive("state_grid", "demand_response", signed(body), body).page
    assert (result.valid_items, result.records, result.quarantined) == (2, 0, 0)


def test_valley_filling_results_are_not_credited(make_hub: HubFactory) -> None:
    hub = make_hub()
    item = dr_result(1, response_type="valley_filling", baseline_kwh=0.74, actual_kwh=0.31)
    body = orjson.dumps(item)  # a single object is a batch of one
    result = hub.receive("state_grid", "demand_response", signed(body), body).page
    assert (result.valid_items, result.records) == (1, 0)


def test_an_event_window_ending_before_it_starts_is_quarantined(make_hub: HubFactory) -> None:
    hub = make_hub()
    body = orjson.dumps([dr_result(1, window_end="2024-11-08T17:00:00+08:00"), dr_result(2)])
    result = hub.receive("state_grid", "demand_response", signed(body), body).page
    assert (result.inserted, result.quarantined) == (1, 1)
    ((pid, stage, problems),) = quarantine(hub)
    assert (pid, stage, problems[0]["pointer"]) == ("DR2024110801-000001", "normalize", "/window_end")


def test_an_event_window_longer_than_max_event_hours_is_quarantined(make_hub: HubFactory) -> None:
    hub = make_hub(max_event_hours=4)
    body = orjson.dumps([dr_result(1, window_end="2024-11-09T18:00:00+08:00")])
    hub.receive("state_grid", "demand_response", signed(body), body)
    ((_, _, problems),) = quarantine(hub)
    assert "24 h is longer than max_event_hours (4)" in problems[0]["message"]


def test_rotated_secrets_both_verify(make_hub: HubFactory) -> None:
    old = "whsec_" + "b2xkLXN0YXRlLWdyaWQtc2VjcmV0LTMyYnl0ZXMhIQ=="
    hub = make_hub(
        environ={"SG_CLIENT_SECRET": "x", "SG_WEBHOOK_SECRET": WEBHOOK_SECRET, "SG_OLD_SECRET": old},
        webhook_secrets=[{"env": "SG_WEBHOOK_SECRET"}, {"env": "SG_OLD_SECRET"}],
    )
    body = orjson.dumps([dr_result(1), dr_result(2)])
    assert hub.receive("state_grid", "demand_response", signed(body, secret=old), body).page.inserted == 2
    body = orjson.dumps([dr_result(3)])
    assert hub.receive("state_grid", "demand_response", signed(body), body).page.inserted == 1


def test_a_literal_webhook_secret_in_hub_toml_is_refused(make_hub: HubFactory) -> None:
    with pytest.raises(ConfigError, match="holds a literal secret"):
        make_hub(webhook_secrets=[WEBHOOK_SECRET])
