"""The ``tanpuhui`` pytest plugin (entry point ``pytest11``): cassettes for adapter authors.

Replay (the default)::

    BASE = "https://water.sandbox.example"

    @pytest.mark.cassette("tests/cassettes/readings/two_pages.json", base_url=BASE)
    def test_two_pages(cassette):
        adapter = HefeiWaterAdapter(HefeiWaterSettings(base_url=BASE, ...), cassette.http())
        ...

Requests are answered from the cassette (respx). A request the cassette does not hold fails the test with the
request and the closest recorded one, even when adapter code caught the exception; a recorded exchange the test
never asked for fails it too (allow with ``allow_unused=True`` on the marker or ``tanpuhui_allow_unused = true``
in the ini file).

Record: run the same test with ``--tanpuhui-record`` (or ``TANPUHUI_RECORD=1``) and, when the partner is not at
``base_url`` itself, ``--tanpuhui-record-url http://127.0.0.1:8123`` (or ``TANPUHUI_RECORD_URL``): requests go to
the partner through a :class:`~tanpuhui.testing.RecordingTransport` and, when the test passes, the cassette is
written, scrubbed of secrets and personal identifiers.

Marker: ``cassette(path, *, base_url=None, allow_unused=False, ignore_query=(), personal_fields=None)``; relative
paths are taken from the ini option ``tanpuhui_cassette_dir`` (itself relative to the rootdir), else the rootdir.
Fixtures: ``cassette`` (the marker's cassette), ``tanpuhui_cassette`` (a factory: ``tanpuhui_cassette(path, ...)``
for several cassettes in one test) and ``tanpuhui_recording`` (whether and where this run records).

The module imports nothing heavy: pytest loads it in every project of an environment where tanpuhui is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from tanpuhui.sdk import HttpOptions

    from .cassette import Cassette
    from .recording import RecordingTransport
    from .staging import Staging

__all__ = ["CassetteSession", "Recording", "call_failed", "recording_settings", "resolve_cassette", "staging"]

_SESSIONS = pytest.StashKey[list["CassetteSession"]]()
_STAGING = pytest.StashKey["Staging"]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_SUMMARY = pytest.StashKey[list[str]]()
_TRUE = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tanpuhui", "tanpuhui adapter cassettes")
    group.addoption(
        "--tanpuhui-record",
        action="store_true",
        default=False,
        help="record cassettes from the live partner instead of replaying them (env TANPUHUI_RECORD=1)",
    )
    group.addoption(
        "--tanpuhui-record-url",
        default=None,
        metavar="URL",
        help="where the partner really is while recording, e.g. a sandbox (env TANPUHUI_RECORD_URL)",
    )
    group.addoption(
        "--tanpuhui-record-into",
        default=None,
        metavar="DIR",
        help="record the conformance cassettes into DIR (with a manifest.jsonl) instead of over the cassette folders: "
        "what `tanpuhui cassettes check` compares against the cassettes to find drift",
    )
    parser.addini("tanpuhui_cassette_dir", "folder relative cassette paths start from (default: the rootdir)")
    parser.addini(
        "tanpuhui_allow_unused",
        "do not fail a test for recorded exchanges it never requested",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cassette(path, *, base_url=None, allow_unused=False, ignore_query=(), personal_fields=None): "
        "replay (or with --tanpuhui-record, record) the partner exchanges of this test; see tanpuhui.testing",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    rec = recording_settings(config)
    if not rec.enabled:
        return None
    return f"tanpuhui: recording cassettes{' from ' + rec.url if rec.url else ''}"


@dataclass(frozen=True, slots=True)
class Recording:
    """Whether this run records cassettes, where the live partner is (None: at the cassette's base URL), and where
    the conformance cassettes go (None: their folders, when the session passes; else a drift-check folder)."""

    enabled: bool
    url: str | None = None
    into: Path | None = None


def recording_settings(config: pytest.Config) -> Recording:
    """The run's recording mode from ``--tanpuhui-record``/``--tanpuhui-record-url``/``--tanpuhui-record-into`` or
    the environment."""
    into = config.getoption("tanpuhui_record_into", None)
    enabled = (
        bool(config.getoption("tanpuhui_record"))
        or bool(into)
        or os.environ.get("TANPUHUI_RECORD", "").lower() in _TRUE
    )
    url = config.getoption("tanpuhui_record_url") or os.environ.get("TANPUHUI_RECORD_URL") or None
    return Recording(enabled, url, Path(into).resolve() if into else None)


def staging(config: pytest.Config) -> Staging:
    """The session's :class:`~tanpuhui.testing.staging.Staging`: recorded cassettes wait there for the session to
    pass."""
    from .staging import Staging

    found = config.stash.get(_STAGING, None)
    if found is None:
        found = config.stash[_STAGING] = Staging()
    return found


def call_failed(item: pytest.Item) -> bool:
    """Whether the test ``item`` failed (or never ran its body); for fixture teardowns."""
    report = item.stash.get(_REPORTS, {}).get("call")
    return report is None or report.failed


def resolve_cassette(config: pytest.Config, path: str | Path) -> Path:
    """An absolute cassette path: relative ones start at ``tanpuhui_cassette_dir`` (relative to the rootdir)."""
    p = Path(path)
    if p.is_absolute():
        return p
    base = str(config.getini("tanpuhui_cassette_dir") or "")
    root = Path(config.rootpath)
    return (root / base / p) if base else root / p


class CassetteSession:
    """One cassette in use by a test: replayed from its file, or recorded from the live partner.

    Give :attr:`transport` (or :meth:`http`) to the adapter. In replay mode every httpx client is also routed to the
    cassette (respx patches httpx), so a client built without ``HttpOptions`` cannot reach the network.
    """

    def __init__(
        self,
        path: Path,
        *,
        recording: Recording,
        base_url: str | None = None,
        allow_unused: bool = False,
        ignore_query: Iterable[str] = (),
        personal_fields: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.recording = recording.enabled
        self.check_only = recording.into is not None
        """Recording for ``--tanpuhui-record-into`` (a drift check): the cassette itself is never written."""
        self.base_url = base_url
        self.allow_unused = allow_unused
        self._stack = ExitStack()
        self.cassette: Cassette | None = None
        self.recorder: RecordingTransport | None = None
        self.transport: httpx.AsyncBaseTransport
        if recording.enabled:
            from .recording import RecordingTransport
            from .scrub import Scrubber

            rewrite: dict[str, str] = {}
            if recording.url:
                if not base_url:
                    raise pytest.UsageError(
                        f"cassette {path}: give base_url= to the cassette marker (the URL the adapter is configured "
                        f"with) so its requests can be sent to --tanpuhui-record-url {recording.url}"
                    )
                rewrite[base_url] = recording.url
            self.recorder = RecordingTransport(
                rewrite=rewrite, scrubber=Scrubber(personal_fields), ignore_query=ignore_query
            )
            self.transport = self.recorder
        else:
            import httpx
            import respx

            from .cassette import Cassette

            self.cassette = Cassette.load(path, ignore_query=ignore_query)
            router = self._stack.enter_context(respx.mock(assert_all_called=False, assert_all_mocked=True))
            self.cassette.mount(router)
            self.transport = httpx.MockTransport(router.async_handler)

    def http(self, sleep: Callable[[float], Any] | None = None) -> HttpOptions:
        """``HttpOptions`` for the adapter: this cassette's transport, and ``sleep`` (e.g. one that only records)."""
        from tanpuhui.sdk import HttpOptions

        if sleep is None:
            return HttpOptions(transport=self.transport)
        return HttpOptions(transport=self.transport, sleep=sleep)

    @property
    def requests(self) -> list[httpx.Request]:
        """Requests replayed (or refused) so far; empty while recording."""
        return self.cassette.requests if self.cassette is not None else []

    def problems(self) -> list[str]:
        """Unmatched requests and (unless allowed) unused recordings; nothing while recording."""
        return self.cassette.problems(self.allow_unused) if self.cassette is not None else []

    def finish(self, passed: bool) -> Path | None:
        """Stop replaying; when recording and the test passed, write the cassette and return its path."""
        self._stack.close()
        if self.recorder is not None and passed and not self.check_only:
            return self.recorder.save(self.path)
        return None


def _open(request: pytest.FixtureRequest, path: str | Path, **options: Any) -> CassetteSession:
    config = request.config
    if options.get("allow_unused") is None:
        options["allow_unused"] = bool(config.getini("tanpuhui_allow_unused"))
    session = CassetteSession(resolve_cassette(config, path), recording=recording_settings(config), **options)
    request.node.stash.setdefault(_SESSIONS, []).append(session)
    return session


@pytest.fixture
def tanpuhui_recording(request: pytest.FixtureRequest) -> Recording:
    """Whether this run records cassettes (``--tanpuhui-record``) and from where (``--tanpuhui-record-url``)."""
    return recording_settings(request.config)


@pytest.fixture
def cassette(request: pytest.FixtureRequest) -> CassetteSession:
    """The cassette named by the test's ``@pytest.mark.cassette(path, ...)`` marker."""
    marker = request.node.get_closest_marker("cassette")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            f"{request.node.nodeid}: the cassette fixture needs @pytest.mark.cassette('path/to/cassette.json'); "
            "use the tanpuhui_cassette fixture to open cassettes by path instead"
        )
    return _open(request, marker.args[0], **marker.kwargs)


@pytest.fixture
def tanpuhui_cassette(request: pytest.FixtureRequest) -> Callable[..., CassetteSession]:
    """A factory: ``tanpuhui_cassette(path, *, base_url=None, allow_unused=None, ignore_query=(), ...)``."""

    def open_cassette(path: str | Path, **options: Any) -> CassetteSession:
        return _open(request, path, **options)

    return open_cassette


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: fail on cassette problems the test did not see; write recorded cassettes."""
    try:
        result = yield
    except BaseException as exc:
        sessions = item.stash.get(_SESSIONS, [])
        for session in sessions:
            for problem in session.problems():
                exc.add_note(f"tanpuhui: {problem}")
            if session.finish(passed=False) is None and session.recording:
                exc.add_note(f"tanpuhui: cassette {session.path} not written because the test failed")
        raise
    sessions = item.stash.get(_SESSIONS, [])
    problems = [p for s in sessions for p in s.problems()]
    for session in sessions:
        session.finish(passed=not problems)
    if problems:
        from .cassette import CassetteMismatch

        raise CassetteMismatch("\n".join(problems))
    return result


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # A test that errored in setup never reached pytest_runtest_call: stop its respx mocks all the same.
    for session in item.stash.get(_SESSIONS, []):
        session.finish(passed=False)
    item.stash[_SESSIONS] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep each phase's report on the item (the conformance harness's teardown asks whether the test failed)."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Swap the cassettes this session recorded into their folders, unless a test that recorded them failed."""
    found = session.config.stash.get(_STAGING, None)
    if found is not None:
        session.config.stash[_SUMMARY] = found.commit()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("tanpuhui cassettes")
        for line in lines:
            terminalreporter.write_line(line)
