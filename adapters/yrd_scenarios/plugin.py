"""Registers the YRD scenario platforms adapter and its sandbox exchange.

Entry point ``yrd_scenarios`` in the ``tanpuhui`` group.
"""

from __future__ import annotations

from typing import Any

from tanpuhui.sdk import AdapterPlugin, Sandbox

from .adapter import YrdScenariosAdapter

__all__ = ["register_adapters", "register_sandboxes", "yrd_sandbox"]


def yrd_sandbox(**options: Any) -> Sandbox:
    """The YRD data exchange's sandbox: 1,000 records unless ``options`` say otherwise."""
    from .sandbox import YrdSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return YrdSandbox(**options)


_PLUGIN = AdapterPlugin(YrdScenariosAdapter, yrd_sandbox)
register_adapters = _PLUGIN.register_adapters
register_sandboxes = _PLUGIN.register_sandboxes
