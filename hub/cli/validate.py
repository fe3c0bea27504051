"""``tanpuhui validate``: check payloads against the shared schemas (what integrators run)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import BinaryIO

import click
import orjson

from ..validation import DocumentReport, iter_documents, report_documents
from .common import UserError, err, friendly, loaded_plugins, out, schema_registry


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option("--schema", "schema_name", required=True, help="Schema name (see `tanpuhui schemas`).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document: the report of the sidecar's POST /v1/validate/{schema} (results, counts).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    hidden=True,
    help="Deprecated: --format json is --json.",
)
@friendly
def validate(file: str, schema_name: str, as_json: bool, fmt: str) -> None:
    """Validate FILE (`-` for stdin) against a schema.

    FILE holds a JSON document, a JSON array of documents, or JSON Lines. Exit status: 0 all valid, 1 some
    invalid, 2 usage error (unknown schema, unreadable file). Errors are JSON pointers with messages. The file is
    read as it is checked (a line of JSON Lines or an element of an array at a time) and reports are printed as
    they come, so memory stays flat whatever its size.
    """
    registry = schema_registry(loaded_plugins())
    compiled = registry.get(schema_name)
    source = "<stdin>" if file == "-" else file
    with contextlib.ExitStack() as closing:
        try:
            stream: BinaryIO = sys.stdin.buffer if file == "-" else closing.enter_context(open(file, "rb"))
        except OSError as exc:
            raise UserError(f"{file}: cannot read: {exc.strerror}") from None
        reports = report_documents(iter_documents(stream, source), compiled)
        if as_json or fmt == "json":
            documents, invalid = _print_json_reports(reports, source, schema_name)
        else:
            documents, invalid = _print_text_reports(reports, source)
            status = "[green]valid[/]" if not invalid else f"[red]{invalid} invalid[/]"
            err.print(f"{source}: {documents} document(s) checked against {schema_name}: {status}")
    sys.exit(1 if invalid else 0)


def _print_text_reports(reports: Iterable[DocumentReport], source: str) -> tuple[int, int]:
    """One line per error, ``FILE:LINE POINTER: message`` (``FILE[INDEX]`` outside JSON Lines), as they come."""
    documents = invalid = 0
    for r in reports:
        documents += 1
        if r.valid:
            continue
        invalid += 1
        where = f"{source}:{r.line}" if r.line is not None else f"{source}[{r.index}]"
        for p in r.problems:
            out.print(f"{where} {p.pointer or '/'}: {p.message}", markup=False)
    return documents, invalid


def _print_json_reports(reports: Iterable[DocumentReport], source: str, schema_name: str) -> tuple[int, int]:
    """The ``--json`` report, written as the documents are checked: the validate endpoint's document, its
    counts after the results (which are not held in memory). Nothing is written before the first report, so an
    input refused outright (empty) leaves no half document behind its error."""
    write = sys.stdout.write
    head = orjson.dumps({"source": source, "schema": schema_name}, option=orjson.OPT_INDENT_2).decode()
    head = head[:-2] + ',\n  "results": ['
    documents = invalid = 0
    for r in reports:
        item = orjson.dumps(r.as_dict(), option=orjson.OPT_INDENT_2).decode().replace("\n", "\n    ")
        write((head + "\n    " if not documents else ",\n    ") + item)
        documents += 1
        invalid += not r.valid
    end = f',\n  "documents": {documents},\n  "invalid": {invalid}\n}}\n'
    write(("\n  ]" if documents else head + "]") + end)
    return documents, invalid
