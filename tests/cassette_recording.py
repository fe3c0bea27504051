"""What the bundled adapters' ``tests/<adapter>/record_cassettes.py`` scripts share: where each writes its cassettes
and the table of its plain fault scenarios (a sandbox, the faults queued on it and one run's options).

The scripts run as ``.venv/bin/python tests/<adapter>/record_cassettes.py``, so they put ``tests/`` on ``sys.path``
themselves before importing this module (pytest puts it there for the tests that import them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tanpuhui.testing.sandbox.recorder import SandboxRecording

CASSETTES = Path(__file__).parent / "cassettes"
"""The recorded cassettes, a folder per adapter."""

S = TypeVar("S")


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


@dataclass(frozen=True)
class Scenario(Generic[S]):
    """One cassette recorded from one run against ``sandbox``: its file name, its ``about`` and the run's options."""

    name: str
    about: str
    sandbox: S
    faults: Sequence[Fault] = ()
    """Queued on the sandbox, in this order, by :meth:`prepared`."""
    run: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the script's run (page size, stream...)."""

    def prepared(self) -> S:
        """The sandbox with the faults queued: call it once, just before recording."""
        for fault in self.faults:
            fault.queue(self.sandbox)
        return self.sandbox
