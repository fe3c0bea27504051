"""``tanpuhui new-adapter NAME``: scaffold an installable adapter package that passes the conformance suite.

The package (``./NAME``) holds a pull stream for a partner API of the most common shape (OAuth2 client credentials,
cursor paging), its partner schema with examples, a methodology valued with a published factor, a plugin module
registered under the ``tanpuhui`` entry-point group, an in-process sandbox of the partner, tests that inherit
:class:`tanpuhui.testing.conformance.AdapterConformance`, and ruff and mypy settings. The scenario cassettes are recorded from the sandbox
right after scaffolding (``pytest --tanpuhui-record``), so the package passes its suite as generated; an author then
replaces the partner interface, the schema and the methodology, and re-records against the real partner.

The package is rendered from ``adapter-template/`` (package data): every file there is a
:class:`string.Template` (``$name`` and friends, ``$$`` for a dollar sign), and so is its path; the ``.tmpl``
suffix is dropped. The suffix keeps the repository's own ruff and mypy runs off the templates;
tests/kit/test_scaffold.py lints, type-checks and runs what they render instead.
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

__all__ = ["Scaffold", "record_cassettes", "scaffold"]

NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_KEYWORDS = frozenset({"import", "class", "def", "return", "from", "pass", "async", "await", "test", "tests"})
_SUFFIX = ".tmpl"


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What :func:`scaffold` wrote: the package folder and its files (relative paths)."""

    root: Path
    files: tuple[str, ...]


def _names(name: str) -> dict[str, str]:
    title = "".join(part.capitalize() for part in name.split("_"))
    exported = [f"{title}Adapter", f"{title}Settings", "ReadingsStream"]
    return {
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


def scaffold(name: str, directory: Path | str = ".", *, force: bool = False) -> Scaffold:
    """Write the package ``<directory>/<name>``; :class:`ConfigError` for a bad name or an existing folder."""
    if not NAME.match(name) or name in _KEYWORDS or not name.isidentifier():
        raise ConfigError(
            f"adapter name {name!r} must be 2-64 lower-case letters, digits and underscores, starting with a letter "
            "(it is the Python package, the entry point and the adapter's name in hub.toml), e.g. hefei_water"
        )
    root = Path(directory) / name
    if root.exists() and any(root.iterdir()) and not force:
        raise ConfigError(f"{root} already exists and is not empty; choose another NAME or --directory (or --force)")
    values = _names(name)
    written = []
    for template_path, template in _templates():
        rel = Template(template_path).substitute(values)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        written.append(rel)
    return Scaffold(root, tuple(written))


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
