"""The crash test (Kafka Connect's bounce test, Jepsen's set check) with the hub as real, hard-killed processes.

Partners, in this process, on loopback:

- a sandbox transit operator serves a dataset whose items are numbered by their position (the sequence number);
  each bus tap and each metro tap-out ends one journey, which the hub must credit exactly once. It is published a
  slice per round, as an operator clears transactions during the day;
- with ``serve``, a YRD platform pushes its records as signed webhooks (:class:`Pusher`) to the sidecar, retrying
  each one (same webhook id, fresh signature) until it gets a 2xx, as Standard Webhooks senders do.

Each round runs the hub as real processes on one SQLite store and SIGKILLs them at random points:

- a CLI round: ``tanpuhui pull`` and ``tanpuhui forward`` (together or alone), killed during start-up, after the
  k-th committed page (mid-pull, often mid-transaction of the next page), or after the consumer has seen k more
  requests (mid-forward, often between send and mark);
- with ``run``, a ``tanpuhui run`` round instead of half the CLI rounds (pull and forward in one process, pages
  forwarded from memory as they commit), killed the same ways: at start-up, after k pages, after k requests;
- with ``workers`` (and ``partitions``), ``pull`` and ``run`` fork that many pull workers over the partitions of
  the feed; a kill takes the whole process group at once, or the parent alone (its workers then get SIGTERM);
- a sidecar round (``serve``): ``tanpuhui serve`` (scheduled pulls, webhooks, forwarding in one process) killed
  during start-up, after k more acknowledged webhooks (often mid-commit of the next), or after k consumer requests;
  now and then stopped with SIGTERM instead.

A real loopback consumer (in this process) verifies signatures and appends every new event to a JSONL file. After
the last round everything is published and pushed, the hub finishes, and the check reads the consumer's file:

- lost: sequence numbers (journeys, pushed records) that never arrived (must be 0);
- unacknowledged-but-lost is not a thing here: every webhook is retried until acknowledged, and
  ``acked_not_delivered`` counts records of acknowledged webhooks that never arrived (must be 0);
- unexpected: events that match nothing the partners sent (must be 0);
- duplicated: a journey or pushed record that arrived under two different event ids, i.e. a doubled record
  (must be 0);
- redelivered: the same event id sent again after a kill between send and mark (allowed: at-least-once; the
  consumer drops them by event id);
- the audit log's hash chain is intact and every batch's digest matches its outbox rows (kills mid-commit
  included: an entry is committed with its batch or not at all);
- the store passes ``PRAGMA integrity_check``, its outbox holds exactly the expected records, nothing is in
  quarantine (a lost tap-in would show up there as "tap-out without tap-in") and the sink position is at the end.

Used by ``tests/reliability/test_crash.py`` (quick) and ``python -m tests.reliability.long_run`` (long).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from tanpuhui.adapters.transit_card.sandbox import BAD_KINDS, TransitSandbox
from tanpuhui.adapters.yrd_scenarios.sandbox import BAD_KINDS as YRD_BAD_KINDS
from tanpuhui.adapters.yrd_scenarios.sandbox import WITHDRAWN_KINDS, Dataset, sandbox_recognition
from tanpuhui.hub.audit import verify_log
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.demo import to_toml
from tanpuhui.hub.store.sqlite import SQLiteStore
from tanpuhui.sdk import WebhookSigner
from tanpuhui.testing.loopback import free_port

__all__ = [
    "CrashConfig",
    "CrashReport",
    "HubProcess",
    "Pusher",
    "SetCheck",
    "run_crash_test",
    "set_check",
    "tanpuhui_exe",
]

CONSUMER_SECRET = "whsec_" + base64.b64encode(b"tanpuhui-crash-test-consumer-key!").decode()
PUSH_SECRET = "whsec_" + base64.b64encode(b"tanpuhui-crash-test-yrd-pushes-key").decode()
PSEUDONYM_KEYS = "v1:" + base64.b64encode(bytes(range(7, 39))).decode()
_ENDS_JOURNEY = frozenset({"bus", "metro_out"})
LEASE_TTL = 2.0
"""``[hub] lease_ttl``: a killed process's pull or sink lease blocks the others this long (liveness, not safety)."""
_EXIT_LEASED = 75
"""``tanpuhui pull``'s status for a stream skipped because another process (here: a killed one) holds its lease."""
_KILLS_PER_ROUND = 1.2
"""About how many processes a round kills (both run in 60 % of CLI rounds; a plan lets one finish now and then)."""


def tanpuhui_exe() -> str:
    """The ``tanpuhui`` console script of the running interpreter's environment."""
    return str(Path(sys.executable).parent / "tanpuhui")


@dataclass
class CrashConfig:
    """One crash run: rounds until ``kills`` processes were killed (at most ``3 * kills`` rounds) over a dataset of
    ``trips`` journeys (about 1.6 transactions each), published in slices as the rounds go; with ``serve``, half
    the rounds run the sidecar instead of the CLI, and ``pushes`` YRD records are pushed to it in webhooks of
    ``push_batch``."""

    workdir: Path
    trips: int = 2000
    kills: int = 6
    seed: int = 1
    page_size: int = 50
    batch_size: int = 100
    synchronous: str = "FULL"
    days: int = 1
    serve: bool = False
    run: bool = False
    """Half the CLI rounds run ``tanpuhui run`` (pull and forward in one process) instead; the final run too."""
    workers: int = 1
    """``pull`` and ``run`` with ``--workers N``: a kill then takes the whole process group (the parent and its
    workers, all SIGKILLed at once) or, one time in two, the parent alone (its workers get SIGTERM)."""
    partitions: int = 1
    """``partitions = {transactions = N}``: the transit feed pulled as N streams (each with its own cursor)."""
    pushes: int = 0
    push_batch: int = 50
    round_timeout: float = 120.0
    final_timeout: float = 600.0


@dataclass
class CrashReport:
    """What a crash run found; :attr:`ok` when nothing was lost or doubled and the store is sound."""

    expected: int = 0
    delivered: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    redelivered: int = 0
    webhooks_acked: int = 0
    acked_not_delivered: list[str] = field(default_factory=list)
    webhook_attempts: int = 0
    outbox_rows: int = 0
    quarantined: int = 0
    lagging_sinks: dict[str, int] = field(default_factory=dict)
    integrity: str = ""
    audit_entries: int = 0
    audit_problems: list[str] = field(default_factory=list)
    """The audit log's hash chain (and every batch's record digest) checked after the run: must be intact."""
    kills: Counter[str] = field(default_factory=Counter)
    """``pull:startup``, ``pull:after-page``, ``forward:after-request``, ``serve:after-ack`` ... -> how many."""
    completed: Counter[str] = field(default_factory=Counter)
    """Processes that finished (or were stopped with SIGTERM) before a kill came."""
    failures: list[str] = field(default_factory=list)
    """Processes that exited non-zero on their own (stderr tail), harness timeouts."""
    rounds: int = 0
    seconds: float = 0.0

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.unexpected
            and not self.duplicated
            and not self.acked_not_delivered
            and not self.failures
            and self.integrity == "ok"
            and not self.audit_problems
            and self.outbox_rows == self.expected
            and self.quarantined == 0
            and not self.lagging_sinks
        )

    def summary(self) -> str:
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items())) or "none"
        pushes = (
            f"webhooks acknowledged {self.webhooks_acked} ({self.webhook_attempts} attempts), "
            f"acknowledged but not delivered {len(self.acked_not_delivered)}; "
            if self.webhooks_acked
            else ""
        )
        return (
            f"expected {self.expected}, delivered {self.delivered}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, redelivered {self.redelivered} "
            f"(at-least-once repeats, dropped by event id); {pushes}kills {self.total_kills} ({kills}); "
            f"{self.rounds} rounds, finished before the kill: {sum(self.completed.values())}; outbox "
            f"{self.outbox_rows}, quarantine {self.quarantined}, integrity {self.integrity}, audit log "
            f"{'intact' if not self.audit_problems else 'BROKEN'} ({self.audit_entries} entries), failures "
            f"{len(self.failures)}; {self.seconds:.1f} s"
        )


class HubProcess:
    """A ``tanpuhui`` command as a child process; counts the pages it reports committed on stderr."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path, *, group_kill: bool = False) -> None:
        self.args = args
        self.started = time.monotonic()
        self.pages = 0
        self.group_kill = group_kill
        """:meth:`kill` SIGKILLs the process group (the command and the workers it forked), not only the command."""
        self._tail: list[str] = []
        self._log: IO[bytes] = log.open("ab")
        self.proc = subprocess.Popen(
            [tanpuhui_exe(), *args],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=group_kill,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            text = line.decode("utf-8", "replace")
            if ": page of " in text:
                self.pages += 1
            self._tail = [*self._tail[-20:], text.rstrip()]

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL; True when the process was still running (a real kill)."""
        if self.proc.poll() is not None:
            return False
        if self.group_kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return True

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def close(self) -> None:
        self.kill()
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._log.close()

    def tail(self) -> str:
        return "\n".join(self._tail[-8:])


class Pusher:
    """A partner pushing signed webhooks to the sidecar, in order, each retried until it gets a 2xx.

    Webhook ``n`` carries ``items[n * batch : (n + 1) * batch]`` under the id ``msg_crash_<n>``; each attempt is
    signed anew (a fresh timestamp, the same id and body), as Standard Webhooks senders retry. Only the first
    ``visible`` items are pushed; :meth:`publish` makes more visible. ``acked`` maps each acknowledged webhook to
    its records (``<platform>:<record_id>``): the set the hub promised to keep.
    """

    def __init__(self, url: str, items: Sequence[Mapping[str, Any]], secret: str, batch: int) -> None:
        self.url = url
        self.items = items
        self.batch = batch
        self.visible = 0
        self.acked: dict[int, list[str]] = {}
        self.attempts = 0
        self.statuses: Counter[str] = Counter()
        self._signer = WebhookSigner(secret)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crash-pusher", daemon=True)

    @property
    def webhooks(self) -> int:
        return -(-len(self.items) // self.batch)

    @property
    def done(self) -> bool:
        return len(self.acked) == self.webhooks

    def publish(self, count: int | None = None) -> None:
        self.visible = len(self.items) if count is None else min(len(self.items), self.visible + count)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        number = 0
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set() and number < self.webhooks:
                end = min((number + 1) * self.batch, len(self.items))
                if end > self.visible:
                    self._stop.wait(0.02)
                    continue
                chunk = self.items[number * self.batch : end]
                body = b'{"items":[' + b",".join(orjson.dumps(dict(item)) for item in chunk) + b"]}"
                self.attempts += 1
                headers = {**self._signer.headers(f"msg_crash_{number:06d}", body), "content-type": "application/json"}
                try:
                    response = client.post(self.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    self.statuses[type(exc).__name__] += 1
                    self._stop.wait(0.05)
                    continue
                self.statuses[str(response.status_code)] += 1
                if 200 <= response.status_code < 300:
                    self.acked[number] = [f"{item['platform']}:{item['record_id']}" for item in chunk]
                    number += 1
                else:
                    self._stop.wait(0.05)


@dataclass
class _Plan:
    """When to kill one process: ``kind`` startup (after ``delay`` s), page (after ``count`` pages), request
    (after ``count`` more consumer requests) or ack (after ``count`` more acknowledged webhooks), then ``jitter``
    s more; ``none`` lets it finish (the sidecar: SIGTERM after ``delay`` s)."""

    kind: str
    count: int = 0
    delay: float = 0.0
    jitter: float = 0.0

    def due(self, proc: HubProcess, requests_seen: int, acks_seen: int) -> bool:
        if self.kind == "none":
            return False
        if self.kind == "startup":
            return time.monotonic() - proc.started >= self.delay
        if self.kind == "page":
            return proc.pages >= self.count
        if self.kind == "ack":
            return acks_seen >= self.count
        return requests_seen >= self.count


_SERVE_MAX_LIFE = 5.0
"""A sidecar round ends by this age (seconds) even when its plan's event never comes."""

_LABELS = {"startup": "startup", "page": "after-page", "request": "after-request", "ack": "after-ack"}


def _plan_cli(rng: random.Random, pages: int, page_below: float) -> _Plan:
    """When a CLI process is killed: 15 % while it starts, 10 % never, else after a page for a draw below
    ``page_below`` (``pull``: always, 1.0; ``forward``: never, 0.25; ``run``: 0.6), after a sink request above."""
    draw = rng.random()
    if draw < 0.15:
        return _Plan("startup", delay=rng.uniform(0.05, 1.5))
    if draw < 0.25:
        return _Plan("none")
    if draw < page_below:
        return _Plan("page", count=rng.randint(0, max(0, pages - 1)), jitter=rng.uniform(0.0, 0.03))
    return _Plan("request", count=rng.randint(1, 4), jitter=rng.uniform(0.0, 0.01))


def _plan_serve(rng: random.Random, pushing: bool) -> _Plan:
    draw = rng.random()
    if draw < 0.15:
        return _Plan("startup", delay=rng.uniform(0.2, 2.5))
    if draw < 0.25:
        return _Plan("none", delay=rng.uniform(2.0, 4.0))
    if pushing and draw < 0.65:
        return _Plan("ack", count=rng.randint(1, 6), jitter=rng.uniform(0.0, 0.02))
    return _Plan("request", count=rng.randint(1, 4), jitter=rng.uniform(0.0, 0.01))


def _env(sandbox: TransitSandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANPUHUI__")}
    env.update(
        {
            "TANPUHUI_PSEUDONYM_KEYS": PSEUDONYM_KEYS,
            "CRASH_TRANSIT_SECRET": sandbox.client_secret,
            "CRASH_CONSUMER_SECRET": CONSUMER_SECRET,
            "CRASH_PUSH_SECRET": PUSH_SECRET,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def write_config(cfg: CrashConfig, sandbox: TransitSandbox, consumer: ConsumerServer) -> Path:
    """The hub.toml of the run (fast retries and schedules: partners and consumer are on loopback)."""
    document: dict[str, Any] = {
        "hub": {
            "store": "hub.db",
            "synchronous": cfg.synchronous,
            "pseudonym_keys": {"env": "TANPUHUI_PSEUDONYM_KEYS"},
            "lease_ttl": LEASE_TTL,
        },
        "forwarder": {"batch_size": cfg.batch_size, "attempts": 5, "initial_backoff": 0.05, "max_backoff": 1.0},
        "adapters": {
            "transit_card": {
                "base_url": sandbox.url,
                "client_id": sandbox.client_id,
                "client_secret": {"env": "CRASH_TRANSIT_SECRET"},
                "page_size": cfg.page_size,
                "retry_initial_backoff": 0.05,
                "retry_max_backoff": 1.0,
                **({"partitions": {"transactions": cfg.partitions}} if cfg.partitions > 1 else {}),
            }
        },
        "sinks": {"platform": {"type": "http", "url": consumer.url, "secret": {"env": "CRASH_CONSUMER_SECRET"}}},
    }
    if cfg.serve:
        document["adapters"]["yrd_scenarios"] = {
            **sandbox_recognition(),
            "webhook_secrets": [{"env": "CRASH_PUSH_SECRET"}],
        }
        document["server"] = {
            "shutdown_timeout": "3s",
            "forward_idle": "200ms",
            "forward_linger": "20ms",
            "forward_error_pause": "1s",
            "access_log": False,
            "log_level": "warning",
            "schedules": {"transit_card": {"interval": "500ms", "jitter": 0.0, "max_backoff": "2s"}},
        }
    path = cfg.workdir / "hub.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


@dataclass
class _Run:
    cfg: CrashConfig
    rng: random.Random
    config: str
    env: dict[str, str]
    log_path: Path
    consumer: ConsumerServer
    report: CrashReport
    pusher: Pusher | None
    port: int

    def acks(self) -> int:
        return len(self.pusher.acked) if self.pusher is not None else 0

    @property
    def workers(self) -> list[str]:
        """``--workers N`` for pull and run, when the run uses several."""
        return ["--workers", str(self.cfg.workers)] if self.cfg.workers > 1 else []

    def hub_process(self, args: list[str]) -> HubProcess:
        """``tanpuhui ARGS`` for a round: with workers, killed as a process group one time in two."""
        return HubProcess(args, self.env, self.log_path, group_kill=bool(self.workers) and self.rng.random() < 0.5)

    def requests(self) -> int:
        return int(self.consumer.stats()["requests"])


def run_crash_test(cfg: CrashConfig, log: Callable[[str], None] = lambda _: None) -> CrashReport:
    """Run the rounds, finish, check; see the module docstring."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    report = CrashReport()
    started = time.monotonic()
    pushed: list[dict[str, Any]] = []
    if cfg.serve and cfg.pushes:
        pushed = Dataset(
            cfg.pushes,
            cfg.seed,
            days=cfg.days,
            bad={k: 0 for k in YRD_BAD_KINDS},
            withdrawn={k: 0 for k in WITHDRAWN_KINDS},
        ).items
    with (
        TransitSandbox(
            trips=cfg.trips,
            seed=cfg.seed,
            days=cfg.days,
            bad={kind: 0 for kind in BAD_KINDS},
            visible=0,
            page_size_cap=max(1000, cfg.page_size),
        ) as sandbox,
        ConsumerServer(CONSUMER_SECRET, jsonl_path=cfg.workdir / "consumer.jsonl") as consumer,
    ):
        port = free_port()
        pusher = None
        if pushed:
            url = f"http://127.0.0.1:{port}/v1/webhooks/yrd_scenarios/records_push"
            pusher = Pusher(url, pushed, PUSH_SECRET, cfg.push_batch).start()
        run = _Run(
            cfg,
            random.Random(cfg.seed),
            str(write_config(cfg, sandbox, consumer)),
            _env(sandbox),
            cfg.workdir / "hub-stderr.log",
            consumer,
            report,
            pusher,
            port,
        )
        try:
            _rounds(run, sandbox, log)
            time.sleep(LEASE_TTL + 0.5)  # leases of killed processes expire: the final runs are not skipped
            sandbox.publish()
            if pusher is not None:
                pusher.publish()
                _finish_pushes(run)
            final = (
                [["run", "--config", run.config, *run.workers]]
                if cfg.run
                else [
                    ["pull", "transit_card", "--config", run.config, *run.workers],
                    ["forward", "--config", run.config],
                ]
            )
            for args in final:
                proc = HubProcess(args, run.env, run.log_path, group_kill=bool(run.workers))
                try:
                    code = proc.wait(cfg.final_timeout)
                    if code != 0:
                        report.failures.append(f"final {args[0]} exited {code}: {proc.tail()}")
                finally:
                    proc.close()
        finally:
            if pusher is not None:
                pusher.stop()
        report.redelivered = int(consumer.stats()["duplicates"])
        consumer.stop()
        _check(cfg, sandbox, pushed, pusher, report)
    report.seconds = time.monotonic() - started
    return report


def _rounds(run: _Run, sandbox: TransitSandbox, log: Callable[[str], None]) -> None:
    cfg, report, pusher = run.cfg, run.report, run.pusher
    total = len(sandbox.dataset.items)
    rounds = 0
    while report.total_kills < cfg.kills and rounds < 3 * cfg.kills:
        # Spread the datasets over the rounds still expected, from the kill rate so far.
        rate = max(0.5, report.total_kills / rounds) if rounds else _KILLS_PER_ROUND
        left = max(1.0, (cfg.kills - report.total_kills) / rate)
        slice_size = max(1, int((total - sandbox.visible) / (left + 1)))
        rounds += 1
        sandbox.publish(slice_size)
        if pusher is not None:
            pusher.publish(max(1, int((len(pusher.items) - pusher.visible) / (left + 1))))
        if cfg.serve and run.rng.random() < 0.5:
            _serve_round(run)
        elif cfg.run and run.rng.random() < 0.5:
            _run_round(run, max(1, -(-slice_size // cfg.page_size)))
        else:
            _cli_round(run, max(1, -(-slice_size // cfg.page_size)))
        stats = run.consumer.stats()
        pushes = f", webhooks acknowledged {len(pusher.acked)}/{pusher.webhooks}" if pusher is not None else ""
        log(
            f"round {rounds}: published {sandbox.visible}/{total}{pushes}, kills "
            f"{report.total_kills}/{cfg.kills}, consumer has {stats['unique']} events "
            f"({stats['duplicates']} redelivered)"
        )
    report.rounds = rounds


def _watch(run: _Run, procs: list[tuple[str, HubProcess, _Plan, int, int]]) -> None:
    """Kill each process when its plan says so; wait for all to end (bounded)."""
    report = run.report
    deadline = time.monotonic() + run.cfg.round_timeout
    pending = list(procs)
    while pending:
        if time.monotonic() > deadline:
            report.failures.append(
                f"a round did not finish within {run.cfg.round_timeout} s: {[p[0] for p in pending]}"
            )
            return
        requests, acks = run.requests(), run.acks()
        for item in list(pending):
            name, proc, plan, base_requests, base_acks = item
            if not proc.running:
                pending.remove(item)
                code = proc.proc.returncode
                if name in ("pull", "run") and code == _EXIT_LEASED:
                    report.completed[f"{name}:skipped, leased by a killed process"] += 1  # documented: try again later
                    continue
                report.completed[name] += 1
                if code != 0:
                    report.failures.append(f"{name} exited {code} on its own: {proc.tail()}")
                continue
            age = time.monotonic() - proc.started
            if name == "serve" and plan.kind != "none" and age >= _SERVE_MAX_LIFE:
                # Nothing came that the plan waits for (no webhook or delivery left to do): kill it anyway.
                proc.kill()
                report.kills["serve:timed"] += 1
                pending.remove(item)
                continue
            if plan.kind == "none" and name == "serve" and age >= plan.delay:
                code = proc.terminate(30)
                pending.remove(item)
                report.completed["serve:sigterm"] += 1
                if code != 0:
                    report.failures.append(f"serve exited {code} after SIGTERM: {proc.tail()}")
                continue
            if plan.due(proc, requests - base_requests, acks - base_acks):
                if plan.jitter:
                    time.sleep(plan.jitter)
                if proc.kill():
                    report.kills[f"{name}:{_LABELS[plan.kind]}"] += 1
                else:
                    report.completed[name] += 1
                pending.remove(item)
        time.sleep(0.002)


def _cli_round(run: _Run, pages: int) -> None:
    """Start pull and forward together (sometimes only one), kill each as planned, wait for both to end."""
    which = run.rng.choices(["both", "pull", "forward"], weights=[6, 2, 2])[0]
    procs: list[tuple[str, HubProcess, _Plan, int, int]] = []
    requests = run.requests()
    try:
        if which in ("both", "pull"):
            proc = run.hub_process(["pull", "transit_card", "--config", run.config, *run.workers])
            procs.append(("pull", proc, _plan_cli(run.rng, pages, page_below=1.0), requests, 0))
        if which in ("both", "forward"):
            proc = HubProcess(["forward", "--config", run.config], run.env, run.log_path)
            procs.append(("forward", proc, _plan_cli(run.rng, pages, page_below=0.25), requests, 0))
        _watch(run, procs)
    finally:
        for _, proc, _, _, _ in procs:
            proc.close()


def _run_round(run: _Run, pages: int) -> None:
    """``tanpuhui run`` (pull and forward in one process): kill it as planned, mid-pull or mid-forward."""
    proc = run.hub_process(["run", "--config", run.config, *run.workers])
    try:
        _watch(run, [("run", proc, _plan_cli(run.rng, pages, page_below=0.6), run.requests(), 0)])
    finally:
        proc.close()


def _serve_round(run: _Run) -> None:
    """Start the sidecar; kill it as planned (or stop it with SIGTERM)."""
    plan = _plan_serve(run.rng, run.pusher is not None and not run.pusher.done)
    proc = HubProcess(["serve", "--config", run.config, "--port", str(run.port)], run.env, run.log_path)
    try:
        _watch(run, [("serve", proc, plan, run.requests(), run.acks())])
    finally:
        proc.close()


def _finish_pushes(run: _Run) -> None:
    """Run the sidecar (no kills) until every webhook is acknowledged, then stop it with SIGTERM."""
    assert run.pusher is not None
    proc = HubProcess(["serve", "--config", run.config, "--port", str(run.port)], run.env, run.log_path)
    try:
        deadline = time.monotonic() + run.cfg.final_timeout
        while not run.pusher.done and proc.running and time.monotonic() < deadline:
            time.sleep(0.05)
        if not run.pusher.done:
            run.report.failures.append(
                f"only {len(run.pusher.acked)}/{run.pusher.webhooks} webhooks acknowledged "
                f"(statuses {dict(run.pusher.statuses)}): {proc.tail()}"
            )
        code = proc.terminate(30)
        if code != 0:
            run.report.failures.append(f"final serve exited {code} after SIGTERM: {proc.tail()}")
    finally:
        proc.close()


@dataclass
class SetCheck:
    """Jepsen's set check: what arrived against what the partners sent."""

    expected: int
    delivered: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]


def set_check(
    items: Sequence[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    *,
    pushed: Sequence[Mapping[str, Any]] = (),
) -> SetCheck:
    """Check delivered CloudEvents against the partners' items.

    A transit journey is named by its sequence number: the position in ``items`` of the transaction that ends it
    (a bus tap, a metro tap-out), which the record names last in ``source.partner_record_id``
    (``"<tap-in>+<tap-out>"`` for metro). A pushed YRD record is named ``y:<platform>:<record_id>``, as its
    ``partner_record_id`` is ``<platform>:<record_id>``.
    ``events`` are unique by event id (the consumer dedups); a journey under two ids is a doubled record.
    """
    position = {item["txn_id"]: i for i, item in enumerate(items)}
    expected = {str(i) for i, item in enumerate(items) if item.get("deal_type") in _ENDS_JOURNEY}
    expected.update(f"y:{item['platform']}:{item['record_id']}" for item in pushed)
    ids_by_key: dict[str, set[str]] = {}
    unexpected: list[str] = []
    for event in events:
        source = event["data"]["source"]
        partner_id = str(source["partner_record_id"])
        if source.get("adapter") == "yrd_scenarios":
            key: str | None = f"y:{partner_id}"
        else:
            seq = position.get(partner_id.rpartition("+")[2])
            key = str(seq) if seq is not None else None
        if key is None or key not in expected:
            unexpected.append(partner_id)
            continue
        ids_by_key.setdefault(key, set()).add(str(event["id"]))
    return SetCheck(
        expected=len(expected),
        delivered=len(ids_by_key),
        lost=sorted(expected - set(ids_by_key), key=_order),
        duplicated=sorted((k for k, ids in ids_by_key.items() if len(ids) > 1), key=_order),
        unexpected=unexpected,
    )


def _order(key: str) -> tuple[int, str]:
    return (0, f"{int(key):012d}") if key.isdigit() else (1, key)


def _check(
    cfg: CrashConfig,
    sandbox: TransitSandbox,
    pushed: Sequence[Mapping[str, Any]],
    pusher: Pusher | None,
    report: CrashReport,
) -> None:
    path = cfg.workdir / "consumer.jsonl"
    lines = path.read_bytes().splitlines() if path.exists() else []
    found = set_check(sandbox.dataset.items, (orjson.loads(line) for line in lines), pushed=pushed)
    report.expected, report.delivered = found.expected, found.delivered
    report.lost, report.duplicated, report.unexpected = found.lost, found.duplicated, found.unexpected
    if pusher is not None:
        lost = set(found.lost)
        report.webhooks_acked = len(pusher.acked)
        report.webhook_attempts = pusher.attempts
        report.acked_not_delivered = [key for keys in pusher.acked.values() for key in keys if f"y:{key}" in lost]
    conn = sqlite3.connect(cfg.workdir / "hub.db")
    try:
        report.integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        report.outbox_rows = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        report.quarantined = int(conn.execute("SELECT count(*) FROM quarantine").fetchone()[0])
        top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])
        positions = dict(conn.execute("SELECT sink, seq FROM sink_positions").fetchall())
    finally:
        conn.close()
    position = int(positions.get("platform", 0))
    if position != top:
        report.lagging_sinks["platform"] = top - position
    store = SQLiteStore(cfg.workdir / "hub.db")
    try:
        audit = verify_log(store, records=True)
    finally:
        store.close()
    report.audit_entries, report.audit_problems = audit.entries, audit.problems
