"""The conformance suite fails adapters that break its rules (replaying the transit card cassettes)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter
from tanpuhui.sdk import AdapterPlugin, Page, RecordLike, StreamContext
from tanpuhui.testing.conformance import AdapterConformance, Harness

from . import test_conformance_transit_card as transit


class LeakyStream(TransactionsStream):
    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        for record in super().normalize(item, ctx):
            assert isinstance(record, dict)
            record["activity"].setdefault("details", {})["card"] = item["card_no"]  # the card number, in clear
            yield record


class RandomStream(TransactionsStream):
    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        for record in super().normalize(item, ctx):
            assert isinstance(record, dict)
            record["activity"].setdefault("details", {})["run"] = uuid.uuid4().hex  # differs on every run
            yield record


class ForgetfulStream(TransactionsStream):
    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        async for page in super().pages(ctx, None):  # ignores the saved cursor: starts over after a failure
            yield page


class InflatingStream(TransactionsStream):
    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        for record in super().normalize(item, ctx):
            assert isinstance(record, dict)
            record["quantification"]["reduction_kgco2e"] *= 2  # a figure its own formula does not give
            yield record


class StaleVintageStream(TransactionsStream):
    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        for record in super().normalize(item, ctx):
            assert isinstance(record, dict)
            q = record["quantification"]
            # another year's factor: valid for 2022 activities, applied to a trip of November 2024
            q["factors"] = [{**f, "valid_from": "2022-01-01", "valid_to": "2022-12-31"} for f in q["factors"]]
            q["factors_as_of"] = record["period"]["start"][:10]
            yield record


def _suite(stream_type: type[TransactionsStream]) -> AdapterConformance:
    adapter = type("BrokenTransitCard", (TransitCardAdapter,), {"stream_types": (stream_type,)})

    suite_type = type(
        "BrokenSuite",
        (transit.TestTransitCardConformance,),
        {"adapter": adapter, "plugin": AdapterPlugin(adapter), "__test__": False},
    )
    suite: AdapterConformance = suite_type()
    return suite


@pytest.fixture
def harness_for(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[AdapterConformance], Harness]:
    return lambda suite: Harness(suite, tmp_path, request.config)


def test_a_card_number_in_clear_fails_the_personal_data_check(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(LeakyStream)
    with pytest.raises(AssertionError, match="holds personal data in clear"):
        suite.test_no_clear_text_personal_identifier_in_any_record(harness_for(suite))


def test_records_that_differ_between_runs_fail_the_determinism_check(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(RandomStream)
    with pytest.raises(AssertionError, match="different record bytes"):
        suite.test_records_are_deterministic(harness_for(suite))


def test_a_stream_ignoring_its_cursor_fails_the_resume_check(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(ForgetfulStream)
    with pytest.raises(AssertionError, match="not recorded"):
        suite.test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(harness_for(suite))


def test_a_reduction_its_formula_does_not_give_fails_the_recompute_check(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(InflatingStream)
    with pytest.raises(AssertionError, match="the record says"):
        suite.test_every_reduction_recomputes_from_its_own_fields(harness_for(suite))


def test_a_factor_applied_outside_its_vintage_fails_the_vintage_check(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(StaleVintageStream)
    with pytest.raises(AssertionError, match=r"valid 2022-01-01..2022-12-31 does not cover 2024-11-"):
        suite.test_every_factor_vintage_covers_the_records_date(harness_for(suite))


def test_the_reference_adapter_passes_the_same_checks(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(TransactionsStream)
    harness = harness_for(suite)
    suite.test_no_clear_text_personal_identifier_in_any_record(harness)
    suite.test_records_are_deterministic(harness)
    suite.test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(harness)
    suite.test_every_reduction_recomputes_from_its_own_fields(harness)
    suite.test_every_factor_vintage_covers_the_records_date(harness)
