"""What the bundled adapters' ``tests/<adapter>/record_cassettes.py`` scripts share: where each writes its cassettes
and the table of its scenarios (a sandbox, the faults queued on it, what runs against it and with which options).

The scripts run as ``.venv/bin/python tests/<adapter>/record_cassettes.py``, so they put ``tests/`` on ``sys.path``
themselves before importing this module (pytest puts it there for the tests that import them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from tanpuhui.testing.sandbox.recorder import SandboxRecorder, SandboxRecording

CASSETTES = Path(__file__).parent / "cassettes"
"""The recorded cassettes, a folder per adapter."""

S = TypeVar("S")
Run = Callable[..., Awaitable[Any]]
"""A script's pull run: ``run(sandbox, transport, cursor=None, after_page=None, **options)``, with a fresh adapter
(as a fresh hub process would); it gives the last cursor."""


def recording(adapter: str, base_url: str, **options: Any) -> SandboxRecording:
    """The recording of ``tests/<adapter>/record_cassettes.py``: cassettes go to ``tests/cassettes/<adapter>``.

    ``options`` are the other fields of :class:`SandboxRecording`; ``seed`` defaults to the seed of the sandbox's
    ``dataset``.
    """
    options.setdefault("seed", lambda sandbox: sandbox.dataset.seed)
    return SandboxRecording(CASSETTES / adapter, base_url, f"tests/{adapter}/record_cassettes.py", **options)


class Fault:
    """``sandbox.fail_next(status, **options)``: the next data requests answer ``status`` (an HTTP status or a
    gateway code), as the sandbox's ``fail_next`` takes it (``count``, ``retry_after``, ``code``...)."""

    def __init__(self, status: int | str, **options: Any) -> None:
        self.status = status
        self.options = options

    def queue(self, sandbox: Any) -> None:
        sandbox.fail_next(self.status, **self.options)


async def once(run: Run, sandbox: Any, transport: SandboxRecorder, **options: Any) -> None:
    """One run."""
    await run(sandbox, transport, **options)


async def resume_after_publish(run: Run, sandbox: Any, transport: SandboxRecorder, **options: Any) -> None:
    """A run; the partner then publishes the rest (``sandbox.publish()``) and a second run resumes from the first
    one's last cursor."""
    cursor = await run(sandbox, transport, **options)
    sandbox.publish()
    await run(sandbox, transport, cursor=cursor, **options)


async def revoke_after_page_1(run: Run, sandbox: Any, transport: SandboxRecorder, **options: Any) -> None:
    """A run during which the partner revokes its tokens (``sandbox.revoke_tokens()``) once page 1 is in."""

    def revoke(number: int) -> None:
        if number == 1:
            sandbox.revoke_tokens()

    await run(sandbox, transport, after_page=revoke, **options)


@dataclass(frozen=True)
class Scenario(Generic[S]):
    """One cassette: its file name, its ``about``, the sandbox it is recorded from and what runs against it."""

    name: str
    about: str
    sandbox: S
    faults: Sequence[Fault] = ()
    """Queued on the sandbox, in this order, by :meth:`prepared`."""
    run: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the script's run (page size, stream...)."""
    body: Callable[..., Awaitable[None]] = once
    """What runs against the sandbox: :func:`once`, :func:`resume_after_publish`, :func:`revoke_after_page_1`."""

    def prepared(self) -> S:
        """The sandbox with the faults queued: call it once, just before recording."""
        for fault in self.faults:
            fault.queue(self.sandbox)
        return self.sandbox

    def recording_body(self, run: Run, **defaults: Any) -> Callable[[SandboxRecorder], Awaitable[None]]:
        """What :meth:`SandboxRecording.record` runs: :attr:`body` with the script's ``run`` against the prepared
        sandbox, with :attr:`run` over ``defaults``."""
        return partial(self.body, run, self.prepared(), **{**defaults, **self.run})
