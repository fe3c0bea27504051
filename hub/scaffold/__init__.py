"""``tanpuhui new-adapter NAME``: scaffold an installable adapter package that passes the conformance suite.

The package (``./NAME``) holds a pull stream for a partner API of the shape asked for (``auth``: OAuth2 client
credentials, an API key or none; ``paging``: cursor, page numbers, offsets or next links), its partner schema with
examples, a methodology valued with a published factor, a plugin module registered under the ``tanpuhui``
entry-point group, a sandbox of the partner (built on the sandbox kit, offered through ``register_sandboxes``), a
hub.toml that pulls it, tests that inherit :class:`tanpuhui.testing.conformance.AdapterConformance`, and ruff and
mypy settings. The scenario cassettes are recorded from the sandbox right after scaffolding (``pytest
--tanpuhui-record``), so the package passes its suite as generated; an author then replaces the partner interface,
the schema and the methodology, and re-records against the real partner.

The package is rendered from ``adapter-template/`` (package data), its variant parts (``settings_class``,
``pages_method``, ...) from ``adapter-fragments/auth/<auth>/`` and ``adapter-fragments/paging/<paging>/``: every
file there is a :class:`string.Template` (``$name`` and friends, ``$$`` for a dollar sign), and so is its path; the
``.tmpl`` suffix is dropped. The suffix keeps the repository's own ruff and mypy runs off the templates;
tests/kit/test_scaffold.py lints, type-checks and runs every variant instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from tanpuhui.sdk import ConfigError

__all__ = ["AUTH", "PAGING", "Scaffold", "record_cassettes", "scaffold"]

NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_KEYWORDS = frozenset({"import", "class", "def", "return", "from", "pass", "async", "await", "test", "tests"})
_SUFFIX = ".tmpl"

AUTH = ("oauth2", "api-key", "none")
"""How the partner authenticates the hub: OAuth2 client credentials, a key in a header, or not at all."""
PAGING = ("cursor", "page", "offset", "next-url")
"""How the partner pages: an opaque cursor, page numbers, offsets, or a link to the next page."""

# What each choice needs imported: (tanpuhui.sdk names in adapter.py, pydantic names, tanpuhui.testing.sandbox names).
_AUTH_IMPORTS = {
    "oauth2": ({"PartnerSettings"}, {"Field"}, {"PartnerSandbox"}),
    "api-key": ({"RetrySettings"}, {"Field", "SecretStr"}, {"ApiKey", "SandboxServer"}),
    "none": ({"RetrySettings"}, {"Field"}, {"SandboxServer"}),
}
_PAGING_IMPORTS = {
    "cursor": {"OFFSET_CURSOR", "positive_int"},
    "page": {"page_count", "page_range", "positive_int"},
    "offset": {"non_negative_int", "offset_range", "positive_int"},
    "next-url": {"link", "non_negative_int", "offset_range", "positive_int"},
}
_SDK_COMMON = {
    "Adapter",
    "AdapterSettings",
    "ConfigError",
    "HttpOptions",
    "ItemRejected",
    "Page",
    "PartnerClient",
    "PartnerResponseError",
    "PullStream",
    "RecordLike",
    "StreamContext",
}
_SANDBOX_COMMON = {"EncodedItems", "SandboxStats", "json_response"}


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What :func:`scaffold` wrote: the package folder and its files (relative paths)."""

    root: Path
    files: tuple[str, ...]


def _isort(names: set[str]) -> list[str]:
    """Names in the order ruff's isort sorts them in a ``from x import (...)``: constants, classes, functions."""
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))


def _names(name: str, auth: str = "oauth2", paging: str = "cursor") -> dict[str, str]:
    title = "".join(part.capitalize() for part in name.split("_"))
    exported = [f"{title}Adapter", f"{title}Settings", "ReadingsStream"]
    sdk, pydantic, kit = _AUTH_IMPORTS[auth]
    return {
        "auth": auth,
        "paging": paging,
        "ENV": name.upper(),
        "sdk_imports": "\n".join(f"    {n}," for n in _isort(_SDK_COMMON | sdk)),
        "pydantic_imports": ", ".join(_isort(pydantic)),
        "sandbox_imports": "\n".join(f"    {n}," for n in _isort(_SANDBOX_COMMON | kit | _PAGING_IMPORTS[paging])),
        "sandbox_base": next(n for n in kit if n.endswith(("Sandbox", "Server"))),
        "name": name,
        "dist": "tanpuhui-" + name.replace("_", "-"),
        "Title": title,
        "host": name.replace("_", "-") + ".sandbox.example",
        "methodology": name.replace("_", "-") + ".saving",
        "schema": name.replace("_", "-") + "-reading",
        # Sorted here as ruff's isort sorts them: the class names depend on NAME.
        "init_imports": ", ".join(sorted(exported)),
        "init_all": ", ".join(f'"{n}"' for n in sorted(exported)),
    }


def scaffold(
    name: str, directory: Path | str = ".", *, force: bool = False, auth: str = "oauth2", paging: str = "cursor"
) -> Scaffold:
    """Write the package ``<directory>/<name>`` for a partner authenticating by ``auth`` (:data:`AUTH`) and paging
    by ``paging`` (:data:`PAGING`); :class:`ConfigError` for a bad name or choice, or an existing folder."""
    if auth not in AUTH or paging not in PAGING:
        raise ConfigError(
            f"new-adapter {name}: auth {auth!r} / paging {paging!r}: auth must be one of {', '.join(AUTH)} and paging "
            f"one of {', '.join(PAGING)}"
        )
    if not NAME.match(name) or name in _KEYWORDS or not name.isidentifier():
        raise ConfigError(
            f"adapter name {name!r} must be 2-64 lower-case letters, digits and underscores, starting with a letter "
            "(it is the Python package, the entry point and the adapter's name in hub.toml), e.g. hefei_water"
        )
    root = Path(directory) / name
    if root.exists() and any(root.iterdir()) and not force:
        raise ConfigError(f"{root} already exists and is not empty; choose another NAME or --directory (or --force)")
    values = _names(name, auth, paging)
    values.update(_fragments(values))
    written = []
    for template_path, template in _templates():
        rel = Template(template_path).substitute(values)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        written.append(rel)
    return Scaffold(root, tuple(written))


def _fragments(values: dict[str, str]) -> dict[str, str]:
    """The variant's pieces of code (``adapter-fragments/auth/<auth>/*.tmpl`` and
    ``adapter-fragments/paging/<paging>/*.tmpl``), each rendered with ``values``, by slot: ``auth_<file>`` and ``paging_<file>``; ``settings.tmpl`` is ``$settings_class``
    and so on (see :data:`_SLOTS`)."""
    root = resources.files(__package__) / "adapter-fragments"
    found: dict[str, str] = {}
    for dimension in ("auth", "paging"):
        for entry in (root / dimension / values[dimension]).iterdir():
            if entry.name.endswith(_SUFFIX):
                slot = entry.name.removesuffix(_SUFFIX)
                text = Template(entry.read_text(encoding="utf-8")).substitute(values).rstrip("\n")
                key = _SLOTS.get(f"{dimension}/{slot}", slot)
                # Blocks go in as they are; whole lines (test_settings, ...) keep their line end.
                found[key] = text + "\n" if text and key in _LINES else text
    return found


_LINES = frozenset({"test_settings", "hub_toml", "suite_extra"})
"""Slots filled with whole lines (or nothing): placed at the start of a line, they bring their own line end."""

_SLOTS = {
    "auth/doc": "auth_doc",
    "paging/doc": "paging_doc",
    "auth/settings": "settings_class",
    "auth/client": "client_property",
    "paging/pages": "pages_method",
    "auth/sandbox_init": "sandbox_init",
    "auth/sandbox_routes": "sandbox_routes",
    "auth/sandbox_refuse": "sandbox_refuse",
    "auth/sandbox_hub_settings": "sandbox_hub_settings",
    "paging/sandbox_page": "sandbox_page",
    "auth/hub_toml": "hub_toml",
}
"""Fragment file -> the ``$slot`` of the templates it fills (by default its own name)."""


def _templates() -> Iterator[tuple[str, Traversable]]:
    """The template files, in path order: (path relative to the package, as a template without ``.tmpl``; file)."""

    def walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                yield from walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(_SUFFIX):
                yield prefix + entry.name.removesuffix(_SUFFIX), entry

    yield from walk(resources.files(__package__) / "adapter-template", "")


def record_cassettes(root: Path) -> subprocess.CompletedProcess[str]:
    """Record the package's conformance cassettes from its sandbox: ``pytest --tanpuhui-record`` in ``root``.

    The package need not be installed: ``src`` goes on ``PYTHONPATH`` for the run.
    """
    env = dict(os.environ)
    src = str((root / "src").resolve())
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tanpuhui-record"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
