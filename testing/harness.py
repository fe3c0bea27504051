"""The conformance suite's plumbing: plays a scenario through a real hub, from a cassette or against a live partner.

:class:`Harness` builds a fresh :class:`tanpuhui.hub.hub.Hub` per run (SQLite store in the test's temporary folder,
the plugin loaded like any other), feeds it the recorded exchanges (or the live partner, recorded and scrubbed when
``--tanpuhui-record`` is given, with faults injected), and reports each run as a :class:`Run`. The tests themselves
are in :mod:`tanpuhui.testing.conformance`, which re-exports these names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.drivers.pull import PullSummary
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.pipeline import ProcessedPage
from tanpuhui.hub.plugins import Plugins, load_plugins
from tanpuhui.hub.runtime import BoundStream
from tanpuhui.hub.store.base import Checkpoint, QuarantineEntry
from tanpuhui.sdk import HttpOptions, Pseudonymiser

from .cassette import Cassette, CassetteMismatch
from .faults import Fault, FaultInjector
from .hints import hint
from .plugin import call_failed, recording_settings, resolve_cassette, staging
from .recording import RecordingTransport
from .scrub import Scrubber, personal_fields
from .sleeps import SleepRecorder

if TYPE_CHECKING:
    from .conformance import AdapterConformance

__all__ = ["Harness", "LivePartner", "Run"]

PSEUDONYM_KEYS = "v1:" + base64.b64encode(bytes(range(32))).decode()
"""A fixed test key: the same raw item gives the same pseudonym, hence the same record bytes, on every run."""


@dataclass(frozen=True, slots=True)
class LivePartner:
    """Where the partner really is while recording (or running live): ``url``, or an in-process ``transport``.

    ``handle`` is whatever :meth:`AdapterConformance.settings` needs from it (a sandbox's credentials). ``remote``:
    the partner is the one at ``--tanpuhui-record-url`` (or at ``base_url``), not the suite's own sandbox, so its
    credentials come from the environment (:meth:`AdapterConformance.secret`).
    """

    url: str
    transport: httpx.AsyncBaseTransport | None = None
    handle: Any = None
    remote: bool = False


@dataclass
class Run:
    """What one pull run of the stream did, as the hub saw it."""

    summary: PullSummary
    records: list[bytes]
    """Record documents (JSON bytes) this run added to the outbox, in commit order."""
    quarantined: list[QuarantineEntry]
    """Quarantine entries this run added."""
    checkpoint: Checkpoint
    raw_items: list[dict[str, Any]]
    requests: list[str]
    """``METHOD URL`` of every request the adapter sent, retries included."""
    waits: list[float]
    """Retry waits the adapter asked for (recorded, not slept)."""

    @property
    def documents(self) -> list[dict[str, Any]]:
        """The records of :attr:`records`, parsed."""
        return [orjson.loads(body) for body in self.records]


class _RawItems:
    """A page observer keeping the raw items the hub processes (the personal-data check needs them)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def page_processed(self, stream: BoundStream, items: Sequence[Any], page: ProcessedPage) -> None:
        self.items.extend(items)


class _Log(httpx.AsyncBaseTransport):
    """Logs requests on their way to ``inner``; never closes it (one session serves several hubs in turn)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


def _as_env_refs(value: Any, env: dict[str, str]) -> Any:
    # HubConfig refuses literal secrets (as hub.toml must); hand every string over as an environment reference.
    if isinstance(value, Mapping):
        return {k: _as_env_refs(v, env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_env_refs(v, env) for v in value]
    if isinstance(value, str):
        name = f"TANPUHUI_CONFORMANCE_{len(env)}"
        env[name] = value
        return {"env": name}
    return value


class Harness:
    """Runs the suite's scenarios: replayed from cassettes, or live (and recorded) against a partner."""

    def __init__(self, suite: AdapterConformance, workdir: Path, config: pytest.Config) -> None:
        self.suite = suite
        self.workdir = workdir
        recording = recording_settings(config)
        self.config = config
        self.recording = recording.enabled and suite.cassette_dir is not None
        self.record_url = recording.url
        self.record_into = recording.into
        self.cassette_dir = resolve_cassette(config, suite.cassette_dir) if suite.cassette_dir is not None else None
        self.live = self.recording or self.cassette_dir is None
        self._partner_cm: AbstractContextManager[LivePartner | None] | None = None
        self._partner: LivePartner | None = None
        self._effective: LivePartner | None = None
        self._stores = 0
        self._plugins: Plugins | None = None
        self.written: list[Path] = []
        self._staged: list[tuple[Path, Path]] = []
        self._managed = False

    @property
    def adapter_name(self) -> str:
        """The name of the adapter under test."""
        return self.suite.adapter.name

    def plugins(self) -> Plugins:
        """The suite's plugin loaded like an installed one; AssertionError when it does not register the adapter."""
        if self._plugins is None:
            self._plugins = load_plugins([self.suite.plugin], entry_points=False)
            if self.adapter_name not in self._plugins.adapters:
                problems = "; ".join(self._plugins.problems) or "it registered none"
                raise AssertionError(
                    f"plugin {self.suite.plugin!r} did not register adapter {self.adapter_name!r}: {problems}"
                    + hint("plugin")
                )
        return self._plugins

    def new_store(self) -> Path:
        """A path for a new SQLite store in the test's folder."""
        self._stores += 1
        return self.workdir / f"hub-{self._stores}.db"

    def partner(self) -> LivePartner | None:
        """The live partner (opened on first use, closed with the harness)."""
        if self._partner_cm is None:
            self._partner_cm = self.suite.sandbox()
            self._partner = self._partner_cm.__enter__()
            self._effective = self._partner
            if self.record_url:
                handle = self._partner.handle if self._partner else None
                self._effective = LivePartner(self.record_url, None, handle, remote=True)
        return self._effective

    def close(self) -> None:
        """Close the live partner, if one was opened. A harness used outside the suite's fixture (no test outcome
        to wait for) puts what it recorded in place now."""
        if self._partner_cm is not None:
            self._partner_cm.__exit__(None, None, None)
            self._partner_cm = None
        if not self._managed:
            for staged, target in self._staged:
                if staged.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, target)
            self._staged.clear()

    # -- scenarios -----------------------------------------------------------------------------------------

    def play(self, name: str, *, runs: int = 1, faults: Sequence[Fault] = (), store: Path | None = None) -> list[Run]:
        """Play scenario ``name`` (``runs`` pull runs of fresh hubs on one store; faults only in the first)."""
        try:
            return asyncio.run(self._play(name, runs, faults, store or self.new_store()))
        except CassetteMismatch as exc:  # a request the cassette does not hold: say what to do about it
            raise CassetteMismatch(str(exc) + hint("cassette_mismatch")) from None

    async def _play(self, name: str, runs: int, faults: Sequence[Fault], store: Path) -> list[Run]:
        out: list[Run] = []
        async with self._session(name, faults) as (transport, injector, verify):
            for number in range(runs):
                if number == 1 and injector is not None:
                    injector.clear()
                out.append(await self._run(transport, store))
            verify()
        return out

    @contextlib.asynccontextmanager
    async def _session(
        self, name: str, faults: Sequence[Fault]
    ) -> AsyncIterator[tuple[_Log, FaultInjector | None, Any]]:
        if not self.live:
            assert self.cassette_dir is not None
            cassette = Cassette.load(self.cassette_dir / f"{name}.json")
            log = _Log(cassette.transport())

            def verify() -> None:
                problems = cassette.problems(self.suite.allow_unused)
                if problems:
                    raise CassetteMismatch("\n".join(problems))

            yield log, None, verify
            return
        partner = self.partner()
        base = self.suite.base_url
        live_url = partner.url if partner is not None else base
        inner: httpx.AsyncBaseTransport = (
            partner.transport if partner is not None and partner.transport is not None else httpx.AsyncHTTPTransport()
        )
        injector = FaultInjector(inner, faults)
        schemas = [self.suite.adapter.schemas[n] for n in self.suite.adapter.schemas]
        recorder = RecordingTransport(injector, rewrite={base: live_url}, scrubber=Scrubber(personal_fields(schemas)))
        log = _Log(recorder)

        def save() -> None:
            if self.recording and self.cassette_dir is not None:
                about = f"{self.adapter_name}:{self.suite.stream} conformance scenario {name} (tanpuhui.testing)"
                target = self.cassette_dir / f"{name}.json"
                recorder.save(self._destination(target, name), about)
                self.written.append(target)

        try:
            yield log, injector, save
        finally:
            await inner.aclose()

    def _destination(self, target: Path, scenario: str) -> Path:
        """Where a recorded cassette meant for ``target`` is written: staged until the session passes, or into the
        ``--tanpuhui-record-into`` folder (listed in its manifest.jsonl)."""
        if self.record_into is None:
            staged = staging(self.config).path(target)
            self._staged.append((staged, target))
            return staged
        recorded = self.record_into / self.adapter_name / self.suite.stream / f"{scenario}.json"
        line = {
            "adapter": self.adapter_name,
            "stream": self.suite.stream,
            "scenario": scenario,
            "recorded": str(recorded),
            "cassette": str(target.resolve()),
        }
        self.record_into.mkdir(parents=True, exist_ok=True)
        with (self.record_into / "manifest.jsonl").open("ab") as manifest:
            manifest.write(orjson.dumps(line) + b"\n")
        return recorded

    def finish(self, item: pytest.Item) -> None:
        """Close the partner at the end of test ``item``; when it recorded and failed, its cassette folder keeps its
        old cassettes (the session swaps the others in when it ends)."""
        self._managed = True
        self.close()
        if self.recording and self.record_into is None and self.cassette_dir is not None and call_failed(item):
            staging(self.config).fail(self.cassette_dir, item.nodeid)

    async def _run(self, transport: _Log, store: Path) -> Run:
        env: dict[str, str] = {}
        partner = self._effective if self.live else None
        if self.live and partner is None:  # no sandbox: the partner at base_url (or the record URL) itself
            partner = LivePartner(self.record_url or self.suite.base_url, remote=True)
        table = _as_env_refs(self.suite.settings(self.suite.base_url, partner), env)
        config = HubConfig.from_dict(
            {"hub": {"store": str(store)}, "adapters": {self.adapter_name: table}},
            source=f"conformance suite {type(self.suite).__name__}",
            environ=env,
        )
        sleep = SleepRecorder()

        raw = _RawItems()
        hub = Hub(
            config,
            plugins=self.plugins(),
            pseudonymiser=Pseudonymiser.parse(PSEUDONYM_KEYS),
            http=HttpOptions(transport=transport, sleep=sleep),
            observers=[raw],
        )
        first_request = len(transport.requests)
        try:
            seq = hub.store.outbox_max_seq()
            quarantined = {e.id for e in hub.store.quarantine_list(None, "open", 1_000_000)}
            (summary,) = await hub.pull(self.adapter_name, self.suite.stream)
            rows = hub.store.read_outbox(seq, 1_000_000)
            entries = [e for e in hub.store.quarantine_list(None, "open", 1_000_000) if e.id not in quarantined]
            checkpoint = hub.store.load_checkpoint(self.adapter_name, self.suite.stream)
        finally:
            await hub.aclose()
        return Run(
            summary=summary,
            records=[r.body for r in rows if r.kind != "voided"],  # a void is not a record
            quarantined=entries,
            checkpoint=checkpoint,
            raw_items=raw.items,
            requests=transport.requests[first_request:],
            waits=sleep.waits,
        )

    # -- the standard scenarios ------------------------------------------------------------------------------

    def _page_fault(self, page: int, status: int, times: int | None = 1, retry_after: int | None = None) -> Fault:
        return Fault(self.suite.page_path, page=page, status=status, times=times, retry_after=retry_after)

    def happy(self, store: Path | None = None) -> Run:
        """Scenario ``two_pages``: one uninterrupted run (on ``store``, a fresh one by default)."""
        (run,) = self.play("two_pages", store=store)
        return run

    def resume(self) -> tuple[Run, Run]:
        """Scenario ``resume_after_failure``: run 1 fails at page ``fail_at_page`` (503 until the client gives up),
        run 2 resumes on the same store.
        """
        first, second = self.play(
            "resume_after_failure", runs=2, faults=[self._page_fault(self.suite.fail_at_page, 503, times=None)]
        )
        return first, second

    def rate_limited(self) -> Run:
        """Scenario ``rate_limited``: page 1 answered 429 with ``Retry-After`` once."""
        (run,) = self.play("rate_limited", faults=[self._page_fault(1, 429, retry_after=self.suite.retry_after)])
        return run

    def server_error(self) -> Run:
        """Scenario ``server_error``: page ``fail_at_page`` answered 503 once."""
        (run,) = self.play("server_error", faults=[self._page_fault(self.suite.fail_at_page, 503)])
        return run

    def reauth(self) -> Run:
        """Scenario ``reauth_401``: page ``fail_at_page`` answered 401 once (a token revoked early)."""
        (run,) = self.play("reauth_401", faults=[self._page_fault(self.suite.fail_at_page, 401)])
        return run

    def empty_after_happy(self) -> tuple[Run, Run]:
        """Scenario ``empty_page`` after ``two_pages`` on the same store: the partner has nothing new."""
        store = self.new_store()
        first = self.happy(store)
        (second,) = self.play("empty_page", store=store)
        return first, second

    def page_requests(self, run: Run) -> list[str]:
        """The run's requests for the stream's pages (those whose path ends with ``page_path``), retries included."""
        path = self.suite.page_path
        return [r for r in run.requests if httpx.URL(r.split(" ", 1)[1]).path.endswith(path)]
