"""Sinks: where the forwarder delivers records from the outbox."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict

from .errors import TanpuhuiError

__all__ = ["OutboxRow", "Sink", "SinkError", "SinkSettings"]


class OutboxRow(NamedTuple):
    """One committed record waiting for delivery. ``body`` is the record's JSON document (bytes).

    A named tuple: the forwarder builds one per row read, and a tuple is ~5x cheaper to build than a dataclass.
    """

    seq: int
    record_id: str
    adapter: str
    stream: str
    scenario: str
    body: bytes
    kind: str = "created"
    """``created`` (a new record), ``corrected`` (a record that supersedes another: its ``supersedes``) or
    ``voided`` (``body`` is a void naming the record withdrawn: ``{"record_id", "voids", "reason", ...}``)."""


class SinkSettings(BaseModel):
    """Base for sink settings; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")
    type: str


class SinkError(TanpuhuiError):
    """A delivery failed.

    ``retryable``: worth trying again (429, 5xx, timeouts, connection errors); ``retry_after``: what the consumer
    asked for, in seconds; ``gone``: the consumer said 410, stop delivering to this sink.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None, gone: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.gone = gone


_S = TypeVar("_S", bound=SinkSettings)


class Sink(ABC):
    """A delivery target. ``send`` delivers a whole batch or raises :class:`SinkError`."""

    kind: ClassVar[str]
    Settings: ClassVar[type[SinkSettings]] = SinkSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        self.name = name
        self.settings = settings

    def settings_as(self, settings_type: type[_S]) -> _S:
        """``settings`` as this sink's own settings class; a TypeError naming both when it is another."""
        if not isinstance(self.settings, settings_type):
            raise TypeError(
                f"{self.kind} sink {self.name!r} needs {type(self).__name__}.Settings, got {type(self.settings).__name__}"
            )
        return self.settings

    @abstractmethod
    async def send(self, batch: Sequence[OutboxRow]) -> None:
        """Deliver ``batch`` (at-least-once: the consumer dedups on the record id)."""

    async def check(self) -> None:
        """Raise :class:`SinkError` when the sink is not reachable (readiness probes); default: no check."""

    async def aclose(self) -> None:
        """Release connections and files."""
