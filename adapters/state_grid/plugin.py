"""Registers the State Grid adapter and its demand-response methodology (entry point ``state_grid``)."""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Adapter, Methodology, hookimpl

from .adapter import StateGridAdapter
from .methodology import DEMAND_RESPONSE

__all__ = ["register_adapters", "register_methodologies"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(StateGridAdapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    register(DEMAND_RESPONSE)
