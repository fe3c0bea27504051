"""Registers the provincial big-data adapter and its green-appliance methodologies.

Entry point ``provincial_bigdata = "tanpuhui.adapters.provincial_bigdata.plugin"`` in the ``tanpuhui`` group.
"""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Adapter, Methodology, hookimpl

from .adapter import ProvincialBigDataAdapter
from .methodologies import APPLIANCE_METHODOLOGIES

__all__ = ["register_adapters", "register_methodologies"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(ProvincialBigDataAdapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    for methodology in APPLIANCE_METHODOLOGIES:
        register(methodology)
