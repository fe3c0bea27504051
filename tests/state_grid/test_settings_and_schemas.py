"""hub.toml settings, the registered methodology, the partner schemas and the page envelope."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx
from jsonschema import Draft202012Validator

from tanpuhui.adapters.state_grid import DEMAND_RESPONSE, StateGridAdapter
from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import ConfigError

from .conftest import BASE_URL, HubFactory, hub_table

SCHEMAS = ("state-grid-reading", "state-grid-demand-response")


def settings_error(make_hub: HubFactory, **overrides: Any) -> str:
    hub = make_hub(**overrides)
    with pytest.raises(ConfigError) as info:
        hub.adapter("state_grid")
    return str(info.value)


def test_an_unknown_peak_register_is_a_config_error_naming_the_key(make_hub: HubFactory) -> None:
    message = settings_error(make_hub, peak_registers=["PAP_R2", "PAP_R5"])
    assert "adapters.state_grid.peak_registers.1" in message
    assert "'PAP_R1', 'PAP_R2', 'PAP_R3' or 'PAP_R4'" in message


def test_a_register_listed_twice_is_a_config_error(make_hub: HubFactory) -> None:
    assert "lists a register twice" in settings_error(make_hub, peak_registers=["PAP_R2", "PAP_R2"])


def test_min_days_cannot_exceed_the_window(make_hub: HubFactory) -> None:
    message = settings_error(make_hub, baseline_window_days=7, baseline_min_days=8)
    assert "baseline_min_days (8) cannot exceed baseline_window_days (7)" in message


def test_a_pull_needs_client_credentials(make_hub: HubFactory) -> None:
    table = hub_table()
    del table["client_secret"]
    assert "client_id and client_secret are needed" in settings_error(make_hub, table=table)


def test_an_adapter_with_nothing_to_do_is_refused(make_hub: HubFactory) -> None:
    message = settings_error(make_hub, table={"page_size": 10})
    assert "set base_url, client_id and client_secret" in message


def test_a_push_only_configuration_receives_but_cannot_pull(make_hub: HubFactory) -> None:
    hub = make_hub(table={"webhook_secrets": [{"env": "SG_WEBHOOK_SECRET"}]})
    (summary,) = asyncio.run(hub.pull("state_grid", "readings"))
    assert summary.error is not None and "readings pull needs base_url" in summary.error


def test_the_token_url_defaults_under_the_base_url(make_hub: HubFactory) -> None:
    adapter = make_hub().adapter("state_grid")
    assert isinstance(adapter, StateGridAdapter)
    assert adapter.config.token_url == f"{BASE_URL}/oauth/token"


def test_the_demand_response_methodology_is_registered_and_overridable(make_hub: HubFactory) -> None:
    hub = make_hub()
    found = hub.methodology("tph.electricity.demand-response")
    assert found == DEMAND_RESPONSE
    assert found.factor("ef_grid").value == hub.methodology("tph.electricity.peak-saving").factor("ef_grid").value
    other = make_hub(methodologies={"tph.electricity.demand-response": {"factors": {"ef_grid": 0.6553}}})
    factor = other.methodology("tph.electricity.demand-response").factor("ef_grid")
    assert (factor.value, factor.source) == (0.6553, "override in test hub.toml")


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_examples_validate_with_the_reference_validator(name: str) -> None:
    schema = load_builtin(name)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert schema["$id"].startswith("https://schemas.tanpuhui.org/partners/state-grid/")
    for example in schema["examples"]:
        assert list(validator.iter_errors(example)) == []


@pytest.mark.parametrize("name", SCHEMAS)
def test_personal_fields_are_annotated(name: str) -> None:
    props = load_builtin(name)["properties"]
    assert props["cons_no"]["x-personal-data"] == "account"
    assert props["meter_id"]["x-personal-data"] == "device"


def test_a_collected_reading_needs_all_five_registers_a_missing_one_none() -> None:
    validator = Draft202012Validator(load_builtin("state-grid-reading"))
    normal, _, missing = load_builtin("state-grid-reading")["examples"]
    assert not validator.is_valid({**normal, "PAP_R3": None})
    assert validator.is_valid({k: v for k, v in missing.items() if not k.startswith("PAP_R")})


def test_the_adapter_ships_both_schemas() -> None:
    assert set(StateGridAdapter.schemas) == set(SCHEMAS)


# -- the page envelope ----------------------------------------------------------------------------------------

TOKEN = {"access_token": "t1", "token_type": "Bearer", "expires_in": 1800}


def pull_answer(make_hub: HubFactory, *answers: httpx.Response) -> str | None:
    with respx.mock(base_url=BASE_URL) as mock:
        mock.post("/oauth/token").respond(200, json=TOKEN)
        mock.get("/api/v1/readings/daily").mock(side_effect=list(answers))
        (summary,) = asyncio.run(make_hub().pull("state_grid", "readings"))
    return summary.error


def page(records: list[Any], next_cursor: str | None, has_more: bool) -> httpx.Response:
    data = {"records": records, "next_cursor": next_cursor, "has_more": has_more}
    return httpx.Response(200, json={"code": "0000", "msg": "success", "data": data})


def test_a_partner_repeating_the_cursor_stops_the_run(make_hub: HubFactory) -> None:
    error = pull_answer(make_hub, page([], "c1", True), page([], "c1", True))
    assert error is not None and "stopping instead of asking for the same page forever" in error


def test_has_more_without_a_cursor_stops_the_run(make_hub: HubFactory) -> None:
    error = pull_answer(make_hub, page([], None, True))
    assert error is not None and "/data/has_more is true but there is no next_cursor" in error


def test_an_envelope_without_records_stops_the_run(make_hub: HubFactory) -> None:
    error = pull_answer(make_hub, httpx.Response(200, json={"code": "0000", "msg": "success", "data": None}))
    assert error is not None and '/data must be {"records": [...]' in error


def test_a_body_that_is_not_json_stops_the_run(make_hub: HubFactory) -> None:
    error = pull_answer(make_hub, httpx.Response(200, text="<html>gateway maintenance</html>"))
    assert error is not None and "response is not JSON" in error


def test_a_configured_success_code_is_accepted(make_hub: HubFactory) -> None:
    with respx.mock(base_url=BASE_URL) as mock:
        mock.post("/oauth/token").respond(200, json=TOKEN)
        mock.get("/api/v1/readings/daily").respond(
            200, json={"code": 200, "msg": "ok", "data": {"records": [], "next_cursor": "c0", "has_more": False}}
        )
        (summary,) = asyncio.run(make_hub(success_codes=["0000", "200"]).pull("state_grid", "readings"))
    assert summary.error is None
