"""What the catalogue publishes: every schema (the hub's and every installed adapter's) and every methodology version.

A schema's *partner* is the adapter that declares it in ``Adapter.schemas`` (the first one, by name, when several
share a built-in schema); a schema no adapter declares is the hub's own (``reduction-record``). A methodology's
partner is the plugin that registered it. Third-party plugins appear like the built-in ones: they are found through
the same plugin hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tanpuhui.sdk import Methodology

from ..plugins import Plugins
from ..schema_diff import schema_version
from ..validation import SchemaRegistry

__all__ = ["HUB_PARTNER", "Catalogue", "MethodologyEntry", "SchemaEntry"]

HUB_PARTNER = "tanpuhui"
"""The partner name of the schemas no adapter declares (the hub's own)."""


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One published schema."""

    name: str
    document: Mapping[str, Any]
    partner: str
    partner_title: str

    @property
    def id(self) -> str:
        return str(self.document.get("$id", ""))

    @property
    def version(self) -> str | None:
        return schema_version(self.document)

    @property
    def title(self) -> str:
        return str(self.document.get("title", self.name))

    def summary(self) -> dict[str, Any]:
        """The listing row of ``GET /v1/schemas``."""
        return {
            "name": self.name,
            "$id": self.id,
            "version": self.version,
            "title": self.title,
            "partner": self.partner,
        }


@dataclass(frozen=True, slots=True)
class MethodologyEntry:
    """One version of one methodology, with the plugin that registered it."""

    methodology: Methodology
    partner: str

    @property
    def slug(self) -> str:
        """File-name-safe page name: ``tph.transit.metro-1.0.0``."""
        return f"{self.methodology.id}-{self.methodology.version}"


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Everything published, sorted: schemas by name, methodologies by id then version."""

    schemas: list[SchemaEntry]
    methodologies: list[MethodologyEntry]

    @classmethod
    def of(cls, plugins: Plugins, registry: SchemaRegistry) -> Catalogue:
        """The catalogue of what ``plugins`` registered, with the documents of ``registry``."""
        owner: dict[str, tuple[str, str]] = {}
        for name, adapter in sorted(plugins.adapters.items()):
            for schema in adapter.schemas:
                owner.setdefault(schema, (name, adapter.title or name))
        schemas = [
            SchemaEntry(n, registry.document(n), *owner.get(n, (HUB_PARTNER, "tanpuhui hub (records it forwards)")))
            for n in registry.names()
        ]
        registrar = {key: info.name for info in plugins.info for key in info.methodologies}
        methodologies = [
            MethodologyEntry(m, registrar.get(m.key, "?"))
            for versions in plugins.methodologies.values()
            for m in versions.values()
        ]
        methodologies.sort(key=lambda e: (e.methodology.id, _semver(e.methodology.version)))
        return cls(schemas, methodologies)

    def schema(self, name: str) -> SchemaEntry | None:
        return next((s for s in self.schemas if s.name == name), None)

    def partners(self) -> dict[str, list[SchemaEntry]]:
        """Schemas by partner, partners sorted with the hub's own first."""
        out: dict[str, list[SchemaEntry]] = {}
        for entry in sorted(self.schemas, key=lambda s: (s.partner != HUB_PARTNER, s.partner, s.name)):
            out.setdefault(entry.partner, []).append(entry)
        return out


def _semver(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
