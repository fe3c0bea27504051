"""Plugin hooks (pluggy, project name ``tanpuhui``; plugins register under the entry-point group ``tanpuhui``).

Each hook receives a ``register`` callback; built-in adapters, methodologies, sinks and sandboxes use the very same
hooks.
Hooks are called with keyword arguments only, so a spec can grow new arguments without breaking plugins. See
docs/plugin-hooks.md for a runnable example of each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .adapter import Adapter
    from .methodology import Methodology
    from .sandbox import SandboxFactory
    from .sink import Sink

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("tanpuhui")
hookimpl = pluggy.HookimplMarker("tanpuhui")


@hookspec
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    """Register adapter classes.

    :param register: call ``register(MyAdapter)`` for each :class:`tanpuhui.sdk.Adapter` subclass the plugin
        provides. Adapter names must be unique across plugins; a clash is reported as a warning naming both plugins
        and the later one is ignored.
    """


@hookspec
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    """Register quantification methodologies.

    :param register: call ``register(methodology)`` for each :class:`tanpuhui.sdk.Methodology`. Several versions
        of one id may be registered; streams get the highest version unless hub.toml pins one.
    """


@hookspec
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Register sink types (where the forwarder delivers records).

    :param register: call ``register(MySink)`` for each :class:`tanpuhui.sdk.Sink` subclass; its ``kind`` is the
        ``type`` used in hub.toml's ``[sinks.NAME]`` tables.
    """


@hookspec
def register_sandboxes(register: Callable[[str, SandboxFactory], None]) -> None:
    """Register partner sandboxes: stand-ins for an adapter's partner, on loopback with synthetic data.

    ``tanpuhui demo`` (and any tool) starts the sandbox of every installed adapter that offers one, configures the
    hub from it, pulls its pull streams and delivers its signed pushes.

    :param register: call ``register(adapter_name, factory)`` for each adapter whose partner the plugin simulates;
        ``factory(**options)`` returns a :class:`tanpuhui.sdk.Sandbox`, not yet started, with the sizes the demo
        uses unless ``options`` say otherwise. Import the sandbox module inside the factory, not at the top of the
        plugin module: plugins load at every hub start-up, sandboxes only when asked for. One sandbox per adapter
        name; a clash is reported as a warning naming both plugins and the later one is ignored.
    """
