"""The hub's own sinks, registered through the same hook as any plugin's (see ``tanpuhui.hub.plugins``)."""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Sink, hookimpl

from .http import HttpSink
from .jsonl import JsonlSink

__all__ = ["BUILTIN_SINKS", "register_sinks"]

BUILTIN_SINKS: tuple[type[Sink], ...] = (JsonlSink, HttpSink)


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    for sink in BUILTIN_SINKS:
        register(sink)
