"""Registers the Hefei water adapter, its methodology and its sandbox (entry point ``hefei_water`` in the
``tanpuhui`` group)."""

from __future__ import annotations

from typing import Any

from tanpuhui.sdk import AdapterPlugin, Sandbox

from .adapter import HefeiWaterAdapter
from .methodology import HOUSEHOLD_SAVING

__all__ = ["register_adapters", "register_methodologies", "register_sandboxes", "water_sandbox"]


def water_sandbox(**options: Any) -> Sandbox:
    """The utility's sandbox (12 households unless ``options`` say otherwise)."""
    from .sandbox import WaterSandbox  # the web server loads only when a sandbox is wanted

    return WaterSandbox(**options)


_PLUGIN = AdapterPlugin(HefeiWaterAdapter, water_sandbox, methodologies=(HOUSEHOLD_SAVING,))
register_adapters = _PLUGIN.register_adapters
register_methodologies = _PLUGIN.register_methodologies
register_sandboxes = _PLUGIN.register_sandboxes
