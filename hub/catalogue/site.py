"""The catalogue's pages: rendered from the Jinja2 templates in ``templates/`` (package data), offline-safe.

One set of pages serves both uses: the sidecar answers them under ``/catalogue/`` and ``tanpuhui catalogue build
DIR`` writes them as a static site. Every link is relative and the pages load nothing from the network (one
stylesheet next to them, no scripts), so the site works from a partner portal, an intranet or a ``file://`` URL.

Pages (paths relative to the catalogue's root): ``index.html`` (by partner), ``schemas/<name>.html`` (field table,
examples, how to validate), ``schemas/<name>.schema.json`` (the schema itself), ``methodologies/<id>-<version>.html``
and ``style.css``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..validation import CompiledSchema
from .entries import Catalogue, MethodologyEntry, SchemaEntry
from .fields import fields_of

__all__ = ["DEFAULT_SIDECAR_URL", "Site", "python_literal"]

DEFAULT_SIDECAR_URL = "http://127.0.0.1:8700"
"""Where the snippets send payloads unless told otherwise (the sidecar's default address)."""

_JSON_PRETTY = orjson.OPT_INDENT_2


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tanpuhui.hub.catalogue", "templates"),
        autoescape=select_autoescape(("html",)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pretty"] = lambda doc: orjson.dumps(doc, option=_JSON_PRETTY).decode()
    return env


class Site:
    """The catalogue's pages for one :class:`~.entries.Catalogue`; ``sidecar_url`` goes into the snippets."""

    def __init__(self, catalogue: Catalogue, *, sidecar_url: str = DEFAULT_SIDECAR_URL) -> None:
        self.catalogue = catalogue
        self.sidecar_url = sidecar_url.rstrip("/")
        self._env = _environment()

    def paths(self) -> list[str]:
        """Every file of the site, by path relative to its root."""
        out = ["index.html", "style.css"]
        for entry in self.catalogue.schemas:
            out += [f"schemas/{entry.name}.html", f"schemas/{entry.name}.schema.json"]
        out += [f"methodologies/{m.slug}.html" for m in self.catalogue.methodologies]
        return out

    def page(self, path: str) -> bytes | None:
        """One file of the site (``index.html``, ``schemas/<name>.html``, ...), or None when there is no such file."""
        if path in ("", "index.html"):
            return self._render("index.html", root="", partners=self._partners())
        if path == "style.css":
            return (files(__package__) / "templates" / "style.css").read_bytes()
        folder, _, name = path.partition("/")
        if folder == "schemas":
            entry = self.catalogue.schema(name.removesuffix(".html").removesuffix(".schema.json"))
            if entry is None:
                return None
            if name == f"{entry.name}.schema.json":
                return orjson.dumps(dict(entry.document), option=_JSON_PRETTY)
            if name == f"{entry.name}.html":
                return self._render("schema.html", root="../", **self._schema_page(entry))
        if folder == "methodologies":
            found = next((m for m in self.catalogue.methodologies if f"{m.slug}.html" == name), None)
            if found is not None:
                versions = [e for e in self.catalogue.methodologies if e.methodology.id == found.methodology.id]
                return self._render("methodology.html", root="../", entry=found, versions=versions)
        return None

    def write(self, directory: Path) -> list[Path]:
        """Write every page under ``directory`` (created when missing); returns the files written."""
        written = []
        for rel in self.paths():
            body = self.page(rel)
            assert body is not None, rel  # every listed path renders
            path = directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            written.append(path)
        return written

    def _render(self, template: str, **context: Any) -> bytes:
        return self._env.get_template(template).render(**context).encode()

    def _partners(self) -> list[dict[str, Any]]:
        by_partner = self.catalogue.partners()
        methodologies: dict[str, list[MethodologyEntry]] = {}
        for m in self.catalogue.methodologies:
            methodologies.setdefault(m.partner, []).append(m)
        names = list(by_partner) + [p for p in sorted(methodologies) if p not in by_partner]
        return [
            {
                "name": name,
                "title": by_partner[name][0].partner_title if name in by_partner else name,
                "schemas": by_partner.get(name, []),
                "methodologies": methodologies.get(name, []),
            }
            for name in names
        ]

    def _schema_page(self, entry: SchemaEntry) -> dict[str, Any]:
        compiled = CompiledSchema(entry.name, entry.document)
        invalid = [
            {"document": doc, "problems": compiled.problems(doc)}
            for doc in entry.document.get("x-invalid-examples", ())
        ]
        example: Any = next(iter(entry.document.get("examples", ())), {})
        return {
            "entry": entry,
            "fields": fields_of(entry.document),
            "examples": list(entry.document.get("examples", ())),
            "invalid_examples": invalid,
            "validate_url": f"{self.sidecar_url}/v1/validate/{entry.name}",
            "documents_literal": python_literal([orjson.loads(orjson.dumps(example))], column=len("documents = ")),
        }


def python_literal(value: Any, *, column: int = 0, indent: int = 0, width: int = 100) -> str:
    """A JSON value (objects, arrays, strings, numbers, true/false/null) as Python source that evaluates to it:
    ``True``/``False``/``None`` for the JSON words, strings double-quoted. On one line when it fits in ``width``
    from ``column`` (where it starts on its line), else one item per line, indented by 4 from ``indent``, with
    trailing commas (black's layout)."""
    flat = _flat_literal(value)
    if column + len(flat) + 1 <= width or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + 4
    pad = " " * inner
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            head = f"{pad}{_flat_literal(key)}: "
            lines.append(head + python_literal(item, column=len(head), indent=inner, width=width) + ",")
        opening, closing = "{", "}"
    else:
        lines = [pad + python_literal(item, column=inner, indent=inner, width=width) + "," for item in value]
        opening, closing = "[", "]"
    return "\n".join([opening, *lines, " " * indent + closing])


def _flat_literal(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        # A JSON string (its escapes are Python's too), line and paragraph separators escaped for editors.
        return orjson.dumps(value).decode().replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat_literal(k)}: {_flat_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat_literal(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {value!r}")
