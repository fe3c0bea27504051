"""Conformance failures say what to change: the pattern, the fix and the guide section (which must exist)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter
from tanpuhui.sdk import AdapterPlugin, Page, StreamContext
from tanpuhui.testing.conformance import AdapterConformance, Harness
from tanpuhui.testing.hints import GUIDE, HINTS

from . import test_conformance_oauth_partners as partners

ROOT = Path(__file__).parent.parent.parent


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


class NullCursorStream(TransactionsStream):
    """A partner answering ``next_page_token: null`` on its last page, passed on as the page's cursor."""

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        held: Page | None = None
        async for page in super().pages(ctx, cursor):
            if held is not None:
                yield held
            held = page
        if held is not None:
            yield Page(items=held.items, cursor=None, request=held.request)


class LiveTransitSuite(partners.TestTransitCardConformance):
    """The transit card suite live against its sandbox (no cassettes: the broken stream asks other URLs)."""

    __test__ = False
    cassette_dir = None


def _live_suite(stream_type: type[TransactionsStream]) -> AdapterConformance:
    adapter = type("NullCursorTransitCard", (TransitCardAdapter,), {"stream_types": (stream_type,)})
    suite_type = type("Suite", (LiveTransitSuite,), {"adapter": adapter, "plugin": AdapterPlugin(adapter)})
    suite: AdapterConformance = suite_type()
    return suite


def test_every_hint_links_a_section_of_the_adapter_authors_guide() -> None:
    anchors = _anchors((ROOT / GUIDE).read_text(encoding="utf-8"))
    missing = {key: h.section for key, h in HINTS.items() if h.section not in anchors}
    assert not missing, f"hints link sections {GUIDE} does not have: {missing}"


def test_every_hint_in_the_suite_is_defined_and_every_defined_hint_is_used() -> None:
    source = "".join((ROOT / "testing" / f).read_text(encoding="utf-8") for f in ("conformance.py", "harness.py"))
    used = set(re.findall(r'hint\(\s*"(\w+)"', source))
    assert used <= set(HINTS), f"undefined hints: {sorted(used - set(HINTS))}"
    assert set(HINTS) <= used, f"hints no failure gives: {sorted(set(HINTS) - used)}"


def test_a_null_cursor_on_the_last_page_names_the_pattern_the_fix_and_the_section(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    suite = _live_suite(NullCursorStream)
    harness = Harness(suite, tmp_path, request.config)
    try:
        with pytest.raises(AssertionError) as failure:
            suite.test_an_empty_page_adds_nothing_and_keeps_the_cursor(harness)
    finally:
        harness.close()
    message = str(failure.value)
    assert "started over from the beginning" in message
    assert "left no cursor (None)" in message
    assert "next_page_token: null" in message and 'skip the first "seen" items' in message
    assert f"see: {GUIDE}#the-last-page-and-its-cursor" in message


def test_the_same_suite_passes_the_reference_stream_live(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    suite = _live_suite(TransactionsStream)
    harness = Harness(suite, tmp_path, request.config)
    try:
        suite.test_an_empty_page_adds_nothing_and_keeps_the_cursor(harness)
    finally:
        harness.close()


def test_a_schema_without_examples_says_to_add_one() -> None:
    schemas = {
        name: {k: v for k, v in doc.items() if k != "examples"} for name, doc in TransitCardAdapter.schemas.items()
    }
    adapter = type("NoExamples", (TransitCardAdapter,), {"schemas": schemas})
    suite_type = type("Suite", (LiveTransitSuite,), {"adapter": adapter, "plugin": AdapterPlugin(adapter)})
    with pytest.raises(
        AssertionError, match=r"has no examples(.|\n)*fix: add \"examples\"(.|\n)*#schemas-and-examples"
    ):
        suite_type().test_schemas_are_valid_2020_12_and_their_examples_validate()


def test_a_request_the_cassette_does_not_hold_says_to_re_record_or_restore(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    class StartsOver(TransactionsStream):
        async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
            async for page in super().pages(ctx, None):  # ignores the saved cursor
                yield page

    adapter = type("StartsOverTransitCard", (TransitCardAdapter,), {"stream_types": (StartsOver,)})
    suite_type = type(
        "Suite", (partners.TestTransitCardConformance,), {"adapter": adapter, "plugin": AdapterPlugin(adapter)}
    )
    suite: AdapterConformance = suite_type()
    with pytest.raises(AssertionError) as failure:
        suite.test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(
            Harness(suite, tmp_path, request.config)
        )
    message = str(failure.value)
    assert "not recorded" in message
    assert "re-record with pytest --tanpuhui-record" in message and "tanpuhui cassettes check" in message
    assert f"see: {GUIDE}#the-run-and-its-records" in message
