"""Registers the transit card adapter and its sandbox (entry point ``transit_card`` in the ``tanpuhui`` group)."""

from __future__ import annotations

from typing import Any

from tanpuhui.sdk import AdapterPlugin, Sandbox

from .adapter import TransitCardAdapter

__all__ = ["register_adapters", "register_sandboxes", "transit_sandbox"]


def transit_sandbox(**options: Any) -> Sandbox:
    """The transit card operator's sandbox, 5,000 trips (the demo's size) unless ``options`` say otherwise."""
    from .sandbox import TransitSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return TransitSandbox(**{"trips": 5000, **options})


_PLUGIN = AdapterPlugin(TransitCardAdapter, transit_sandbox)
register_adapters = _PLUGIN.register_adapters
register_sandboxes = _PLUGIN.register_sandboxes
