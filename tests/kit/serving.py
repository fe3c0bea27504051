"""Reading what `tanpuhui sandbox serve` prints before it serves."""

from __future__ import annotations

import subprocess


def serve_banner(process: subprocess.Popen[str]) -> str:
    """The lines ``process`` (a running `tanpuhui sandbox serve`) prints up to its first ``export`` line: the
    ``[adapters.NAME]`` table and the variables to export. Fails with its output if it ends before."""
    assert process.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("export ") for line in lines):
        line = process.stdout.readline()
        assert line, f"serve ended early: {''.join(lines)}{process.stderr.read() if process.stderr else ''}"
        lines.append(line)
    return "".join(lines)
