"""The documents' fenced code blocks, where they are, and which must not be run (``<!-- not-run: reason -->``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<lang>[^`\s]*)[^`]*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
_RUN_WITH = re.compile(r"^\s*<!--\s*run-with:(?P<fixtures>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its document (relative to the repository), the line of its opening fence (1-based),
    its language, its text, the reason given by a ``<!-- not-run: ... -->`` line just before it (None: none), and
    the fixtures a ``<!-- run-with: NAME[:ARG], ... -->`` line just before it asks the runner for (tests/docs/runner.py
    lists them)."""

    path: str
    line: int
    lang: str
    text: str
    not_run: str | None
    run_with: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def commands(self) -> list[tuple[int, str]]:
        """The shell commands of the block with the document line each starts on: a line ending in ``\\`` or ``|``
        continues on the next; blank lines and comment lines are not commands."""
        found: list[tuple[int, str]] = []
        pending: list[str] = []
        start = 0
        for offset, raw in enumerate(self.text.split("\n"), start=self.line + 1):
            if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            if not pending:
                start = offset
            pending.append(raw)
            if raw.rstrip().endswith(("\\", "|")):
                continue
            found.append((start, "\n".join(pending)))
            pending = []
        if pending:
            found.append((start, "\n".join(pending)))
        return found


def blocks(document: Path) -> list[Block]:
    """Every fenced block of one Markdown document, in order."""
    lines = document.read_text(encoding="utf-8").split("\n")
    rel = document.relative_to(ROOT).as_posix()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.match(before)
        fixtures = _RUN_WITH.match(before)
        found.append(
            Block(
                path=rel,
                line=i + 1,
                lang=opening["lang"].lower(),
                text="\n".join(lines[i + 1 : end]),
                not_run=marker["reason"].strip() if marker else None,
                run_with=tuple(f.strip() for f in fixtures["fixtures"].split(",") if f.strip()) if fixtures else (),
            )
        )
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [b for doc in DOCUMENTS for b in blocks(doc)]


def shell_blocks() -> list[Block]:
    """The ``sh`` blocks the documentation test runs or skips (with a reason)."""
    return [b for b in all_blocks() if b.lang == "sh"]
