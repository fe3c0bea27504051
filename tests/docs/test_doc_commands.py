r"""Every ``sh`` block of README.md and docs/**/*.md runs as written, so a document that drifts from the code fails
the build.

Each block runs in bash from a fresh copy of the repository whose ``.venv/bin`` is first on PATH (what the README
asks after ``make install``), with ``TANPUHUI_PSEUDONYM_KEYS`` and ``TANPUHUI_ADMIN_TOKEN`` set; the sandbox of every
adapter of a ``--config FILE`` it names (started through the plugin hook, as ``tanpuhui demo`` does, the config
pointed at it by ``TANPUHUI__...`` overrides); a sidecar when it talks to 127.0.0.1:8700 (on a free port instead);
and, for a payload file it validates or posts that does not exist, the schema's own examples. A block preceded by
``<!-- not-run: reason -->`` is skipped with that reason. A failure names the document, the line and the command.

A block is one command per line (a line ending in ``\`` or ``|`` continues); every command must exit 0 (show a
failing command's output in a ```text block instead, or end it with ``; echo "exit status $?"``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .blocks import Block, shell_blocks
from .runner import copy_repository, run_block, script

BLOCKS = shell_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_documented_shell_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        assert block.not_run, f"{block.where}: <!-- not-run: ... --> needs a reason"
        pytest.skip(f"{block.where} not run: {block.not_run}")
    assert block.commands(), f"{block.where}: an empty ```sh block"
    workdir = copy_repository(tmp_path / "checkout")
    outcome = run_block(block, workdir)
    assert outcome.failed is None, outcome.message()


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
