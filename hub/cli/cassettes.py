"""``tanpuhui cassettes check``: replay every conformance scenario against the adapter's current sandbox and report
the cassettes that drifted from it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from rich.markup import escape
from rich.table import Table

from .common import UserError, err, folder_option, friendly, out

__all__ = ["cassettes"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One cassette's comparison with its fresh recording."""

    adapter: str
    cassette: Path
    state: str
    """``ok``, ``drift``, ``missing`` (no cassette to compare with) or ``stale`` (no scenario records it)."""
    detail: str = ""


def _interactions(path: Path) -> list[dict[str, Any]]:
    doc = orjson.loads(path.read_bytes())
    found = doc.get("interactions") if isinstance(doc, dict) else None
    return found if isinstance(found, list) else []


def _difference(stored: Path, fresh: Path) -> str:
    """The first difference between a cassette and its fresh recording, in words."""
    try:
        old, new = _interactions(stored), _interactions(fresh)
    except orjson.JSONDecodeError as exc:
        return f"the cassette is not JSON ({exc})"
    for index, (a, b) in enumerate(zip(old, new, strict=False)):
        if a == b:
            continue
        request = f"{b.get('request', {}).get('method', '?')} {b.get('request', {}).get('url', '?')}"
        if a.get("request") != b.get("request"):
            was = f"{a.get('request', {}).get('method', '?')} {a.get('request', {}).get('url', '?')}"
            return f"interaction #{index}: the adapter now sends {request} (recorded: {was})"
        ra, rb = a.get("response", {}), b.get("response", {})
        if ra.get("status") != rb.get("status"):
            return f"interaction #{index} {request}: status {ra.get('status')} now {rb.get('status')}"
        where = _first_difference(ra, rb, "")
        return f"interaction #{index} {request}: the response differs at {where or '/'}"
    if len(old) != len(new):
        return f"{len(old)} recorded interaction(s), {len(new)} now"
    return "the file differs (not its interactions: its description or matching rules)"


def _first_difference(a: Any, b: Any, pointer: str) -> str:
    """The JSON pointer of the first place where ``a`` and ``b`` differ (``pointer`` when they differ there)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{pointer}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{pointer}/{index}")
    return pointer


def compare(into: Path, adapter: str | None) -> list[Verdict]:
    """Verdicts for the recordings listed in ``into``/manifest.jsonl (only ``adapter``'s when given)."""
    manifest = into / "manifest.jsonl"
    entries = (
        [orjson.loads(line) for line in manifest.read_bytes().splitlines() if line.strip()] if manifest.exists() else []
    )
    if adapter is not None:
        entries = [e for e in entries if e["adapter"] == adapter]
    verdicts: list[Verdict] = []
    recorded: dict[Path, str] = {}
    for entry in entries:
        cassette, fresh = Path(entry["cassette"]), Path(entry["recorded"])
        if cassette in recorded:
            continue  # the same scenario played by two tests: compared once
        recorded[cassette] = entry["adapter"]
        if not cassette.exists():
            verdicts.append(Verdict(entry["adapter"], cassette, "missing", "record it with pytest --tanpuhui-record"))
        elif cassette.read_bytes() == fresh.read_bytes():
            verdicts.append(Verdict(entry["adapter"], cassette, "ok"))
        else:
            verdicts.append(Verdict(entry["adapter"], cassette, "drift", _difference(cassette, fresh)))
    folders = {c.parent: a for c, a in recorded.items()}
    for folder, name in sorted(folders.items()):
        for path in sorted(folder.glob("*.json")):
            if path not in recorded:
                verdicts.append(Verdict(name, path, "stale", "no conformance scenario records it: delete it if unused"))
    for parent in sorted({f.parent for f in folders}):  # e.g. tests/cassettes/readings_v1 beside .../readings
        for sibling in sorted(d for d in parent.iterdir() if d.is_dir() and d not in folders):
            if any(sibling.glob("*.json")) and not sibling.name.startswith("."):
                owner = next(a for f, a in folders.items() if f.parent == parent)
                verdicts.append(Verdict(owner, sibling, "stale", _STALE_FOLDER))
    return verdicts


def verdict_table(verdicts: list[Verdict], project: Path) -> Table:
    """The verdicts as a table, cassettes named relative to ``project``. Every cell is shown as it is, not read as
    rich markup: a detail quotes the adapter's URLs and the partner's keys (``?filter[status]=active``)."""
    table = Table("adapter", "cassette", "state", "detail", title="Cassettes against the current sandboxes")
    for v in verdicts:
        shown = os.path.relpath(v.cassette, project.resolve())
        table.add_row(escape(v.adapter), escape(shown), v.state, escape(v.detail))
    return table


_STALE_FOLDER = "a cassette folder no suite recorded in this run (another adapter's, or unused: delete it)"


@click.group()
def cassettes() -> None:
    """The recorded partner exchanges (cassettes) of an adapter project's conformance suites."""


@cassettes.command("check")
@click.argument("adapter", required=False)
@folder_option(
    "--project",
    ".",
    "The adapter project whose conformance suites to run (its pytest root; its src/ goes on the path).",
    exists=True,
)
@click.option(
    "--tests",
    "test_paths",
    multiple=True,
    metavar="PATH",
    help="Test files or folders to run, relative to --project (repeatable) [default: the project's testpaths].",
)
@friendly
def check(adapter: str | None, project: Path, test_paths: tuple[str, ...]) -> None:
    """Replay every conformance scenario against the adapter's current sandbox and compare with its cassettes.

    Runs the project's conformance suites recording from their sandboxes into a temporary folder (pytest
    --tanpuhui-record-into; the cassettes themselves are not touched), then compares each cassette with its fresh
    recording: ok, drift (with the first difference), missing, or stale (a cassette no scenario records). Only
    ADAPTER's cassettes when given.

    Exit status: 0 no drift; 1 a cassette drifted or is missing, or a suite failed against its sandbox; 2 a usage
    error (no suite records ADAPTER, say). Stale cassettes are reported without failing.
    """
    env = dict(os.environ)
    src = project / "src"
    if src.is_dir():  # an adapter project not installed (yet): its package from src/, as new-adapter records
        env["PYTHONPATH"] = str(src.resolve()) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="tanpuhui-cassettes-") as tmp:
        into = Path(tmp)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--tanpuhui-record-into={into}"]
        err.print(f"recording every conformance scenario from its sandbox in {project} ...", markup=False)
        result = subprocess.run(
            [*command, *test_paths], cwd=project, env=env, capture_output=True, text=True, check=False
        )
        verdicts = compare(into, adapter)
    if not verdicts:
        raise UserError(
            f"no conformance suite in {project}{' records adapter ' + repr(adapter) if adapter else ' recorded anything'}"
            f" (pytest exit {result.returncode}); run it in the adapter project, or give --project/--tests"
        )
    out.print(verdict_table(verdicts, project))
    failed = result.returncode not in (0, 5)  # 5: no tests collected (reported above as no suite)
    if failed:
        err.print(result.stdout[-3000:] + result.stderr[-1000:], markup=False)
        err.print(f"the conformance suites failed against their sandboxes (pytest exit {result.returncode})")
    drifted = [v for v in verdicts if v.state in ("drift", "missing")]
    if drifted:
        err.print(
            f"{len(drifted)} cassette(s) drifted from the sandbox: re-record them (pytest --tanpuhui-record) if the "
            "change is intended, else fix the adapter or the sandbox",
            markup=False,
        )
    if drifted or failed:
        sys.exit(1)
