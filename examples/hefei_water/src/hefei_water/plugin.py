"""Registers the Hefei water adapter, its methodology and its sandbox (entry point ``hefei_water`` in the
``tanpuhui`` group)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tanpuhui.sdk import Adapter, Methodology, Sandbox, SandboxFactory, hookimpl

from .adapter import HefeiWaterAdapter
from .methodology import HOUSEHOLD_SAVING

__all__ = ["register_adapters", "register_methodologies", "register_sandboxes", "water_sandbox"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(HefeiWaterAdapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    register(HOUSEHOLD_SAVING)


@hookimpl
def register_sandboxes(register: Callable[[str, SandboxFactory], None]) -> None:
    register(HefeiWaterAdapter.name, water_sandbox)


def water_sandbox(**options: Any) -> Sandbox:
    """The utility's sandbox (12 households unless ``options`` say otherwise)."""
    from .sandbox import WaterSandbox  # the web server loads only when a sandbox is wanted

    return WaterSandbox(**options)
