"""The published catalogue: ``tanpuhui schemas [NAME]``, ``tanpuhui schemas diff OLD NEW``, ``tanpuhui catalogue``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import orjson
from rich.markup import escape
from rich.table import Table

from ..catalogue.entries import Catalogue
from ..catalogue.site import DEFAULT_SIDECAR_URL, Site
from ..schema_diff import diff as schema_changes
from ..schema_diff import schema_version
from ..validation import SchemaRegistry
from .common import JSON_OPTION, UserError, friendly, loaded_plugins, out, print_json, schema_registry


class _SchemasGroup(click.Group):
    """``schemas NAME`` for any NAME that is not a subcommand: prints that schema (kept from before ``diff``)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "show", self.commands["show"], args
        return super().resolve_command(ctx, args)


@click.group(cls=_SchemasGroup, invoke_without_command=True)
@JSON_OPTION
@click.pass_context
@friendly
def schemas(ctx: click.Context, as_json: bool) -> None:
    """List the shared JSON Schemas, print one (`schemas NAME`), or compare two versions (`schemas diff`).

    Every schema of the hub and of the installed adapters is listed, with the major version of its $id
    (docs/schemas.md). With --json: {"schemas": [...]}, the rows of the sidecar's GET /v1/schemas.
    """
    if ctx.invoked_subcommand is not None:
        return
    plugins = loaded_plugins()
    registry = schema_registry(plugins)
    if as_json:
        print_json({"schemas": [entry.summary() for entry in Catalogue.of(plugins, registry).schemas]})
        return
    table = Table("schema", "version", "$id", "title", title="Schemas (draft 2020-12)")
    for n in registry.names():
        doc = registry.document(n)
        version = schema_version(doc)
        table.add_row(n, f"v{version}" if version else "-", str(doc.get("$id", "")), str(doc.get("title", "")))
    out.print(table)


@schemas.command(hidden=True)
@click.argument("name")
@friendly
def show(name: str) -> None:
    """Print one schema."""
    registry = schema_registry(loaded_plugins())
    sys.stdout.write(orjson.dumps(registry.document(name), option=orjson.OPT_INDENT_2).decode() + "\n")


@schemas.command("diff")
@click.argument("old")
@click.argument("new")
@friendly
def diff_command(old: str, new: str) -> None:
    """Compare two versions of a schema and say which changes break partners.

    OLD and NEW are schema files or installed schema names. Breaking: a property removed or newly required, a type,
    enum, pattern or format narrowed, a bound tightened, additionalProperties turned false. Not breaking: an
    optional property added, a description changed. Rules: docs/schemas.md.

    Exit status: 0 no breaking change, 1 breaking changes, 2 usage error.
    """
    registry: SchemaRegistry | None = None

    def load(ref: str) -> Mapping[str, Any]:
        nonlocal registry
        path = Path(ref)
        if path.is_file():
            try:
                doc = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise UserError(f"{ref}: not JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise UserError(f"{ref}: a schema is a JSON object, found {type(doc).__name__}")
            return doc
        if registry is None:
            registry = schema_registry(loaded_plugins())
        if ref not in registry.names():
            raise UserError(
                f"{ref}: no such file, and no installed schema of that name; known: {', '.join(registry.names())}"
            )
        return registry.document(ref)

    changes = schema_changes(load(old), load(new))
    for change in changes:
        style = "bold red" if change.breaking else "green"
        out.print(
            f"[{style}]{'BREAKING' if change.breaking else 'ok      '}[/] {escape(change.pointer or '/')}: {escape(change.text)}"
        )
    breaking = sum(1 for c in changes if c.breaking)
    if not changes:
        out.print("no changes")
    else:
        out.print(f"{len(changes)} change(s), {breaking} breaking")
    if breaking:
        sys.exit(1)


@click.group()
def catalogue() -> None:
    """The published catalogue of schemas and methodologies, for partners (the sidecar serves it at /catalogue/)."""


@catalogue.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--sidecar-url",
    default=DEFAULT_SIDECAR_URL,
    show_default=True,
    help="Address of the sidecar the pages' validate snippets post to.",
)
@friendly
def build(directory: Path, sidecar_url: str) -> None:
    """Write the catalogue as a static site in DIRECTORY (created when missing).

    The same pages as the sidecar's /catalogue/: an index by partner, a page per schema and per methodology,
    third-party adapters' included. Links are relative and nothing loads from the network: open index.html from
    disk or publish the folder on a partner portal.
    """
    plugins = loaded_plugins()
    site = Site(Catalogue.of(plugins, schema_registry(plugins)), sidecar_url=sidecar_url)
    try:
        written = site.write(directory)
    except OSError as exc:
        raise UserError(f"{directory}: cannot write the catalogue: {exc.strerror or exc}") from None
    out.print(f"wrote {len(written)} files to {escape(str(directory))}; open {escape(str(directory / 'index.html'))}")
