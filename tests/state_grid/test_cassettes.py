"""Recorded partner exchanges (tests/cassettes/state_grid, recorded by record_cassettes.py) replayed through a hub."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date

import pytest
import respx

from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.testing import Cassette

from .conftest import CASSETTES, FakeSleep, HubFactory, household_state, outbox, quarantine


@pytest.fixture
def replay(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """The cassette named by the (indirect) parameter, mounted on respx; every recorded exchange must be used."""
    cassette = Cassette.load(CASSETTES / f"{request.param}.json")
    with respx.mock(assert_all_called=False) as router:
        cassette.mount(router)
        yield cassette
    cassette.assert_all_used()


def pull(hub: Hub) -> PullSummary:
    (summary,) = asyncio.run(hub.pull("state_grid", "readings"))
    return summary


def cursor(hub: Hub) -> object:
    (status,) = hub.store.stream_status()
    return status.cursor


@pytest.mark.parametrize("replay", ["two_pages_then_resume"], indirect=True)
def test_two_pages_then_a_later_run_resumes_from_the_saved_cursor(replay: Cassette, make_hub: HubFactory) -> None:
    first = pull(make_hub(page_size=8))
    assert (first.pages, first.pulled, first.quarantined, first.error) == (2, 14, 0, None)
    assert cursor(make_hub()) == "eyJ2IjoxLCJvIjoxNH0"
    second = pull(make_hub(page_size=8))  # a new process: fresh token, cursor and household state from the store
    assert (second.pages, second.pulled, second.error) == (1, 4, None)
    assert (first.inserted, second.inserted, second.duplicates) == (1, 4, 0)
    records = outbox(make_hub())
    assert len({r["record_id"] for r in records}) == 5
    assert household_state(make_hub(), "9900000001")["d"] == date(2024, 11, 12).toordinal()
    assert [r.url.params.get("cursor") for r in replay.requests if r.method == "GET"] == [
        None,
        "eyJ2IjoxLCJvIjo4fQ",
        "eyJ2IjoxLCJvIjoxNH0",
    ]


@pytest.mark.parametrize("replay", ["rate_limited_429"], indirect=True)
def test_a_429_is_retried_after_the_partners_retry_after(
    replay: Cassette, make_hub: HubFactory, fake_sleep: FakeSleep
) -> None:
    summary = pull(make_hub(page_size=50))
    assert (summary.pulled, summary.error) == (4, None)
    assert fake_sleep.waits == [7.0]


@pytest.mark.parametrize("replay", ["server_error_then_success"], indirect=True)
def test_5xx_answers_are_retried_with_backoff(replay: Cassette, make_hub: HubFactory, fake_sleep: FakeSleep) -> None:
    summary = pull(make_hub(page_size=50))
    assert (summary.pulled, summary.error) == (4, None)
    first, second = fake_sleep.waits  # exponential from 0.5 s, plus up to 1 s of jitter
    assert 0.5 <= first <= 1.5
    assert 1.0 <= second <= 2.0


@pytest.mark.parametrize("replay", ["token_revoked_401"], indirect=True)
def test_a_token_revoked_mid_run_is_fetched_again_once(replay: Cassette, make_hub: HubFactory) -> None:
    summary = pull(make_hub(page_size=2))
    assert (summary.pages, summary.pulled, summary.error) == (2, 4, None)
    token_requests = [r for r in replay.requests if r.url.path == "/oauth/token"]
    assert len(token_requests) == 2
    assert token_requests[0].headers["authorization"].startswith("Basic ")
    assert replay.requests[-1].headers["authorization"] == "Bearer sandbox-token-2"


@pytest.mark.parametrize("replay", ["unauthorized_after_token_refetch"], indirect=True)
def test_a_second_401_stops_the_run_without_moving_the_cursor(replay: Cassette, make_hub: HubFactory) -> None:
    hub = make_hub(page_size=50)
    summary = pull(hub)
    assert summary.error is not None and "401 Unauthorized" in summary.error
    (status,) = hub.store.stream_status()
    assert (status.cursor, status.last_error) == (None, summary.error)
    assert outbox(hub) == []


@pytest.mark.parametrize("replay", ["malformed_items_quarantined"], indirect=True)
def test_malformed_and_backwards_readings_are_quarantined_while_the_page_goes_on(
    replay: Cassette, make_hub: HubFactory
) -> None:
    hub = make_hub(page_size=50)
    summary = pull(hub)
    assert (summary.pulled, summary.valid, summary.quarantined, summary.error) == (30, 28, 2, None)
    (raw_id, raw_stage, raw_problems), (back_id, back_stage, back_problems) = quarantine(hub)
    assert (raw_id, raw_stage) == ("SG20241106000001", "raw")
    assert {p["pointer"] for p in raw_problems} == {"/PAP_R"}
    assert (back_id, back_stage) == ("SG20241106000004", "normalize")
    assert [p["pointer"] for p in back_problems] == ["/PAP_R", "/PAP_R2"]
    assert cursor(hub) == "eyJ2IjoxLCJvIjozMH0"


@pytest.mark.parametrize("replay", ["empty_page_then_resume"], indirect=True)
def test_an_empty_page_keeps_its_cursor_for_the_next_run(replay: Cassette, make_hub: HubFactory) -> None:
    first = pull(make_hub(page_size=50))
    assert (first.pages, first.pulled, first.error) == (1, 0, None)
    assert cursor(make_hub()) == "eyJ2IjoxLCJvIjowfQ"
    second = pull(make_hub(page_size=50))
    assert (second.pulled, second.quarantined, second.error) == (4, 0, None)
    assert cursor(make_hub()) == "eyJ2IjoxLCJvIjo0fQ"


@pytest.mark.parametrize("replay", ["envelope_error_code"], indirect=True)
def test_an_error_code_in_the_envelope_stops_the_run_naming_code_and_message(
    replay: Cassette, make_hub: HubFactory
) -> None:
    hub = make_hub(page_size=50)
    summary = pull(hub)
    assert summary.error is not None
    assert "partner answered code '5001'" in summary.error
    assert "系统繁忙" in summary.error
    assert cursor(hub) is None
