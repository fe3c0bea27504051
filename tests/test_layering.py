"""The layering the project's structure promises, beside the import-linter contracts in pyproject.toml
(`lint-imports`, run by `make lint`): the hub and the adapters use only the SDK's public surface."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PUBLIC_SDK_MODULES = {"tanpuhui.sdk", "tanpuhui.sdk.hookspecs"}
"""What the hub and adapters may import from: ``tanpuhui.sdk`` (its ``__all__``) and the hook specifications."""


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if p.name != "sandbox.py")


def _sdk_imports(path: Path) -> list[str]:
    """``module: name`` for every import from the SDK that is not its public surface."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tanpuhui.sdk"):
            if node.module not in PUBLIC_SDK_MODULES:
                found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names]
            elif node.module == "tanpuhui.sdk":
                found += [f"line {node.lineno}: {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name.startswith("tanpuhui.sdk.") and a.name not in PUBLIC_SDK_MODULES
            ]
    return found


@pytest.mark.parametrize("folder", ["hub", "adapters"])
def test_the_hub_and_adapters_import_only_the_public_sdk(folder: str) -> None:
    problems = {str(p.relative_to(ROOT)): _sdk_imports(p) for p in _sources(folder)}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, "import these from `tanpuhui.sdk` (export them there if adapters need them too): " + "; ".join(
        f"{k} {', '.join(v)}" for k, v in problems.items()
    )


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
