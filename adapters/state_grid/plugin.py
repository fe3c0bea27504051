"""Registers the State Grid adapter, its demand-response methodology and its sandbox (entry point ``state_grid``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tanpuhui.sdk import Adapter, Methodology, Sandbox, SandboxFactory, hookimpl

from .adapter import StateGridAdapter
from .methodology import DEMAND_RESPONSE

__all__ = ["register_adapters", "register_methodologies", "register_sandboxes", "state_grid_sandbox"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(StateGridAdapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    register(DEMAND_RESPONSE)


@hookimpl
def register_sandboxes(register: Callable[[str, SandboxFactory], None]) -> None:
    register(StateGridAdapter.name, state_grid_sandbox)


def state_grid_sandbox(**options: Any) -> Sandbox:
    """The metering partner's sandbox: 200 households over 30 days unless ``options`` say otherwise."""
    from .sandbox import StateGridSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return StateGridSandbox(**options)
