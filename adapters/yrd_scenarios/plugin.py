"""Registers the YRD scenario platforms adapter (entry point ``yrd_scenarios`` in the ``tanpuhui`` group)."""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Adapter, hookimpl

from .adapter import YrdScenariosAdapter

__all__ = ["register_adapters"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(YrdScenariosAdapter)
