"""The shared JSON Schemas (draft 2020-12), shipped as package data.

A schema's name is its file name without ``.schema.json`` (``reduction-record``, ``transit-card-trip``, ...).
Adapters shipped by third parties add theirs through :class:`tanpuhui.sdk.Adapter.schemas`; this package only
holds the built-in ones.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

__all__ = ["builtin_names", "load_builtin"]

_SUFFIX = ".schema.json"


def builtin_names() -> list[str]:
    """Names of the schemas shipped with tanpuhui, sorted."""
    files = resources.files(__name__)
    return sorted(p.name[: -len(_SUFFIX)] for p in files.iterdir() if p.name.endswith(_SUFFIX))


@cache
def load_builtin(name: str) -> dict[str, Any]:
    """Load one built-in schema document by name; raises KeyError for an unknown name."""
    path = resources.files(__name__) / f"{name}{_SUFFIX}"
    if not path.is_file():
        raise KeyError(name)
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc
