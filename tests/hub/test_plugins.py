"""The plugin manager: built-ins through the same hooks as third parties; a broken plugin is a warning, not a crash."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
import types
from collections.abc import Callable

import pytest

import tanpuhui.sdk
from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.hub.plugins import PluginWarning, load_plugins
from tanpuhui.sdk import (
    Adapter,
    Factor,
    Formula,
    Methodology,
    MethodologyError,
    PluginError,
    Sandbox,
    SandboxFactory,
    hookimpl,
)


class HefeiBikeAdapter(Adapter):
    """A third party's adapter for a Hefei shared-bike operator."""

    name = "hefei_bike"
    version = "0.2.0"


class WuhuBikeAdapter(Adapter):
    """Another operator's adapter that picked the same name."""

    name = "hefei_bike"
    version = "1.0.0"


def bike_methodology(version: str) -> Methodology:
    return Methodology(
        id="hf.bike",
        version=version,
        scenario="shared_bike",
        title="Shared bike instead of car",
        formula=Formula("activity * ef_reduction"),
        factors=(Factor("ef_reduction", 0.0933, "kgCO2e/km", "Wuhan platform value (2025), labelled default", True),),
        activity_unit="km",
    )


def plugin_module(name: str, **hooks: Callable[..., None]) -> types.ModuleType:
    """A plugin as third parties write one: a module with @hookimpl functions."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registers_bike_adapter(register: Callable[[type[Adapter]], None]) -> None:
    register(HefeiBikeAdapter)


def raises_while_registering(register: Callable[[type[Adapter]], None]) -> None:
    raise RuntimeError("operator API key file /etc/hefei_bike/key not found")


def test_builtin_methodologies_are_registered_through_the_hook() -> None:
    plugins = load_plugins(entry_points=False)
    assert set(plugins.methodologies) == {m.id for m in BUILTIN_METHODOLOGIES}
    info = next(i for i in plugins.info if i.name == "tanpuhui.hub.methodologies")
    assert "register_methodologies" in info.hooks
    assert info.methodologies == [m.key for m in BUILTIN_METHODOLOGIES]


def test_builtin_methodology_is_looked_up_by_id() -> None:
    plugins = load_plugins(entry_points=False)
    assert plugins.methodology("tph.transit.metro") is BUILTIN_METHODOLOGIES[0]


def test_third_party_plugin_passed_in_registers_an_adapter() -> None:
    bike = plugin_module("hefei_bike_plugin", register_adapters=registers_bike_adapter)
    plugins = load_plugins([bike], entry_points=False)
    assert plugins.adapter("hefei_bike") is HefeiBikeAdapter
    info = next(i for i in plugins.info if i.name == "hefei_bike_plugin")
    assert info.adapters == ["hefei_bike"]
    assert plugins.problems == []


def test_plugin_whose_hook_raises_is_a_warning_and_the_others_still_load() -> None:
    broken = plugin_module("hefei_broken_plugin", register_adapters=raises_while_registering)
    bike = plugin_module("hefei_bike_plugin", register_adapters=registers_bike_adapter)
    with pytest.warns(PluginWarning, match="'hefei_broken_plugin'.*register_adapters.*RuntimeError"):
        plugins = load_plugins([broken, bike], entry_points=False)
    assert plugins.adapter("hefei_bike") is HefeiBikeAdapter
    assert set(plugins.methodologies) == {m.id for m in BUILTIN_METHODOLOGIES}
    assert len(plugins.problems) == 1


def test_registering_something_that_is_not_an_adapter_is_a_warning() -> None:
    def registers_a_string(register: Callable[[object], None]) -> None:
        register("tanpuhui_hefei_bike.adapter:HefeiBikeAdapter")

    confused = plugin_module("confused_plugin", register_adapters=registers_a_string)
    with pytest.warns(PluginWarning, match="'confused_plugin'.*expected an Adapter subclass"):
        plugins = load_plugins([confused], entry_points=False)
    assert plugins.adapters == {}


def test_registering_something_that_is_not_a_methodology_is_a_warning() -> None:
    def registers_a_dict(register: Callable[[object], None]) -> None:
        register({"id": "hf.bike", "version": "1.0.0"})

    confused = plugin_module("confused_plugin", register_methodologies=registers_a_dict)
    with pytest.warns(PluginWarning, match="expected a Methodology"):
        plugins = load_plugins([confused], entry_points=False)
    assert "hf.bike" not in plugins.methodologies


def test_second_adapter_with_a_taken_name_is_ignored_with_a_warning() -> None:
    first = plugin_module("hefei_bike_plugin", register_adapters=registers_bike_adapter)

    def registers_wuhu(register: Callable[[type[Adapter]], None]) -> None:
        register(WuhuBikeAdapter)

    second = plugin_module("wuhu_bike_plugin", register_adapters=registers_wuhu)
    with pytest.warns(PluginWarning, match="'wuhu_bike_plugin'.*'hefei_bike' is already registered"):
        plugins = load_plugins([first, second], entry_points=False)
    assert plugins.adapter("hefei_bike") is HefeiBikeAdapter


def bike_sandbox(**options: object) -> Sandbox:
    raise AssertionError("a factory is called only when its sandbox is wanted, never while plugins load")


def registers_bike_sandbox(register: Callable[[str, SandboxFactory], None]) -> None:
    register("hefei_bike", bike_sandbox)


def test_a_plugin_offers_its_adapters_sandbox_without_it_being_made() -> None:
    bike = plugin_module(
        "hefei_bike_plugin", register_adapters=registers_bike_adapter, register_sandboxes=registers_bike_sandbox
    )
    plugins = load_plugins([bike], entry_points=False)
    assert plugins.sandboxes == {"hefei_bike": bike_sandbox}
    info = next(i for i in plugins.info if i.name == "hefei_bike_plugin")
    assert info.sandboxes == ["hefei_bike"] and plugins.problems == []


def test_second_sandbox_for_an_adapter_is_ignored_with_a_warning_naming_both_plugins() -> None:
    first = plugin_module("hefei_bike_plugin", register_sandboxes=registers_bike_sandbox)

    def registers_another(register: Callable[[str, SandboxFactory], None]) -> None:
        register("hefei_bike", lambda **options: bike_sandbox(**options))

    second = plugin_module("wuhu_bike_plugin", register_sandboxes=registers_another)
    with pytest.warns(
        PluginWarning, match="'wuhu_bike_plugin'.*'hefei_bike' is already registered by 'hefei_bike_plugin'"
    ):
        plugins = load_plugins([first, second], entry_points=False)
    assert plugins.sandboxes == {"hefei_bike": bike_sandbox}


def test_registering_a_sandbox_that_cannot_be_called_is_a_warning() -> None:
    def registers_an_instance(register: Callable[[str, object], None]) -> None:
        register("hefei_bike", "hefei_bike.sandbox:BikeSandbox")

    confused = plugin_module("confused_plugin", register_sandboxes=registers_an_instance)
    with pytest.warns(PluginWarning, match="'confused_plugin'.*register_sandboxes.*expected a factory to call"):
        plugins = load_plugins([confused], entry_points=False)
    assert plugins.sandboxes == {}


def test_every_builtin_adapter_offers_a_sandbox_through_the_hook() -> None:
    plugins = load_plugins()
    builtin = {"transit_card", "state_grid", "yrd_scenarios", "provincial_bigdata"}
    assert builtin <= set(plugins.sandboxes)
    for info in plugins.info:
        if set(info.adapters) & builtin:
            assert info.sandboxes == info.adapters, info.name


def test_loading_plugins_imports_no_sandbox_and_no_web_server() -> None:
    code = (
        "import sys; from tanpuhui.hub.plugins import load_plugins; plugins = load_plugins(); "
        "assert plugins.sandboxes, plugins.problems; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn') or m.endswith('.sandbox')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['tanpuhui.sdk.sandbox']"


def test_plugin_with_a_wrong_hook_signature_is_a_warning() -> None:
    def register_adapters(callback: Callable[[type[Adapter]], None]) -> None:
        callback(HefeiBikeAdapter)

    wrong = plugin_module("wrong_signature_plugin", register_adapters=register_adapters)
    with pytest.warns(PluginWarning, match="'wrong_signature_plugin'.*not loaded"):
        plugins = load_plugins([wrong], entry_points=False)
    assert "hefei_bike" not in plugins.adapters


def test_plugin_implementing_an_unknown_hook_is_a_warning() -> None:
    def register_forwarders(register: Callable[[object], None]) -> None:
        pass

    odd = plugin_module("odd_plugin", register_forwarders=register_forwarders)
    with pytest.warns(PluginWarning, match="unknown hook"):
        load_plugins([odd], entry_points=False)


def test_entry_point_that_fails_to_import_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="tanpuhui")

    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        assert group == "tanpuhui"
        return [broken]

    monkeypatch.setattr("tanpuhui.hub.plugins.importlib.metadata.entry_points", entry_points)
    with pytest.warns(PluginWarning, match="'broken'.*failed to import.*no_such_module_xyz"):
        plugins = load_plugins()
    assert set(plugins.methodologies) == {m.id for m in BUILTIN_METHODOLOGIES}


def test_installed_entry_points_load_the_builtin_transit_card_adapter() -> None:
    plugins = load_plugins()
    assert "transit_card" in plugins.adapters
    assert issubclass(plugins.adapters["transit_card"], Adapter)


def test_highest_methodology_version_wins_by_number_not_by_text() -> None:
    def registers_versions(register: Callable[[Methodology], None]) -> None:
        for version in ("1.9.0", "1.10.0", "1.2.3"):
            register(bike_methodology(version))

    bike = plugin_module("hefei_bike_plugin", register_methodologies=registers_versions)
    plugins = load_plugins([bike], entry_points=False)
    assert plugins.methodology("hf.bike").version == "1.10.0"
    assert plugins.methodology("hf.bike", "1.9.0").version == "1.9.0"


def test_unknown_methodology_version_names_the_registered_ones() -> None:
    plugins = load_plugins(entry_points=False)
    with pytest.raises(MethodologyError, match=r"no version 2\.0\.0; registered: 1\.0\.0"):
        plugins.methodology("tph.transit.metro", "2.0.0")


def test_unknown_methodology_names_the_registered_ones() -> None:
    plugins = load_plugins(entry_points=False)
    with pytest.raises(MethodologyError, match=r"tph\.transit\.metro"):
        plugins.methodology("tph.transit.tram")


def test_unknown_adapter_is_a_plugin_error_listing_the_installed() -> None:
    bike = plugin_module("hefei_bike_plugin", register_adapters=registers_bike_adapter)
    plugins = load_plugins([bike], entry_points=False)
    with pytest.raises(PluginError, match="installed: hefei_bike"):
        plugins.adapter("state_grid")


# -- the SDK's public surface -----------------------------------------------------------------------------------

# Type aliases (``X | Y``) and pluggy's marker instances cannot carry a docstring of their own.
NOT_DOCUMENTABLE = {
    "RecordLike",
    "SandboxFactory",
    "Stream",
    "VINTAGE_LAG_YEARS",
    "WebhookRequest",
    "hookimpl",
    "hookspec",
}
"""Type aliases, pluggy markers and plain constants: they carry no docstring of their own (docs/sdk-reference.md
describes them)."""


def test_every_name_in_sdk_all_exists() -> None:
    missing = [name for name in tanpuhui.sdk.__all__ if not hasattr(tanpuhui.sdk, name)]
    assert missing == []


def test_sdk_all_lists_every_public_member() -> None:
    public = {
        name for name, value in vars(tanpuhui.sdk).items() if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert sorted(tanpuhui.sdk.__all__) == sorted(public)


def test_sdk_all_is_sorted_without_duplicates() -> None:
    # ruff's RUF022 order: constants (SCREAMING_CASE) first, then classes (CamelCase), then functions and the rest.
    def group(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    names = tanpuhui.sdk.__all__
    assert names == sorted(set(names), key=lambda name: (group(name), name))


@pytest.mark.parametrize("name", sorted(set(tanpuhui.sdk.__all__) - NOT_DOCUMENTABLE))
def test_every_public_sdk_name_has_a_docstring(name: str) -> None:
    value = getattr(tanpuhui.sdk, name)
    if isinstance(value, Factor):  # a published factor documents itself: its source is the citation
        assert value.source.strip() and not value.default, f"tanpuhui.sdk.{name} is not a cited, published factor"
        return
    if isinstance(value, tuple) and value and all(isinstance(f, Factor) for f in value):  # a series of vintages
        for f in value:
            assert f.source.strip() and not f.default and f.data_year, f"tanpuhui.sdk.{name}: {f} is not cited"
        return
    assert inspect.isclass(value) or inspect.isfunction(value), f"{name}: add it to NOT_DOCUMENTABLE with a reason"
    own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
    assert own and own.strip(), f"tanpuhui.sdk.{name} has no docstring"
