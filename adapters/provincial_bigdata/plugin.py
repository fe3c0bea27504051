"""Registers the provincial big-data adapter, its green-appliance methodologies and its sandbox gateway.

Entry point ``provincial_bigdata = "tanpuhui.adapters.provincial_bigdata.plugin"`` in the ``tanpuhui`` group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tanpuhui.sdk import Adapter, Methodology, Sandbox, SandboxFactory, hookimpl

from .adapter import ProvincialBigDataAdapter
from .methodologies import APPLIANCE_METHODOLOGIES

__all__ = ["provincial_sandbox", "register_adapters", "register_methodologies", "register_sandboxes"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(ProvincialBigDataAdapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    for methodology in APPLIANCE_METHODOLOGIES:
        register(methodology)


@hookimpl
def register_sandboxes(register: Callable[[str, SandboxFactory], None]) -> None:
    register(ProvincialBigDataAdapter.name, provincial_sandbox)


def provincial_sandbox(**options: Any) -> Sandbox:
    """The data-sharing gateway's sandbox: 10 days of the four datasets unless ``options`` say otherwise."""
    from .sandbox import ProvincialSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return ProvincialSandbox(**options)
