"""Registers the YRD scenario platforms adapter and its sandbox exchange.

Entry point ``yrd_scenarios`` in the ``tanpuhui`` group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tanpuhui.sdk import Adapter, Sandbox, SandboxFactory, hookimpl

from .adapter import YrdScenariosAdapter

__all__ = ["register_adapters", "register_sandboxes", "yrd_sandbox"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(YrdScenariosAdapter)


@hookimpl
def register_sandboxes(register: Callable[[str, SandboxFactory], None]) -> None:
    register(YrdScenariosAdapter.name, yrd_sandbox)


def yrd_sandbox(**options: Any) -> Sandbox:
    """The YRD data exchange's sandbox: 1,000 records unless ``options`` say otherwise."""
    from .sandbox import YrdSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return YrdSandbox(**options)
