"""The conformance suite every adapter inherits: one set of tests that says whether a pull stream is correct.

    from tanpuhui.testing.conformance import AdapterConformance, LivePartner

    class TestReadingsConformance(AdapterConformance):
        plugin = hefei_water.plugin                 # the module (or object) registering the adapter
        adapter = HefeiWaterAdapter
        stream = "readings"                         # the pull stream under test
        page_path = "/v1/readings"                  # the URL path of its page requests (faults go there)
        cassette_dir = Path(__file__).parent / "cassettes" / "readings"

        def settings(self, base_url, partner):      # the [adapters.hefei_water] table
            secret = partner.handle.client_secret if partner else "replayed-secret"
            return {"base_url": base_url, "client_id": "hub", "client_secret": secret, "page_size": 4,
                    "retry_attempts": 3}

        def sandbox(self):                          # a live partner to record from (optional)
            return HefeiWaterSandbox(...)           # a context manager yielding a LivePartner

The adapter runs inside a real :class:`tanpuhui.hub.hub.Hub` (SQLite store in a temporary folder, the plugin
loaded like any other), so the suite checks what production does: schema validation, normalization, record
validation, dedup, and one commit per page with the cursor. Retry waits are recorded, not slept.

Scenarios, one cassette each in ``cassette_dir`` (recorded with ``pytest --tanpuhui-record``; faults are injected
by a :class:`~tanpuhui.testing.FaultInjector` while recording, so the cassettes show them):

==========================  =========================================================================================
``two_pages.json``          an uninterrupted run over at least ``min_pages`` pages
``resume_after_failure``    run 1 fails at page ``fail_at_page`` (503 until the client gives up); run 2 resumes
``rate_limited.json``       page 1 answered 429 with ``Retry-After: retry_after`` once
``server_error.json``       page ``fail_at_page`` answered 503 once
``reauth_401.json``         page ``fail_at_page`` answered 401 once (a token revoked early)
``empty_page.json``         a run from the end of ``two_pages``: the partner has nothing new
==========================  =========================================================================================

With ``cassette_dir = None`` every scenario runs live against :meth:`AdapterConformance.sandbox` instead.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]  # no stubs in the test extra

from tanpuhui.schemas import builtin_names, load_builtin
from tanpuhui.sdk import Adapter, PullStream, ReductionRecord, recompute, redact, vintage_problems

from .harness import Harness, LivePartner, Run
from .hints import hint
from .scrub import identifiers_in, personal_fields

__all__ = ["AdapterConformance", "Harness", "LivePartner", "Run"]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
SCENARIOS = ("two_pages", "resume_after_failure", "rate_limited", "server_error", "reauth_401", "empty_page")
"""The scenario cassettes in ``cassette_dir``, one per scenario (the table above); the harness plays them."""


_RECORD_VALIDATOR = Draft202012Validator(
    load_builtin("reduction-record"), format_checker=Draft202012Validator.FORMAT_CHECKER
)


class AdapterConformance:
    """Inherit in a ``Test...`` class and set the class attributes; every ``test_*`` here then runs for the adapter.

    Required: :attr:`plugin`, :attr:`adapter`, :attr:`stream`, :attr:`page_path`, :meth:`settings`; and either
    :attr:`cassette_dir` (replay) or :meth:`sandbox` (live), or both (record with ``--tanpuhui-record``).
    """

    plugin: object  # not ClassVar: mypy refuses a module assigned to a ClassVar in a subclass
    """The plugin (module or object with hookimpls) that registers the adapter and its methodologies."""
    adapter: ClassVar[type[Adapter]]
    stream: ClassVar[str]
    """The pull stream under test (subclass once per stream to test several)."""
    page_path: ClassVar[str]
    """The URL path (or its tail) of the stream's page requests: faults are injected there."""
    cassette_dir: ClassVar[str | Path | None] = None
    """Folder of the scenario cassettes; relative paths start at the rootdir. None: run live against sandbox()."""
    base_url: ClassVar[str] = "https://partner.sandbox.example"
    """The URL the adapter is configured with; cassettes keep it, recording sends its requests to the partner."""
    fail_at_page: ClassVar[int] = 2
    """The page the resume, 5xx and 401 scenarios fail at (1-based)."""
    retry_after: ClassVar[int] = 3
    """Seconds in the injected 429's ``Retry-After``."""
    max_attempts: ClassVar[int] = 10
    """Upper bound on requests for one page before the client must give up."""
    max_wait: ClassVar[float] = 120.0
    """Upper bound on any single retry wait, seconds."""
    min_pages: ClassVar[int] = 2
    min_records: ClassVar[int] = 1
    reauth: ClassVar[bool] = True
    """False for a partner without tokens: the 401 scenario is skipped."""
    allow_unused: ClassVar[bool] = False

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        """The ``[adapters.NAME]`` table reaching ``base_url``; ``partner`` is None when replaying cassettes."""
        raise NotImplementedError(f"{type(self).__name__} must define settings(base_url, partner)")

    def secret(self, partner: LivePartner | None, env: str, attribute: str = "client_secret") -> str:
        """A credential for :meth:`settings`, never a placeholder sent to a real partner.

        Replaying (``partner`` None): a stand-in (cassettes hold no credentials, nothing is sent). Recording from
        or running against the suite's own sandbox: the sandbox's ``attribute`` (its ``handle``'s). Recording from
        ``--tanpuhui-record-url`` (a real partner, or a sandbox served elsewhere): the environment variable ``env``;
        a usage error naming it when it is not set.
        """
        if partner is None:
            return "replayed-secret"
        if not partner.remote and partner.handle is not None and hasattr(partner.handle, attribute):
            return str(getattr(partner.handle, attribute))
        value = os.environ.get(env, "")
        if not value:
            raise pytest.UsageError(
                f"{type(self).__name__}: recording from {partner.url} needs the partner's {attribute}: set {env} "
                "(no placeholder credential is sent to a partner)"
            )
        return value

    def sandbox(self) -> AbstractContextManager[LivePartner | None]:
        """A live partner for recording and live runs; None (the default): the partner at ``base_url`` itself."""
        return nullcontext(None)

    @pytest.fixture
    def conformance(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
        harness = Harness(self, tmp_path, request.config)
        try:
            yield harness
        finally:
            harness.finish(request.node)

    # -- schemas -------------------------------------------------------------------------------------------

    def test_schemas_are_valid_2020_12_and_their_examples_validate(self) -> None:
        """Every schema is draft 2020-12 with an ``$id``; a stream's schema has examples, and they validate."""
        streams = {t.name: t.schema for t in self.adapter.stream_types}
        assert self.stream in streams, (
            f"{self.adapter.name} has no stream {self.stream!r}; streams: {sorted(streams)}" + hint("not_pull")
        )
        known = set(self.adapter.schemas) | set(builtin_names())
        for stream, schema in streams.items():
            assert schema in known, (
                f"stream {stream!r} names schema {schema!r}, which the adapter does not ship" + hint("schema_unknown")
            )
        for name, doc in self.adapter.schemas.items():
            assert doc.get("$schema") == DRAFT_2020_12, f"schema {name!r}: $schema must be {DRAFT_2020_12}" + hint(
                "schema_dialect"
            )
            assert doc.get("$id"), f"schema {name!r} has no $id (integrators refer to schemas by a stable $id)" + hint(
                "schema_id"
            )
            Draft202012Validator.check_schema(doc)
            examples = doc.get("examples", [])
            if name in streams.values():
                assert examples, f"schema {name!r} has no examples; give at least one valid payload" + hint(
                    "schema_examples"
                )
            validator = Draft202012Validator(doc, format_checker=Draft202012Validator.FORMAT_CHECKER)
            for index, example in enumerate(examples):
                errors = [
                    f"{'/'.join(map(str, e.absolute_path)) or '/'}: {e.message}" for e in validator.iter_errors(example)
                ]
                assert not errors, f"schema {name!r} examples[{index}] is invalid: {'; '.join(errors)}" + hint(
                    "example_invalid"
                )

    def test_the_stream_is_a_pull_stream(self) -> None:
        """``stream`` names a pull stream of the adapter."""
        types = {t.name: t for t in self.adapter.stream_types}
        assert issubclass(types[self.stream], PullStream), (
            f"{self.adapter.name}:{self.stream} is not a pull stream" + hint("not_pull")
        )

    # -- records -------------------------------------------------------------------------------------------

    def test_an_uninterrupted_run_gives_valid_reduction_records(self, conformance: Harness) -> None:
        """An uninterrupted run spans ``min_pages`` pages and gives valid reduction records, none quarantined."""
        run = conformance.happy()
        assert run.summary.error is None, f"the run stopped: {run.summary.error}" + hint("run_stopped")
        assert run.summary.pages >= self.min_pages, (
            f"{run.summary.pages} page(s); the scenario needs {self.min_pages}" + hint("too_few_pages")
        )
        assert len(run.records) >= self.min_records, (
            f"{len(run.records)} record(s); expected at least {self.min_records}" + hint("too_few_records")
        )
        crashed = [e for e in run.quarantined if any(p.get("keyword") == "adapter" for p in e.problems)]
        assert not crashed, f"normalize raised on {[(e.partner_record_id, e.problems) for e in crashed]}" + hint(
            "normalize_crashed"
        )
        invalid = [e for e in run.quarantined if e.stage == "record"]
        assert not invalid, (
            f"records failing reduction-record: {[(e.partner_record_id, e.problems) for e in invalid]}"
            + hint("record_invalid")
        )
        for doc in run.documents:
            errors = [
                f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _RECORD_VALIDATOR.iter_errors(doc)
            ]
            assert not errors, f"record {doc.get('record_id')}: {'; '.join(errors)}" + hint("record_invalid")
            ReductionRecord.model_validate(doc)
            assert doc["source"]["adapter"] == self.adapter.name and doc["source"]["stream"] == self.stream

    def test_records_are_deterministic(self, conformance: Harness) -> None:
        """The same partner data gives the same record bytes, and record ids do not repeat."""
        first, second = conformance.happy(), conformance.happy()
        assert first.records == second.records, "the same partner data gave different record bytes" + hint(
            "not_deterministic"
        )
        ids = [doc["record_id"] for doc in first.documents]
        assert len(ids) == len(set(ids)), f"record ids repeat: {[i for i, n in Counter(ids).items() if n > 1]}" + hint(
            "repeated_ids"
        )

    def test_no_clear_text_personal_identifier_in_any_record(self, conformance: Harness) -> None:
        """No ``x-personal-data`` value, resident ID or mobile number reaches a record."""
        run = conformance.happy()
        schema = self.adapter.schemas.get(
            next(t.schema for t in self.adapter.stream_types if t.name == self.stream), {}
        )
        fields = personal_fields([schema])
        values = {
            str(item[key])
            for item in run.raw_items
            for key in fields
            if isinstance(item.get(key), str | int) and len(str(item[key])) >= 5
        }
        for doc, body in zip(run.documents, run.records, strict=True):
            text = body.decode()
            leaked = sorted(v for v in values if v in text)
            assert not leaked, (
                f"record {doc['record_id']} holds personal data in clear: {[redact(v) for v in leaked]}"
                + hint("personal_data")
            )
            shaped = [s for s in _strings(doc) if identifiers_in(s)]
            assert not shaped, (
                f"record {doc['record_id']} holds resident-ID or mobile shaped values: {[redact(s) for s in shaped]}"
                + hint("personal_data")
            )

    def test_every_reduction_recomputes_from_its_own_fields(self, conformance: Harness) -> None:
        """``recompute(record)`` gives each record's ``reduction_kgco2e``."""
        for doc in conformance.happy().documents:
            stated = doc["quantification"]["reduction_kgco2e"]
            assert recompute(doc) == pytest.approx(stated, abs=1e-6), (
                f"record {doc['record_id']}: formula {doc['quantification']['formula']!r} over its factors, activity "
                f"and baseline gives {recompute(doc)}, the record says {stated}" + hint("recompute")
            )

    def test_every_factor_vintage_covers_the_records_date(self, conformance: Harness) -> None:
        """Every factor a record applies is the vintage valid on the activity's date (``vintage_problems``)."""
        for doc in conformance.happy().documents:
            problems = vintage_problems(doc)
            assert not problems, f"record {doc['record_id']}: {'; '.join(problems)}"

    # -- resume, retries, auth, empty pages ---------------------------------------------------------------------

    def test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(self, conformance: Harness) -> None:
        """A run failing at page ``fail_at_page`` and its resumption give exactly one uninterrupted run's records."""
        reference = conformance.happy()
        failed, resumed = conformance.resume()
        assert failed.summary.error, f"run 1 was to fail at page {self.fail_at_page} but ended normally" + hint(
            "fault_not_seen"
        )
        assert failed.summary.pages == self.fail_at_page - 1, (
            f"run 1 committed {failed.summary.pages} page(s) before failing at page {self.fail_at_page}"
            + hint("resume")
        )
        assert resumed.summary.error is None, f"the resumed run stopped: {resumed.summary.error}" + hint("resume")
        assert resumed.summary.duplicates == 0, (
            f"the resumed run re-delivered {resumed.summary.duplicates} record(s)" + hint("resume")
        )
        assert sorted(failed.records + resumed.records) == sorted(reference.records), (
            "interrupted + resumed runs do not give the records of one uninterrupted run "
            f"({len(failed.records)} + {len(resumed.records)} vs {len(reference.records)})" + hint("resume")
        )
        quarantined = Counter((e.stage, e.partner_record_id) for e in failed.quarantined + resumed.quarantined)
        assert quarantined == Counter((e.stage, e.partner_record_id) for e in reference.quarantined), (
            "interrupted + resumed runs quarantined other items than one uninterrupted run" + hint("resume")
        )
        assert resumed.checkpoint.cursor == reference.checkpoint.cursor, (
            f"the resumed run ended at cursor {resumed.checkpoint.cursor!r}, an uninterrupted run at "
            f"{reference.checkpoint.cursor!r}" + hint("resume")
        )

    def test_5xx_retries_stop_within_bounds(self, conformance: Harness) -> None:
        """A failing page is retried, at most ``max_attempts`` times, waits within ``max_wait``, and the error
        names the adapter.
        """
        failed, _ = conformance.resume()
        pages = Counter(conformance.page_requests(failed))
        tries = max(pages.values())
        assert 2 <= tries <= self.max_attempts, f"the failing page was requested {tries} time(s)" + hint("retry_bounds")
        assert failed.waits and all(0 <= w <= self.max_wait for w in failed.waits), (
            f"retry waits {failed.waits}" + hint("retry_bounds")
        )
        assert self.adapter.name in (failed.summary.error or ""), (
            f"the error does not name the adapter: {failed.summary.error}" + hint("error_names_adapter")
        )

    def test_a_5xx_is_retried_and_loses_nothing(self, conformance: Harness) -> None:
        """One 503 is retried once and changes no record."""
        reference, run = conformance.happy(), conformance.server_error()
        assert run.summary.error is None, f"one 503 stopped the run: {run.summary.error}" + hint("retry_bounds")
        assert len(run.waits) == 1 and 0 <= run.waits[0] <= self.max_wait, f"retry waits {run.waits}" + hint(
            "retry_bounds"
        )
        assert run.records == reference.records, "the records differ from an uninterrupted run's" + hint("retry_bounds")

    def test_429_is_retried_after_retry_after(self, conformance: Harness) -> None:
        """One 429 is retried after exactly its ``Retry-After`` and changes no record."""
        reference, run = conformance.happy(), conformance.rate_limited()
        assert run.summary.error is None, f"one 429 stopped the run: {run.summary.error}" + hint("retry_after")
        assert run.waits == [pytest.approx(self.retry_after)], (
            f"waited {run.waits} after a 429 with Retry-After: {self.retry_after}" + hint("retry_after")
        )
        assert run.records == reference.records, "the records differ from an uninterrupted run's" + hint("retry_after")

    def test_a_401_reauthenticates_once_and_loses_nothing(self, conformance: Harness) -> None:
        """One 401 costs one token request and one repeat of the page (skipped when ``reauth`` is False)."""
        if not self.reauth:
            pytest.skip(f"{self.adapter.name} uses no access tokens (reauth = False)")
        reference, run = conformance.happy(), conformance.reauth()
        assert run.summary.error is None, f"one 401 stopped the run: {run.summary.error}" + hint("reauth")
        assert run.records == reference.records, "the records differ from an uninterrupted run's" + hint("reauth")
        extra = Counter(run.requests) - Counter(reference.requests)
        page_extra = Counter(conformance.page_requests(run)) - Counter(conformance.page_requests(reference))
        assert sum(page_extra.values()) == 1, (
            f"the refused page was not requested again once: {dict(page_extra)}" + hint("reauth")
        )
        others = extra - page_extra
        assert sum(others.values()) == 1, (
            f"expected one token request after the 401, got {dict(others) or 'none'}" + hint("reauth")
        )

    def test_an_empty_page_adds_nothing_and_keeps_the_cursor(self, conformance: Harness) -> None:
        """A run with nothing new pulls nothing, adds nothing and keeps the cursor."""
        first, second = conformance.empty_after_happy()
        if first.checkpoint.cursor is None and (second.summary.pulled or second.summary.error):
            raise AssertionError(
                "the run after the last page started over from the beginning (it pulled "
                f"{second.summary.pulled} item(s) again{', then stopped: ' + second.summary.error if second.summary.error else ''})"
                ": the first run's last page left no cursor (None) to resume from" + hint("null_cursor")
            )
        assert second.summary.error is None, f"an empty page stopped the run: {second.summary.error}" + hint(
            "empty_page"
        )
        assert second.summary.pulled == 0, f"the empty-page run pulled {second.summary.pulled} item(s)" + hint(
            "empty_page"
        )
        assert second.records == [] and second.quarantined == [], (
            f"the empty-page run added {len(second.records)} record(s), {len(second.quarantined)} quarantined"
            + hint("empty_page")
        )
        if first.checkpoint.cursor is not None:
            assert second.checkpoint.cursor is not None, (
                "an empty page reset the cursor: the next run starts over" + hint("null_cursor")
            )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
