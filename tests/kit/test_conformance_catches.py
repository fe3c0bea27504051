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

from . import test_conformance_oauth_partners as partners


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
        (partners.TestTransitCardConformance,),
        {"adapter": adapter, "plugin": AdapterPlugin(adapter), "__test__": False},
    )
    suite: AdapterConformance = suite_type()
    return suite


@pytest.fixture
def harness_for(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[AdapterConformance], Harness]:
    return lambda suite: Harness(suite, tmp_path, request.config)


BROKEN = [
    pytest.param(
        LeakyStream,
        "test_no_clear_text_personal_identifier_in_any_record",
        "holds personal data in clear",
        id="a card number in clear fails the personal data check",
    ),
    pytest.param(
        RandomStream,
        "test_records_are_deterministic",
        "different record bytes",
        id="records that differ between runs fail the determinism check",
    ),
    pytest.param(
        ForgetfulStream,
        "test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing",
        "not recorded",
        id="a stream ignoring its cursor fails the resume check",
    ),
    pytest.param(
        InflatingStream,
        "test_every_reduction_recomputes_from_its_own_fields",
        "the record says",
        id="a reduction its formula does not give fails the recompute check",
    ),
    pytest.param(
        StaleVintageStream,
        "test_every_factor_vintage_covers_the_records_date",
        r"valid 2022-01-01..2022-12-31 does not cover 2024-11-",
        id="a factor applied outside its vintage fails the vintage check",
    ),
]
"""Each broken stream, the suite's check that catches it, and what its failure says."""


@pytest.mark.parametrize(("stream_type", "check", "says"), BROKEN)
def test_a_broken_stream_fails_the_check_meant_for_it(
    harness_for: Callable[..., Harness], stream_type: type[TransactionsStream], check: str, says: str
) -> None:
    suite = _suite(stream_type)
    with pytest.raises(AssertionError, match=says):
        getattr(suite, check)(harness_for(suite))


def test_the_reference_adapter_passes_the_same_checks(harness_for: Callable[..., Harness]) -> None:
    suite = _suite(TransactionsStream)
    harness = harness_for(suite)
    suite.test_no_clear_text_personal_identifier_in_any_record(harness)
    suite.test_records_are_deterministic(harness)
    suite.test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(harness)
    suite.test_every_reduction_recomputes_from_its_own_fields(harness)
    suite.test_every_factor_vintage_covers_the_records_date(harness)
