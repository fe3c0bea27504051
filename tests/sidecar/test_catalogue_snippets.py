"""The validate snippets of every schema page, run as a partner would copy them, next to payload.json and
payload.jsonl holding the page's first example: the Python one with python and the curl one with sh, both against a
real sidecar on loopback, and the command line's `tanpuhui` commands. Both ways the pages are published: served under
/catalogue/ and written by `tanpuhui catalogue build --sidecar-url` (the sidecar). Every page's example must come
back valid; a page of a schema without examples (the test plugin's bike-ride) is skipped."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tanpuhui.hub.cli import main
from tanpuhui.schemas import builtin_names

from .conftest import RunningSidecar, SidecarFactory

SNIPPET = re.compile(r"<h3>([^<]+)</h3>\s*<pre><code>(.*?)</code></pre>", re.S)
TOOLS = {"curl", "Python", "Command line (offline)"}
# The snippets talk to 127.0.0.1 directly, whatever proxy this machine is told to use.
ENV = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}


def snippet(page: str, tool: str) -> str:
    """The text a reader copies from the page's ``tool`` block (one of :data:`TOOLS`)."""
    found = {kind: html.unescape(code) for kind, code in SNIPPET.findall(page)}
    assert set(found) == TOOLS, "a schema page shows one curl, one Python and one command-line snippet"
    return found[tool]


def served_pages(server: RunningSidecar, tmp_path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (page, schema) from the sidecar's /catalogue/."""
    names = [row["name"] for row in server.http.get("/v1/schemas").json()["schemas"]]
    pages = {}
    for name in names:
        page = server.http.get(f"/catalogue/schemas/{name}.html")
        schema = server.http.get(f"/catalogue/schemas/{name}.schema.json")
        assert page.status_code == schema.status_code == 200, name
        pages[name] = (page.text, schema.json())
    return pages


def static_pages(server: RunningSidecar, tmp_path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (page, schema) from `tanpuhui catalogue build --sidecar-url SIDECAR`."""
    site = tmp_path / "site"
    result = CliRunner().invoke(main, ["catalogue", "build", str(site), "--sidecar-url", server.url])
    assert result.exit_code == 0, result.output
    return {
        path.name.removesuffix(".html"): (
            path.read_text(encoding="utf-8"),
            orjson.loads(path.with_name(path.name.replace(".html", ".schema.json")).read_bytes()),
        )
        for path in sorted((site / "schemas").glob("*.html"))
    }


def run_python(code: str, workdir: Path, name: str) -> str | None:
    """None when the snippet ran and reported its one document valid, else what went wrong."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=ENV, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0 or done.stdout != "1 document(s) checked: 0 invalid\n":
        return f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    return None


def run_curl(code: str, workdir: Path, name: str) -> str | None:
    """None when each curl command exited 0 and its answer reports one valid document of ``name``."""
    done = subprocess.run(["sh", "-e", "-c", code], cwd=workdir, env=ENV, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    decoder, text, reports = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        try:
            report, end = decoder.raw_decode(text)
        except ValueError:
            return f"not JSON answers: {done.stdout}"
        reports.append(report)
        text = text[end:].lstrip()
    wanted = {"schema": name, "documents": 1, "invalid": 0}
    if len(reports) != 2 or any({k: r.get(k) for k in wanted} != wanted for r in reports):
        return f"answers: {done.stdout}"
    return None


def run_cli(code: str, workdir: Path, name: str) -> str | None:
    """None when each `tanpuhui ...` line of the snippet, run in this process from ``workdir``, exited 0 (for
    `tanpuhui validate`: every document valid). In process: a `tanpuhui` process takes a second to start."""
    for line in code.splitlines():
        command, *args = shlex.split(line)
        if command != "tanpuhui":
            return f"not a tanpuhui command: {line}"
        with contextlib.chdir(workdir):
            result = CliRunner().invoke(main, args)
        if result.exit_code != 0:
            return f"{line}: exit {result.exit_code}\n{result.output}"
    return None


RUNNERS = {"Python": run_python, "curl": run_curl, "Command line (offline)": run_cli}
SITES = {"served": served_pages, "static": static_pages}


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize(
    "tool",
    [
        "Python",
        pytest.param("curl", marks=pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")),
        "Command line (offline)",
    ],
)
def test_every_schema_pages_validate_snippet_runs_and_reports_its_example_valid(
    start_sidecar: SidecarFactory, tmp_path: Path, site: str, tool: str
) -> None:
    server = start_sidecar()
    pages = SITES[site](server, tmp_path)
    assert set(builtin_names()) <= set(pages), "every shipped schema has a page"
    with_examples = {name: page for name, page in pages.items() if page[1].get("examples")}
    assert set(builtin_names()) <= set(with_examples), "every shipped schema has an example"
    failures = {}
    for name, (page, schema) in with_examples.items():
        code = snippet(page, tool)
        assert tool.startswith("Command") or f"{server.url}/v1/validate/{name}" in code, name
        workdir = tmp_path / name
        workdir.mkdir()
        example = schema["examples"][0]
        (workdir / "payload.json").write_bytes(orjson.dumps(example, option=orjson.OPT_INDENT_2))
        (workdir / "payload.jsonl").write_bytes(orjson.dumps(example) + b"\n")
        failure = RUNNERS[tool](code, workdir, name)
        if failure is not None:
            failures[name] = f"{failure}\n--- snippet:\n{code}"
    assert failures == {}
