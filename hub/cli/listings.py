"""Listings: installed adapters, methodologies and plugins (schemas: :mod:`.catalogue`)."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from tanpuhui.sdk import Adapter, Factor, PullStream

from .common import JSON_OPTION, friendly, loaded_plugins, out, print_json


@click.command()
@click.option("--verbose", "-v", is_flag=True, help="Also show each plugin's distribution, version and hooks.")
@JSON_OPTION
@friendly
def adapters(verbose: bool, as_json: bool) -> None:
    """List installed adapters and their streams.

    With --json: {"adapters": [...]}, each with name, version, streams (name, kind, schema), schemas and plugin
    (the plugins themselves: `tanpuhui plugins --json`).
    """
    plugins = loaded_plugins()
    if as_json:
        owners = {a: p.name for p in plugins.info for a in p.adapters}
        print_json({"adapters": [_adapter_doc(n, cls, owners.get(n)) for n, cls in sorted(plugins.adapters.items())]})
        return
    table = Table("adapter", "version", "streams", "schemas", "plugin", title="Adapters")
    owner = {a: p for p in plugins.info for a in p.adapters}
    for name, cls in sorted(plugins.adapters.items()):
        streams = ", ".join(f"{t.name} ({'pull' if issubclass(t, PullStream) else 'push'})" for t in cls.stream_types)
        info = owner.get(name)
        table.add_row(name, cls.version, streams or "-", ", ".join(cls.schemas) or "-", info.name if info else "?")
    out.print(table)
    if verbose:
        ptable = Table("plugin", "distribution", "version", "hooks", "registered", title="Plugins")
        for p in plugins.info:
            registered = ", ".join(p.adapters + p.methodologies + p.sinks)
            ptable.add_row(p.name, p.distribution, p.version, ", ".join(sorted(p.hooks)), registered)
        out.print(ptable)


def _adapter_doc(name: str, cls: type[Adapter], plugin: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "version": cls.version,
        "streams": [
            {
                "name": t.name,
                "kind": "pull" if issubclass(t, PullStream) else "push",
                "schema": t.schema,
            }
            for t in cls.stream_types
        ],
        "schemas": sorted(cls.schemas),
        "plugin": plugin,
    }


def _vintage(f: Factor) -> str:
    """`` [data year 2022, activities 2024-01-01..2024-12-31]`` for a factor vintage, else nothing."""
    if f.valid_from is None and f.valid_to is None:
        return ""
    year = f"data year {f.data_year}, " if f.data_year is not None else ""
    start, end = f.valid_from or "…", f.valid_to or "…"
    return f" [{year}activities {start}..{end}{', single or secondary source' if f.single_source else ''}]"


@click.command()
@JSON_OPTION
@friendly
def methodologies(as_json: bool) -> None:
    """List registered methodologies with their factors and sources.

    With --json: {"methodologies": [...]}, each as recorded in reduction records (id, version, formula, factors).
    """
    plugins = loaded_plugins()
    items = [m for versions in plugins.methodologies.values() for m in versions.values()]
    items.sort(key=lambda m: (m.id, m.version))
    if as_json:
        print_json({"methodologies": [m.describe() for m in items]})
        return
    table = Table("id", "version", "scenario", "formula", "factors", title="Methodologies", show_lines=True)
    for m in items:
        factors = "\n".join(
            f"{f.name} = {f.value} {f.unit}{' [labelled default]' if f.default else ''}{_vintage(f)}\n  source: {f.source}"
            for f in m.factors
        )
        # a plugin's text, shown as it is: "[labelled default]" and a source's "[1]" are not rich markup
        table.add_row(escape(m.id), escape(m.version), escape(m.scenario), escape(m.formula.text), escape(factors))
    out.print(table)


@click.command()
@JSON_OPTION
@friendly
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version, hooks implemented and what each registered.

    Plugins come from the `tanpuhui` entry-point group (built-in adapters included). Set TANPUHUI_TRACE_HOOKS=1 to
    print every hook call on stderr (hook, plugin, milliseconds). With --json: {"plugins": [...], "problems": [...]}.
    """
    loaded = loaded_plugins()
    if as_json:
        rows = [
            {
                "plugin": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "hooks": sorted(p.hooks),
                "adapters": p.adapters,
                "methodologies": p.methodologies,
                "sinks": p.sinks,
            }
            for p in loaded.info
        ]
        print_json({"plugins": rows, "problems": loaded.problems})
        return
    table = Table("plugin", "distribution", "version", "hooks", "registered", title="Plugins")
    for p in loaded.info:
        registered = ", ".join(p.adapters + p.methodologies + p.sinks) or "-"
        table.add_row(p.name, p.distribution, p.version or "-", ", ".join(sorted(p.hooks)) or "-", registered)
    out.print(table)
