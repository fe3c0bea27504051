"""The documents are written so their commands can be run: shell in ``sh`` blocks without prompts, a reason on
every block that is not run, and no link pointing outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .blocks import DOCUMENTS, ROOT, Block, all_blocks

_PROMPTED = re.compile(r"^\s*\$ ", re.M)
_SHELL_LANGS = {"console", "shell", "shell-session", "bash", "zsh", "terminal"}
_LINK = re.compile(r"\[[^\]]*\]\((?P<target><[^>]+>|[^)\s]+)[^)]*\)|(?:href|src)=\"(?P<html>[^\"]+)\"")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.I)
_PATH_MENTION = re.compile(r"`(?P<path>\.{0,2}/?(?:[\w.-]+/)+[\w.-]+\.(?:md|toml|py|json|png))`")


def _rel(doc: Path) -> str:
    return doc.relative_to(ROOT).as_posix()


def test_every_not_run_block_says_why() -> None:
    unexplained = [b.where for b in all_blocks() if b.not_run is not None and not b.not_run]
    assert not unexplained, f"<!-- not-run: REASON --> needs a reason at {', '.join(unexplained)}"


def test_shell_sessions_are_sh_blocks_without_prompts() -> None:
    """A command to run goes in a ```sh block as written (its output in a separate ```text block), so the docs test
    runs it; a prompted session (`$ cmd` and its output) cannot be run and drifts unnoticed."""
    wrong: list[str] = []
    for b in all_blocks():
        if b.lang in _SHELL_LANGS:
            wrong.append(f"{b.where}: ```{b.lang} block: write ```sh (commands) and ```text (output)")
        elif _PROMPTED.search(b.text) and b.not_run is None:
            line = b.line + 1 + b.text[: _PROMPTED.search(b.text).start()].count("\n")  # type: ignore[union-attr]
            wrong.append(f"{b.path}:{line}: a `$ ` prompt in a ```{b.lang or '(plain)'} block")
    assert not wrong, "\n".join(wrong)


_COMMAND_LINE = re.compile(r"^(?:tanpuhui|python3?|\.venv/bin/\S+|curl|make|pip|pytest|export) ", re.M)


def test_commands_are_not_hidden_in_plain_blocks() -> None:
    """A plain ``` block of commands escapes the docs test: commands go in ```sh (or ```text for a synopsis)."""
    plain = [b.where for b in all_blocks() if b.lang == "" and _COMMAND_LINE.search(b.text)]
    assert not plain, f"plain blocks holding commands (write ```sh, or ```text for a synopsis): {plain}"


def _links(doc: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    inside: str | None = None
    for number, line in enumerate(doc.read_text(encoding="utf-8").split("\n"), start=1):
        fence = re.match(r"^\s*(```+)", line)
        if fence:
            inside = None if inside == fence[1] else inside or fence[1]
            continue
        if inside:
            continue
        for m in _LINK.finditer(line):
            target = (m["target"] or m["html"]).strip("<>")
            if not _EXTERNAL.match(target):
                found.append((number, target.split("#", 1)[0]))
        for m in _PATH_MENTION.finditer(line):  # a file of this repository, or one outside it
            top = m["path"].split("/", 1)[0]
            if top in ("..", "shared"):  # the project's notes beside the checkout: not shipped with it
                found.append((number, "../" + m["path"] if top == "shared" else m["path"]))
    return found


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_rel)
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    """Links and backquoted file paths name files of this repository: nothing that exists only on the author's
    machine (a ``../shared/...`` note) or nowhere."""
    broken: list[str] = []
    for number, target in _links(doc):
        if not target:
            continue
        candidates = [(doc.parent / target).resolve(), (ROOT / target).resolve()]
        inside = [c for c in candidates if c.is_relative_to(ROOT)]
        if not inside:
            broken.append(f"{_rel(doc)}:{number}: {target} points outside the repository")
        elif not any(c.exists() for c in inside) and "*" not in target:
            broken.append(f"{_rel(doc)}:{number}: {target} does not exist")
    assert not broken, "\n".join(broken)


_NOTES = re.compile(r"(?<![\w/.-])(?:\.\./)*shared/[A-Z][A-Z_]*\.md")


def test_no_file_points_at_notes_outside_the_repository() -> None:
    """Docstrings, comments and documents cite primary sources or this repository's documents, never the project
    notes kept beside the checkout (its domain notes, say): a reader of the package cannot open them."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for name in filter(None, tracked.decode().split("\0")):
        path = ROOT / name
        if not path.is_file() or path.suffix not in {".py", ".md", ".toml", ".json", ".txt", ".html", ".cfg", ".in"}:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), start=1):
            found += [f"{name}:{number}: {m[0]}" for m in _NOTES.finditer(line)]
    assert not found, "cite the primary source or a document of the repository instead:\n" + "\n".join(found)


def test_the_block_reader_sees_fences_not_run_markers_and_commands(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "adapter-authors.md"
    blocks_of_doc = [b for b in all_blocks() if b.path == "docs/adapter-authors.md"]
    assert blocks_of_doc and all(isinstance(b, Block) for b in blocks_of_doc)
    first = blocks_of_doc[0]
    assert doc.read_text(encoding="utf-8").split("\n")[first.line - 1].startswith("```")
    sample = Block("x.md", 10, "sh", "# a comment\ncurl -sS a \\\n  -d b\n\nls | \\\n  wc -l", None)
    assert sample.commands() == [(12, "curl -sS a \\\n  -d b"), (15, "ls | \\\n  wc -l")]
