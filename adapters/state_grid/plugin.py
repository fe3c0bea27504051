"""Registers the State Grid adapter, its demand-response methodology and its sandbox (entry point ``state_grid``)."""

from __future__ import annotations

from typing import Any

from tanpuhui.sdk import AdapterPlugin, Sandbox

from .adapter import StateGridAdapter
from .methodology import DEMAND_RESPONSE

__all__ = ["register_adapters", "register_methodologies", "register_sandboxes", "state_grid_sandbox"]


def state_grid_sandbox(**options: Any) -> Sandbox:
    """The metering partner's sandbox: 200 households over 30 days unless ``options`` say otherwise."""
    from .sandbox import StateGridSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return StateGridSandbox(**options)


_PLUGIN = AdapterPlugin(StateGridAdapter, state_grid_sandbox, methodologies=(DEMAND_RESPONSE,))
register_adapters = _PLUGIN.register_adapters
register_methodologies = _PLUGIN.register_methodologies
register_sandboxes = _PLUGIN.register_sandboxes
