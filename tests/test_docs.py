"""The plugin-hook documentation is complete and its examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tanpuhui.hub.plugins import load_plugins
from tanpuhui.sdk import hookspecs

DOC = Path(__file__).parent.parent / "docs" / "plugin-hooks.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def _sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_an_example(hook: str) -> None:
    sections = _sections()
    assert hook in sections, f"docs/plugin-hooks.md has no section for hook {hook}"
    assert "```python" in sections[hook]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_documented_example_registers_through_its_hook(hook: str) -> None:
    code = _sections()[hook].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {"__name__": f"docs_example_{hook}"}
    exec(compile(code, f"docs/plugin-hooks.md#{hook}", "exec"), namespace)
    plugin = type("DocExample", (), {hook: staticmethod(namespace[hook])})()  # type: ignore[arg-type]
    plugins = load_plugins([plugin], entry_points=False, builtins=())
    registered = {
        "register_adapters": plugins.adapters,
        "register_methodologies": plugins.methodologies,
        "register_sinks": plugins.sinks,
    }[hook]
    assert registered, f"the {hook} example registered nothing"
