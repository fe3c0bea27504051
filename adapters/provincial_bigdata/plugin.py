"""Registers the provincial big-data adapter, its green-appliance methodologies and its sandbox gateway.

Entry point ``provincial_bigdata = "tanpuhui.adapters.provincial_bigdata.plugin"`` in the ``tanpuhui`` group.
"""

from __future__ import annotations

from typing import Any

from tanpuhui.sdk import AdapterPlugin, Sandbox

from .adapter import ProvincialBigDataAdapter
from .methodologies import APPLIANCE_METHODOLOGIES

__all__ = ["provincial_sandbox", "register_adapters", "register_methodologies", "register_sandboxes"]


def provincial_sandbox(**options: Any) -> Sandbox:
    """The data-sharing gateway's sandbox: 10 days of the four datasets unless ``options`` say otherwise."""
    from .sandbox import ProvincialSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return ProvincialSandbox(**options)


_PLUGIN = AdapterPlugin(ProvincialBigDataAdapter, provincial_sandbox, methodologies=APPLIANCE_METHODOLOGIES)
register_adapters = _PLUGIN.register_adapters
register_methodologies = _PLUGIN.register_methodologies
register_sandboxes = _PLUGIN.register_sandboxes
