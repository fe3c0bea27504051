"""The adapter against the sandbox gateway on loopback: signatures, tokens, sealed pages and faults for real."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tanpuhui.adapters.provincial_bigdata.adapter import DATASETS
from tanpuhui.adapters.provincial_bigdata.sandbox import TOKEN_PATH, ProvincialSandbox, records_path
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import PullStream
from tanpuhui.sdk.gateway import signed_headers

from .conftest import FakeSleep, HubFactory, outbox, run


@pytest.fixture
def sandbox() -> Iterator[ProvincialSandbox]:
    with ProvincialSandbox(seed=7) as sb:
        yield sb


def connect(hub_factory: HubFactory, sb: ProvincialSandbox, sleep: FakeSleep | None = None, **overrides: Any) -> Hub:
    adapter_table, env = sb.secrets_env("PBD_")
    return hub_factory({**adapter_table, **overrides}, env=env, sleep=sleep)


def pull_all(hub: Hub, stream: str | None = None) -> dict[str, PullSummary]:
    async def go(h: Hub) -> list[PullSummary]:
        return await h.pull("provincial_bigdata", stream)

    return {s.stream: s for s in run(hub, go)}


def test_the_sandbox_starts_in_under_a_second() -> None:
    started = time.perf_counter()
    with ProvincialSandbox(seed=3) as sb:
        assert sb.url.startswith("http://127.0.0.1:")
    assert time.perf_counter() - started < 1.0


def test_a_full_pull_of_every_dataset_gives_what_the_sandbox_expects(
    sandbox: ProvincialSandbox, hub_factory: HubFactory
) -> None:
    hub = connect(hub_factory, sandbox, page_size=50)
    summaries = pull_all(hub)
    assert list(summaries) == list(DATASETS)
    for name, summary in summaries.items():
        expected = sandbox.data.expected(name)
        assert summary.error is None, summary.error
        assert (summary.pulled, summary.inserted, summary.quarantined) == (
            expected["items"],
            expected["records"],
            expected["quarantined"],
        ), name
    assert sandbox.stats.sealed_responses == summaries["water_usage"].pages
    assert sandbox.stats.tokens_issued == 1
    assert sandbox.stats.refused == {}
    by_scenario = {r["scenario"] for r in outbox(hub)}
    assert by_scenario == {"green_appliance", "peak_water_saving", "peak_gas_saving", "rooftop_pv"}


def test_no_clear_identifier_reaches_a_record(sandbox: ProvincialSandbox, hub_factory: HubFactory) -> None:
    hub = connect(hub_factory, sandbox, page_size=200)
    pull_all(hub)
    text = orjson.dumps(outbox(hub)).decode()
    for items in sandbox.data.items.values():
        for item in items:
            for key in ("buyerIdNo", "buyerMobile", "accountNo", "consNo"):
                if key in item:
                    assert item[key] not in text


def test_hmac_sm3_signatures_are_accepted(sandbox: ProvincialSandbox, hub_factory: HubFactory) -> None:
    hub = connect(hub_factory, sandbox, sign_method="HMAC-SM3", page_size=100)
    summary = pull_all(hub, "rooftop_pv")["rooftop_pv"]
    assert summary.error is None and summary.inserted == sandbox.data.expected("rooftop_pv")["records"]


def test_a_wrong_app_secret_is_refused_with_code_3001(sandbox: ProvincialSandbox, hub_factory: HubFactory) -> None:
    adapter_table, env = sandbox.secrets_env("PBD_")
    hub = hub_factory(adapter_table, env={**env, "PBD_APP_SECRET": "not-the-secret"})
    summary = pull_all(hub, "gas_usage")["gas_usage"]
    assert summary.error is not None and "gateway code 3001 (signature invalid)" in summary.error
    assert sandbox.stats.refused["3001"] == 1 and sandbox.stats.data_requests == 0


def test_the_gateway_refuses_a_replayed_request(sandbox: ProvincialSandbox) -> None:
    body = b'{"grantType":"client_credentials"}'
    headers = signed_headers("POST", TOKEN_PATH, "", body, app_key=sandbox.app_key, app_secret=sandbox.app_secret)
    first = httpx.post(sandbox.url + TOKEN_PATH, content=body, headers=headers)
    again = httpx.post(sandbox.url + TOKEN_PATH, content=body, headers=headers)
    assert first.json()["code"] == "0000"
    assert again.json()["code"] == "3003"
    assert "nonce" in again.json()["msg"]


def test_the_gateway_refuses_a_timestamp_outside_fifteen_minutes(sandbox: ProvincialSandbox) -> None:
    body = b'{"grantType":"client_credentials"}'
    stale = int((time.time() - 16 * 60) * 1000)
    headers = signed_headers(
        "POST", TOKEN_PATH, "", body, app_key=sandbox.app_key, app_secret=sandbox.app_secret, timestamp_ms=stale
    )
    answer = httpx.post(sandbox.url + TOKEN_PATH, content=body, headers=headers).json()
    assert answer["code"] == "3002"


def test_data_requests_need_a_token(sandbox: ProvincialSandbox) -> None:
    path = records_path("gas_usage")
    headers = signed_headers("GET", path, "pageSize=5", b"", app_key=sandbox.app_key, app_secret=sandbox.app_secret)
    answer = httpx.get(sandbox.url + path, params={"pageSize": 5}, headers=headers).json()
    assert answer == {"code": "2002", "msg": "token无效: missing or unknown access token", "data": None}


def test_a_token_expired_mid_run_is_renewed_and_the_run_completes(
    sandbox: ProvincialSandbox, hub_factory: HubFactory
) -> None:
    hub = connect(hub_factory, sandbox, page_size=40)

    async def go(h: Hub) -> PullSummary:
        seen = 0
        async for _ in _pages(h, "gas_usage"):
            seen += 1
            if seen == 2:
                sandbox.expire_tokens()
        (summary,) = await h.pull("provincial_bigdata", "gas_usage")
        return summary

    summary = run(hub, go)
    assert summary.error is None
    assert sandbox.stats.tokens_issued == 2 and sandbox.stats.refused["2001"] == 1


async def _pages(hub: Hub, stream: str) -> Any:
    """Walk the stream's pages without ingesting them (to steer the sandbox between pages)."""
    target = hub.adapter("provincial_bigdata").stream(stream)
    assert isinstance(target, PullStream)
    async for page in target.pages(hub.stream("provincial_bigdata", stream).context({}), None):
        yield page


def test_429_and_503_from_the_gateway_are_waited_out(sandbox: ProvincialSandbox, hub_factory: HubFactory) -> None:
    sleep = FakeSleep()
    hub = connect(hub_factory, sandbox, sleep=sleep, page_size=100)
    sandbox.fail_next(429, retry_after=2, dataset="green_appliances")
    sandbox.fail_next(503, dataset="green_appliances")
    summary = pull_all(hub, "green_appliances")["green_appliances"]
    assert summary.error is None and summary.inserted == sandbox.data.expected("green_appliances")["records"]
    assert sleep.waits[0] == 2.0 and len(sleep.waits) == 2
    assert sandbox.stats.faults == {429: 1, 503: 1}


def test_a_gateway_that_stays_busy_stops_the_run_without_losing_pages(
    sandbox: ProvincialSandbox, hub_factory: HubFactory
) -> None:
    hub = connect(hub_factory, sandbox, page_size=100, retry_attempts=3)

    async def go(h: Hub) -> tuple[PullSummary, PullSummary]:
        sandbox.fail_next("1001", count=3, dataset="water_usage")
        (first,) = await h.pull("provincial_bigdata", "water_usage")
        (second,) = await h.pull("provincial_bigdata", "water_usage")
        return first, second

    first, second = run(hub, go)
    assert first.error is not None
    assert (
        "dataset 'water_usage'" in first.error
        and "gave up after 3 attempts (gateway code 1001 (system busy)" in first.error
    )
    assert first.pages == 0
    expected = sandbox.data.expected("water_usage")
    assert (second.error, second.pulled, second.inserted) == (None, expected["items"], expected["records"])


def test_a_tampered_page_is_refused_and_the_next_run_resumes_from_the_same_cursor(
    sandbox: ProvincialSandbox, hub_factory: HubFactory
) -> None:
    hub = connect(hub_factory, sandbox, page_size=60)

    async def go(h: Hub) -> tuple[PullSummary, PullSummary]:
        stream = h.adapter("provincial_bigdata").stream("water_usage")
        assert isinstance(stream, PullStream)
        original = stream.pages

        async def tamper_after_first_page(ctx: Any, cursor: Any) -> Any:
            async for page in original(ctx, cursor):
                sandbox.tamper_next()  # the tag of the next sealed answer will not verify
                yield page

        stream.pages = tamper_after_first_page  # type: ignore[method-assign]
        (first,) = await h.pull("provincial_bigdata", "water_usage")
        stream.pages = original  # type: ignore[method-assign]
        (second,) = await h.pull("provincial_bigdata", "water_usage")
        return first, second

    first, second = run(hub, go)
    assert first.error is not None and "integrity tag (signData, HMAC-SM3) does not verify" in first.error
    assert first.pages == 1 and sandbox.stats.faults["bad_tag"] == 1
    expected = sandbox.data.expected("water_usage")
    assert first.pulled + second.pulled == expected["items"]
    assert first.inserted + second.inserted == expected["records"]
    assert second.duplicates == 0


def test_a_clear_answer_to_a_sealed_dataset_is_refused(hub_factory: HubFactory) -> None:
    with ProvincialSandbox(seed=7, encrypted=()) as sb:
        hub = connect(hub_factory, sb, page_size=50)
        summary = pull_all(hub, "water_usage")["water_usage"]
    assert summary.error is not None and "configured as encrypted but the gateway answered in clear" in summary.error
    assert summary.inserted == 0


def test_a_withdrawn_grant_is_an_auth_error_naming_the_dataset(
    sandbox: ProvincialSandbox, hub_factory: HubFactory
) -> None:
    sandbox.deny("rooftop_pv")
    hub = connect(hub_factory, sandbox)
    summary = pull_all(hub, "rooftop_pv")["rooftop_pv"]
    assert summary.error is not None
    assert (
        "dataset 'rooftop_pv'" in summary.error
        and "gateway code 4001 (no permission for this dataset)" in summary.error
    )


def test_incremental_runs_resume_cursor_and_numbered_pages_without_gaps_or_doubles(hub_factory: HubFactory) -> None:
    with ProvincialSandbox(seed=7, visible={"green_appliances": 33, "rooftop_pv": 17}) as sb:
        hub = connect(hub_factory, sb, page_size=10)

        async def go(h: Hub) -> list[PullSummary]:
            runs = list(await h.pull("provincial_bigdata", "green_appliances"))
            runs += await h.pull("provincial_bigdata", "rooftop_pv")
            assert h.store.load_checkpoint("provincial_bigdata", "rooftop_pv").cursor == {"page": 2, "skip": 7}
            sb.publish("green_appliances")
            sb.publish("rooftop_pv")
            runs += await h.pull("provincial_bigdata", "green_appliances")
            runs += await h.pull("provincial_bigdata", "rooftop_pv")
            return runs

        runs = run(hub, go)
        for name in ("green_appliances", "rooftop_pv"):
            done = [r for r in runs if r.stream == name]
            expected = sb.data.expected(name)
            assert sum(r.pulled for r in done) == expected["items"], name
            assert sum(r.inserted for r in done) == expected["records"], name
            assert sum(r.duplicates for r in done) == 0
        ids = [r["source"]["partner_record_id"] for r in outbox(hub) if r["scenario"] == "rooftop_pv"]
        assert len(ids) == len(set(ids))


def test_dataset_codes_and_paths_follow_the_settings(hub_factory: HubFactory) -> None:
    with ProvincialSandbox(seed=7) as sb:
        hub = connect(hub_factory, sb, dataset_codes={"gas_usage": "no_such_dataset"})
        summary = pull_all(hub, "gas_usage")["gas_usage"]
    assert summary.error is not None and "GET /share/v1/datasets/no_such_dataset/records" in summary.error
    assert "gateway code 4004 (dataset not found)" in summary.error
