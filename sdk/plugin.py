"""The hook implementations of a plugin that ships one adapter, with its methodologies and its sandbox.

Most plugins register exactly that; their ``plugin`` module binds the hooks of one :class:`AdapterPlugin`::

    _PLUGIN = AdapterPlugin(HefeiWaterAdapter, water_sandbox, methodologies=(HOUSEHOLD_SAVING,))
    register_adapters = _PLUGIN.register_adapters
    register_methodologies = _PLUGIN.register_methodologies
    register_sandboxes = _PLUGIN.register_sandboxes

(pluggy takes the bound methods as the module's hook implementations). A plugin with more to register writes its
own ``@hookimpl`` functions (docs/plugin-hooks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .adapter import Adapter
from .hookspecs import hookimpl
from .methodology import Methodology
from .sandbox import SandboxFactory

__all__ = ["AdapterPlugin"]


class AdapterPlugin:
    """Registers ``adapter``, its ``sandbox`` factory (under the adapter's name) and its ``methodologies``."""

    def __init__(
        self,
        adapter: type[Adapter],
        sandbox: SandboxFactory | None = None,
        *,
        methodologies: Iterable[Methodology] = (),
    ) -> None:
        self.adapter = adapter
        self.sandbox = sandbox
        self.methodologies = tuple(methodologies)

    @hookimpl
    def register_adapters(self, register: Callable[[type[Adapter]], None]) -> None:
        """Hook: registers the adapter class."""
        register(self.adapter)

    @hookimpl
    def register_methodologies(self, register: Callable[[Methodology], None]) -> None:
        """Hook: registers each of ``methodologies``."""
        for methodology in self.methodologies:
            register(methodology)

    @hookimpl
    def register_sandboxes(self, register: Callable[[str, SandboxFactory], None]) -> None:
        """Hook: registers ``sandbox`` (when given) under the adapter's name."""
        if self.sandbox is not None:
            register(self.adapter.name, self.sandbox)
