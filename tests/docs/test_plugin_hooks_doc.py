"""The plugin-hook documentation is complete and its examples run."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import httpx
import pytest

from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import Sandbox, hookspecs

DOC = Path(__file__).parents[2] / "docs" / "plugin-hooks.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def _sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def _examples(hook: str) -> list[str]:
    """The section's python code blocks, in order."""
    return [block.split("```", 1)[0] for block in _sections()[hook].split("```python")[1:]]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_an_example(hook: str) -> None:
    sections = _sections()
    assert hook in sections, f"docs/plugin-hooks.md has no section for hook {hook}"
    assert "```python" in sections[hook]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_documented_example_registers_through_its_hook(hook: str) -> None:
    code = _examples(hook)[0]
    namespace: dict[str, object] = {"__name__": f"docs_example_{hook}"}
    exec(compile(code, f"docs/plugin-hooks.md#{hook}", "exec"), namespace)
    plugin = type("DocExample", (), {hook: staticmethod(namespace[hook])})()  # type: ignore[arg-type]
    plugins = load_plugins([plugin], entry_points=False, builtins=())
    registered = {
        "register_adapters": plugins.adapters,
        "register_methodologies": plugins.methodologies,
        "register_sinks": plugins.sinks,
        "register_sandboxes": plugins.sandboxes,
    }[hook]
    assert registered, f"the {hook} example registered nothing"


def test_the_documented_sandbox_serves_through_its_registered_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_code, sandbox_code = _examples("register_sandboxes")
    package = types.ModuleType("hefei_bike")
    package.__path__ = []
    module = types.ModuleType("hefei_bike.sandbox")
    monkeypatch.setitem(sys.modules, "hefei_bike", package)
    monkeypatch.setitem(sys.modules, "hefei_bike.sandbox", module)
    exec(compile(sandbox_code, "docs/plugin-hooks.md#register_sandboxes (sandbox)", "exec"), module.__dict__)
    plugin: dict[str, object] = {"__name__": "hefei_bike.plugin"}
    exec(compile(plugin_code, "docs/plugin-hooks.md#register_sandboxes", "exec"), plugin)
    hook = plugin["register_sandboxes"]
    holder = type("DocExample", (), {"register_sandboxes": staticmethod(hook)})()  # type: ignore[arg-type]
    plugins = load_plugins([holder], entry_points=False, builtins=())
    with plugins.sandboxes["hefei_bike"](rides=150) as sandbox:
        assert isinstance(sandbox, Sandbox)
        table, env = sandbox.hub_settings("BIKE_")
        token = httpx.post(
            f"{table['base_url']}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(table["client_id"], env["BIKE_CLIENT_SECRET"]),
        ).json()["access_token"]
        pages = []
        cursor = None
        while not pages or pages[-1]["has_more"]:
            params = {"cursor": cursor} if cursor else {}
            answer = httpx.get(f"{sandbox.url}/v1/rides", params=params, headers={"Authorization": f"Bearer {token}"})
            pages.append(answer.json())
            cursor = pages[-1]["next_cursor"]
    assert [len(p["data"]) for p in pages] == [100, 50]
