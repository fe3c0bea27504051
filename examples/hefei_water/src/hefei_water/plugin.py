"""Registers the Hefei water adapter and its methodology (entry point ``hefei_water`` in the ``tanpuhui`` group)."""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Adapter, Methodology, hookimpl

from .adapter import HefeiWaterAdapter
from .methodology import HOUSEHOLD_SAVING

__all__ = ["register_adapters", "register_methodologies"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(HefeiWaterAdapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    register(HOUSEHOLD_SAVING)
