"""``tanpuhui validate``: check payloads against the shared schemas (what integrators run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from tanpuhui.sdk import Problem

from ..validation import DocumentReport, read_documents
from .common import UserError, err, friendly, loaded_plugins, out, schema_registry


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--schema", "schema_name", required=True, help="Schema name (see `tanpuhui schemas`).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@friendly
def validate(file: str, schema_name: str, fmt: str) -> None:
    """Validate FILE (`-` for stdin) against a schema.

    FILE holds a JSON document, a JSON array of documents, or JSON Lines. Exit status: 0 all valid, 1 some
    invalid, 2 usage error (unknown schema, unreadable file). Errors are JSON pointers with messages.
    """
    registry = schema_registry(loaded_plugins())
    compiled = registry.get(schema_name)
    if file == "-":
        data, source = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            data, source = Path(file).read_bytes(), file
        except OSError as exc:
            raise UserError(f"{file}: cannot read: {exc.strerror}") from None
    reports = []
    for index, line, doc in read_documents(data, source):
        problems = [doc] if isinstance(doc, Problem) else compiled.problems(doc)
        reports.append(DocumentReport(index, line, problems))
    invalid = [r for r in reports if not r.valid]
    if fmt == "json":
        body = {
            "source": source,
            "schema": schema_name,
            "documents": len(reports),
            "invalid": len(invalid),
            "results": [r.as_dict() for r in reports],
        }
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for r in invalid:
            where = f"{source}:{r.line}" if r.line is not None else f"{source}[{r.index}]"
            for p in r.problems:
                out.print(f"{where} {p.pointer or '/'}: {p.message}", markup=False)
        status = "[green]valid[/]" if not invalid else f"[red]{len(invalid)} invalid[/]"
        err.print(f"{source}: {len(reports)} document(s) checked against {schema_name}: {status}")
    sys.exit(1 if invalid else 0)
