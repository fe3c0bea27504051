"""The plugin manager: loads built-in and third-party plugins once, and holds what they registered.

Plugins are modules (or objects) with ``@hookimpl`` functions, found through the ``tanpuhui`` entry-point
group; the built-in adapters, methodologies, sinks and sandboxes come in the same way. A plugin that fails to
import or whose hook raises becomes a warning naming it, and the others still load. Set ``TANPUHUI_TRACE_HOOKS=1``
to print each hook call on stderr (hook, plugin, milliseconds; a log record where logging is configured).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pluggy

from tanpuhui.sdk import Adapter, Methodology, MethodologyError, PluginError, SandboxFactory, Sink, hookspecs

__all__ = ["BUILTIN_PLUGINS", "PluginInfo", "PluginWarning", "Plugins", "load_plugins"]

log = logging.getLogger("tanpuhui.plugins")

BUILTIN_PLUGINS = ("tanpuhui.hub.methodologies", "tanpuhui.hub.sinks.builtin")
"""Hub-internal plugins registered directly; built-in adapters come through the entry-point group like any other."""


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered something broken; the hub goes on without it."""


@dataclass(slots=True)
class PluginInfo:
    """One loaded plugin: where it came from and what it registered."""

    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    methodologies: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    sandboxes: list[str] = field(default_factory=list)


@dataclass
class Plugins:
    """What all plugins registered: adapter classes, methodologies (all versions), sink classes and sandbox
    factories (by adapter name; called only when a sandbox is wanted)."""

    adapters: dict[str, type[Adapter]] = field(default_factory=dict)
    methodologies: dict[str, dict[str, Methodology]] = field(default_factory=dict)
    sinks: dict[str, type[Sink]] = field(default_factory=dict)
    sandboxes: dict[str, SandboxFactory] = field(default_factory=dict)
    info: list[PluginInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def methodology(self, methodology_id: str, version: str | None = None) -> Methodology:
        """The given version, or the highest registered one."""
        versions = self.methodologies.get(methodology_id)
        if not versions:
            known = ", ".join(sorted(self.methodologies)) or "none"
            raise MethodologyError(f"unknown methodology {methodology_id!r}; registered: {known}")
        if version is None:
            return versions[max(versions, key=_semver)]
        try:
            return versions[version]
        except KeyError:
            raise MethodologyError(
                f"methodology {methodology_id!r} has no version {version}; registered: {', '.join(sorted(versions))}"
            ) from None

    def adapter(self, name: str) -> type[Adapter]:
        try:
            return self.adapters[name]
        except KeyError:
            known = ", ".join(sorted(self.adapters)) or "none"
            raise PluginError(f"unknown adapter {name!r}; installed: {known}") from None


def _semver(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _warn(plugins: Plugins, message: str) -> None:
    plugins.problems.append(message)
    warnings.warn(message, PluginWarning, stacklevel=3)


def load_plugins(
    extra: Iterable[object] = (), *, entry_points: bool = True, builtins: Iterable[str] = BUILTIN_PLUGINS
) -> Plugins:
    """Create a plugin manager, load plugins, and collect their registrations.

    ``extra`` plugin objects (modules or instances with hookimpls) are registered too (tests, embedding).
    """
    pm = pluggy.PluginManager("tanpuhui")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins()
    sources: dict[str, tuple[str, str]] = {}

    def add(plugin: object, name: str, dist: str, version: str) -> None:
        try:
            pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            _warn(plugins, f"plugin {name!r} ({dist}) was not loaded: {exc}")
            return
        sources[name] = (dist, version)

    for module_name in builtins:
        module = importlib.import_module(module_name)
        add(module, module_name, "tanpuhui", _version("tanpuhui"))
    if entry_points:
        for ep in importlib.metadata.entry_points(group="tanpuhui"):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if pm.has_plugin(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # any import-time failure of a third-party plugin
                _warn(
                    plugins,
                    f"plugin {ep.name!r} from {dist} {version} failed to import: {type(exc).__name__}: {exc}",
                )
                continue
            add(loaded, ep.name, dist, version)
    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{i}"
        add(plugin, name, "(registered in process)", "")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        _warn(plugins, f"a plugin implements an unknown hook: {exc}")

    trace = os.environ.get("TANPUHUI_TRACE_HOOKS", "") not in ("", "0")
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist, version = sources.get(name, ("?", "?"))
        info = PluginInfo(name, dist, version, [h.name for h in pm.get_hookcallers(plugin) or []])
        plugins.info.append(info)
        _call(pm, plugin, name, "register_adapters", _adapter_register(plugins, info), plugins, trace)
        _call(pm, plugin, name, "register_methodologies", _methodology_register(plugins, info), plugins, trace)
        _call(pm, plugin, name, "register_sinks", _sink_register(plugins, info), plugins, trace)
        _call(pm, plugin, name, "register_sandboxes", _sandbox_register(plugins, info), plugins, trace)
    return plugins


def _call(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    hook_name: str,
    register: Callable[..., None],
    plugins: Plugins,
    trace: bool = False,
) -> None:
    """Call one plugin's implementation of a hook, so a failure is pinned on that plugin alone; ``trace``: say so on
    stderr, with how long it took."""
    impl = getattr(plugin, hook_name, None)
    if impl is None or not hasattr(impl, "tanpuhui_impl"):
        return
    caller = pm.subset_hook_caller(hook_name, remove_plugins=[p for p in pm.get_plugins() if p is not plugin])
    started = time.perf_counter()
    outcome = "ok"
    try:
        caller(register=register)
    except Exception as exc:
        outcome = f"failed: {type(exc).__name__}"
        _warn(plugins, f"plugin {name!r}: hook {hook_name} failed: {type(exc).__name__}: {exc}")
    if trace:
        _trace(f"hook {hook_name} plugin {name}: {(time.perf_counter() - started) * 1000:.2f} ms, {outcome}")


def _trace(message: str) -> None:
    """A traced hook call: a log record, and a line on stderr unless logging is configured (the sidecar's JSON logs
    carry the record there)."""
    log.info("hook: %s", message)
    if not logging.getLogger().handlers:
        sys.stderr.write(f"tanpuhui: {message}\n")


def _adapter_register(plugins: Plugins, info: PluginInfo) -> Callable[[type[Adapter]], None]:
    def register(adapter: type[Adapter]) -> None:
        if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
            raise PluginError(f"register_adapters got {adapter!r}, expected an Adapter subclass")
        for attr in ("name", "version"):
            if not isinstance(getattr(adapter, attr, None), str):
                raise PluginError(f"adapter class {adapter.__qualname__} has no string {attr!r}")
        if adapter.name in plugins.adapters and plugins.adapters[adapter.name] is not adapter:
            _warn(plugins, f"plugin {info.name!r}: adapter name {adapter.name!r} is already registered; ignored")
            return
        plugins.adapters[adapter.name] = adapter
        info.adapters.append(adapter.name)

    return register


def _methodology_register(plugins: Plugins, info: PluginInfo) -> Callable[[Methodology], None]:
    def register(methodology: Methodology) -> None:
        if not isinstance(methodology, Methodology):
            raise PluginError(f"register_methodologies got {methodology!r}, expected a Methodology")
        plugins.methodologies.setdefault(methodology.id, {})[methodology.version] = methodology
        info.methodologies.append(methodology.key)

    return register


def _sink_register(plugins: Plugins, info: PluginInfo) -> Callable[[type[Sink]], None]:
    def register(sink: type[Sink]) -> None:
        if not (isinstance(sink, type) and issubclass(sink, Sink)):
            raise PluginError(f"register_sinks got {sink!r}, expected a Sink subclass")
        plugins.sinks[sink.kind] = sink
        info.sinks.append(sink.kind)

    return register


def _sandbox_register(plugins: Plugins, info: PluginInfo) -> Callable[[str, SandboxFactory], None]:
    def register(adapter: str, factory: SandboxFactory) -> None:
        if not isinstance(adapter, str) or not adapter:
            raise PluginError(f"register_sandboxes got adapter name {adapter!r}, expected the adapter's name")
        if not callable(factory):
            raise PluginError(f"register_sandboxes got {factory!r} for {adapter!r}, expected a factory to call")
        if adapter in plugins.sandboxes and plugins.sandboxes[adapter] is not factory:
            owner = next((p.name for p in plugins.info if adapter in p.sandboxes), "?")
            _warn(
                plugins, f"plugin {info.name!r}: a sandbox for {adapter!r} is already registered by {owner!r}; ignored"
            )
            return
        plugins.sandboxes[adapter] = factory
        info.sandboxes.append(adapter)

    return register


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
