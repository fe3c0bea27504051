"""Registers the transit card adapter and its sandbox (entry point ``transit_card`` in the ``tanpuhui`` group)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tanpuhui.sdk import Adapter, Sandbox, SandboxFactory, hookimpl

from .adapter import TransitCardAdapter

__all__ = ["register_adapters", "register_sandboxes", "transit_sandbox"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(TransitCardAdapter)


@hookimpl
def register_sandboxes(register: Callable[[str, SandboxFactory], None]) -> None:
    register(TransitCardAdapter.name, transit_sandbox)


def transit_sandbox(**options: Any) -> Sandbox:
    """The transit card operator's sandbox, 5,000 trips (the demo's size) unless ``options`` say otherwise."""
    from .sandbox import TransitSandbox  # starlette and uvicorn load only when a sandbox is wanted

    return TransitSandbox(**{"trips": 5000, **options})
