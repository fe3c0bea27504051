r"""Every ``sh`` block of README.md and docs/**/*.md runs as written, so a document that drifts from the code fails
the build.

Each block runs in bash from a fresh copy of the repository whose ``.venv/bin`` is first on PATH (what the README
asks after ``make install``), with ``TANPUHUI_PSEUDONYM_KEYS`` and ``TANPUHUI_ADMIN_TOKEN`` set; the sandbox of every
adapter of a ``--config FILE`` it names (started through the plugin hook, as ``tanpuhui demo`` does, the config
pointed at it by ``TANPUHUI__...`` overrides); a sidecar when it talks to 127.0.0.1:8700 (on a free port instead);
and, for a payload file it validates or posts that does not exist, the schema's own examples. A block preceded by
``<!-- run-with: NAME[:ARG], ... -->`` gets what it names first, so it runs as the reader types it (runner.FIXTURES:
``demo``, the demo's hub.toml and store in the checkout; ``scaffold:NAME``, a scaffolded adapter project;
``postgres``, a database of its own on the loopback PostgreSQL with the document's hub.toml). A block preceded by
``<!-- not-run: reason -->`` is skipped with that reason (its ``tanpuhui`` commands are still parsed:
test_not_run_blocks.py). A failure names the document, the line and the command. Where the document shows what a
fixture's block prints, :data:`PRINTS` holds the output to that.

A block is one command per line (a line ending in ``\`` or ``|`` continues); every command must exit 0 (show a
failing command's output in a ```text block instead, or end it with ``; echo "exit status $?"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .blocks import ROOT, Block, blocks, shell_blocks
from .runner import copy_repository, run_block, script

BLOCKS = shell_blocks()


def shown_output(block: Block) -> str:
    """The ```text block right after the block in its document: what the document says it prints."""
    after = next((b for b in blocks(ROOT / block.path) if b.line > block.line), None)
    assert after is not None and after.lang == "text", f"{block.where}: no ```text block after it"
    return after.text


def _shape(line: str) -> re.Pattern[str]:
    """A shown output line as a pattern: ``...`` elides (with the hex digits around it: ``9c1f...e07a``, a hash),
    numbers may differ (counts, sequence numbers)."""
    pieces = re.split(r"[0-9a-f]*\.\.\.[0-9a-f]*", line.strip())
    return re.compile(".*?".join(re.sub(r"\d+", r"\\d+", re.escape(piece)) for piece in pieces))


def prints_the_lines_shown(block: Block, output: str) -> None:
    """Every line of the ```text block after the block has a line of the output of the same shape."""
    lines = [line.strip() for line in output.splitlines()]
    missing = [s for s in shown_output(block).splitlines() if not any(_shape(s).fullmatch(o) for o in lines)]
    assert not missing, f"{block.where}: the document shows lines it no longer prints: {missing}"


def applies_the_migrations_shown(block: Block, output: str) -> None:
    """``tanpuhui migrate`` on a new database applies exactly the migrations the document lists, in order."""

    def applied(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip().startswith("applied ")]

    shown = applied(shown_output(block))
    assert applied(output) == shown, f"{block.where}: the document lists other migrations than migrate applies"
    assert re.search(rf"schema version 0 -> {len(shown)}$", output, re.M), output


PRINTS: dict[tuple[str, str], Callable[[Block, str], None]] = {
    # (document, the block's first command): the check of its output against what the document shows
    ("docs/reliability.md", "tanpuhui audit verify --config hub.toml"): prints_the_lines_shown,
    ("docs/scaling.md", "tanpuhui migrate --config hub.toml"): applies_the_migrations_shown,
}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_documented_shell_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        assert block.not_run, f"{block.where}: <!-- not-run: ... --> needs a reason"
        pytest.skip(f"{block.where} not run: {block.not_run}")
    assert block.commands(), f"{block.where}: an empty ```sh block"
    workdir = copy_repository(tmp_path / "checkout")
    outcome = run_block(block, workdir)
    assert outcome.failed is None, outcome.message()
    check = PRINTS.get((block.path, block.commands()[0][1]))
    if check is not None:
        check(block, outcome.output)


def test_every_output_check_finds_its_block() -> None:
    run = {(b.path, b.commands()[0][1]) for b in BLOCKS if b.not_run is None and b.commands()}
    assert not set(PRINTS) - run, f"PRINTS names blocks that are not run (any more): {sorted(set(PRINTS) - run)}"


def test_a_shown_line_matches_its_output_with_other_counts() -> None:
    assert _shape("audit log intact: 89 entries; head 89:fc3c...7d1b").fullmatch(
        "audit log intact: 1843 entries; head 1843:9c1fa0e07a5b7d1b"
    )
    assert not _shape("entry 17 (page.commit state_grid:readings) was edited").fullmatch(
        "entry 17 (page.commit transit_card:transactions) was edited"
    )


def test_a_failing_command_is_named_with_its_document_and_line(tmp_path: Path) -> None:
    block = Block("docs/example.md", 40, "sh", "tanpuhui --version\n\ntanpuhui schemas no-such-schema\nls", None)
    workdir = copy_repository(tmp_path / "checkout")
    outcome = run_block(block, workdir)
    assert outcome.failed == (43, "tanpuhui schemas no-such-schema", 2)
    message = outcome.message()
    assert message.startswith("docs/example.md:43: `tanpuhui schemas no-such-schema` exited with status 2")
    assert "no-such-schema" in message.split("--- output ---", 1)[1]


def test_the_sidecar_address_is_pointed_at_the_test_sidecar() -> None:
    block = Block(
        "x.md", 1, "sh", "curl -sS http://127.0.0.1:8700/healthz \\\n  -H 'A: b'\ncurl localhost:8700/x", None
    )
    text = script(block, 41234)
    assert "127.0.0.1:41234/healthz" in text and "127.0.0.1:41234/x" in text and "8700" not in text
