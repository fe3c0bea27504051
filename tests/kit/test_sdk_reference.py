"""docs/sdk-reference.md documents every public name of the SDK and its testing kit.

The reference is generated from the docstrings; regenerate it after changing the public surface:

    .venv/bin/python tests/kit/test_sdk_reference.py
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tanpuhui.sdk import Factor

DOC = Path(__file__).parent.parent.parent / "docs" / "sdk-reference.md"
MODULES = ("tanpuhui.sdk", "tanpuhui.testing", "tanpuhui.testing.conformance", "tanpuhui.testing.sandbox")

HEADER = """\
# SDK reference

Every public name of `tanpuhui.sdk` (the contract adapter, methodology and sink authors import: `from tanpuhui.sdk
import ...`), of its testing kit `tanpuhui.testing`, of the conformance suite `tanpuhui.testing.conformance` and of
the sandbox kit `tanpuhui.testing.sandbox`, with its signature and docstring. docs/adapter-authors.md shows them at
work; docs/plugin-hooks.md documents the hooks and the sandbox kit.

Every public method and property of a class follows it (`##### Class.method`), with its signature: every argument
and its default. Generated from the docstrings by `python tests/kit/test_sdk_reference.py`; a test fails when a
public name, method or property has no docstring, or when this file is not what the docstrings say.
"""


VALUES = {
    "hookimpl": '`pluggy.HookimplMarker("tanpuhui")`: mark a plugin\'s hook implementations (docs/plugin-hooks.md).',
    "hookspec": '`pluggy.HookspecMarker("tanpuhui")`: marks the hook specifications in `tanpuhui.sdk.hookspecs`.',
    "RecordLike": "`dict[str, Any] | ReductionRecord`: what `normalize` may return (a record document is the fast path).",
    "Stream": "`PullStream | PushStream`.",
    "SandboxFactory": "`Callable[..., Sandbox]`: makes a sandbox, not yet started: `factory(**options)`; with no "
    "options, the sizes `tanpuhui demo` uses (registered with the `register_sandboxes` hook).",
    "WebhookRequest": "`tuple[dict[str, str], bytes]`: a signed webhook request a partner pushes, headers and body.",
    "OFFSET_CURSOR": "`OffsetCursor()`: the default cursor codec and page window.",
    "NO_STORE": '`{"Cache-Control": "no-store", "Pragma": "no-cache"}`: the headers RFC 6749 asks of a token response.',
    "INVALID_TOKEN": "The RFC 6750 body of a 401 for a missing, expired or revoked bearer token.",
    "VINTAGE_LAG_YEARS": "`2`: an activity in year A is valued with the grid factor of data year A - 2 (the MEE/NBS "
    "series is published about two years after its data year; docs/methodologies.md).",
}


def _names(module: ModuleType) -> list[str]:
    return list(getattr(module, "__all__", []))


def _signature(obj: Any, name: str) -> str:
    target = obj
    if inspect.isclass(obj):
        target = obj.__init__ if "__init__" in vars(obj) else obj
    try:
        sig = str(inspect.signature(target))
    except (TypeError, ValueError):
        return ""
    sig = sig.replace("(self, ", "(").replace("(self)", "()")
    sig = re.sub(r"<function (\w+) at 0x[0-9a-f]+>", r"\1", sig)  # defaults like asyncio.sleep, stably
    sig = sig.replace("= ''", '= ""')  # an empty-string default stays visible
    sig = re.sub(r"'([^']*)'", r"\1", sig)  # string annotations (from __future__ import annotations)
    # set defaults in a stable order (a set's repr follows the hash seed)
    sig = re.sub(r"frozenset\(\{([^}]*)\}\)", lambda m: f"frozenset({{{', '.join(sorted(m[1].split(', ')))}}})", sig)
    return f"{name}{sig}"


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return "value"


def _value_doc(name: str, obj: Any) -> str:
    if isinstance(obj, Factor):  # a published factor: its figure and citation
        valid = f", valid from {obj.valid_from.isoformat()}" if obj.valid_from else ""
        return f"`{obj.name}` = {obj.value} {obj.unit}{valid}. Source: {obj.source}."
    if isinstance(obj, tuple) and obj and all(isinstance(f, Factor) for f in obj):  # a factor series (vintages)
        return (
            f"`{obj[0].name}` in {len(obj)} vintages: "
            + "; ".join(
                f"data year {f.data_year}: {f.value} {f.unit}{' (single or secondary source)' if f.single_source else ''}"
                f", for activities {f.valid_from}..{f.valid_to}, source: {f.source}"
                for f in obj
            )
            + "."
        )
    return VALUES.get(name, "")


def _members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties of ``cls`` that tanpuhui defines (on it or a tanpuhui base), by name."""
    found: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if not getattr(base, "__module__", "").startswith("tanpuhui"):
            continue
        for name, value in vars(base).items():
            if name.startswith("_"):
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                found[name] = value
    return sorted(found.items())


def _member_doc(value: Any) -> str:
    target = value.fget if isinstance(value, property) else value
    return inspect.cleandoc(getattr(target, "__doc__", None) or "")


def undocumented(module_name: str) -> list[str]:
    """Public names, methods and properties of ``module_name`` without a docstring of their own."""
    module = importlib.import_module(module_name)
    missing = []
    for name in _names(module):
        obj = getattr(module, name)
        if _kind(obj) == "value":
            if not _value_doc(name, obj):
                missing.append(name)
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            missing.extend(f"{name}.{member}" for member, value in _members(obj) if not _member_doc(value))
    return missing


def _defined_in(package: str, name: str, obj: Any) -> str:
    found = [m for m, mod in sys.modules.items() if m.startswith(package + ".") and name in getattr(mod, "__all__", ())]
    return next((m for m in sorted(found) if getattr(sys.modules[m], name, None) is obj), package)


def render() -> str:
    parts = [HEADER]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        parts.append(f"\n## `{module_name}`\n")
        doc = inspect.getdoc(module) or ""
        if doc:
            parts.append(doc.split("\n\n")[0] + "\n")
        by_source: dict[str, list[str]] = {}
        for name in _names(module):
            obj = getattr(module, name)
            source = getattr(obj, "__module__", None) or module_name
            if _kind(obj) == "value" and source.startswith("tanpuhui"):  # an instance: its class's module is not its
                source = _defined_in(module_name, name, obj)
            by_source.setdefault(source if source.startswith("tanpuhui") else module_name, []).append(name)
        for source in sorted(by_source):
            if source != module_name:
                parts.append(f"\n### from `{source}`\n")
            for name in sorted(by_source[source], key=str.lower):
                obj = getattr(module, name)
                parts.append(f"\n#### `{name}`\n")
                signature = _signature(obj, name) if _kind(obj) != "value" else ""
                parts.append(f"*{_kind(obj)}*" + (f" `{signature}`" if signature else "") + "\n")
                text = inspect.getdoc(obj) if _kind(obj) != "value" else _value_doc(name, obj)
                if text and not (inspect.isclass(obj) and text == inspect.getdoc(type)):
                    parts.append("\n" + re.sub(r"\n{3,}", "\n\n", text) + "\n")
                if inspect.isclass(obj):
                    for member, value in _members(obj):
                        parts.append(f"\n##### `{name}.{member}`\n")
                        if isinstance(value, property):
                            parts.append("*property*\n")
                        else:
                            parts.append(f"*method* `{_signature(value, member)}`\n")
                        doc = _member_doc(value)
                        if doc:
                            parts.append("\n" + re.sub(r"\n{3,}", "\n\n", doc) + "\n")
    return "".join(parts)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_is_in_the_reference(module_name: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    module = importlib.import_module(module_name)
    section = text.split(f"## `{module_name}`", 1)
    assert len(section) == 2, f"docs/sdk-reference.md has no section for {module_name}; regenerate it (see {__file__})"
    body = section[1].split("\n## `", 1)[0]
    missing = [n for n in _names(module) if f"#### `{n}`" not in body]
    assert not missing, (
        f"{module_name} names missing from docs/sdk-reference.md: {', '.join(missing)}; "
        f"regenerate it with `python {Path(__file__).relative_to(DOC.parent.parent)}`"
    )


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_method_and_property_has_a_docstring(module_name: str) -> None:
    missing = undocumented(module_name)
    assert not missing, f"{module_name}: write docstrings for {', '.join(missing)} (they make docs/sdk-reference.md)"


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_method_is_in_the_reference(module_name: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    module = importlib.import_module(module_name)
    body = text.split(f"## `{module_name}`", 1)[1].split("\n## `", 1)[0]
    missing = [
        f"{n}.{m}"
        for n in _names(module)
        if inspect.isclass(getattr(module, n))
        for m, _ in _members(getattr(module, n))
        if f"##### `{n}.{m}`" not in body
    ]
    assert not missing, f"{module_name} methods missing from docs/sdk-reference.md: {', '.join(missing)}; regenerate it"


def test_the_reference_is_what_the_docstrings_say_now() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        f"docs/sdk-reference.md is out of date; regenerate it with `python {Path(__file__).relative_to(DOC.parent.parent)}`"
    )


def test_the_reference_names_nothing_that_is_no_longer_public() -> None:
    text = DOC.read_text(encoding="utf-8")
    public = {n for m in MODULES for n in _names(importlib.import_module(m))}
    documented = set(re.findall(r"^#### `([^`]+)`", text, re.M))
    assert documented <= public, f"documented but not public: {sorted(documented - public)}"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
