"""The ``sh`` blocks that are not run (``<!-- not-run: reason -->``) cannot drift either: every ``tanpuhui ...``
command in them parses against the real command line (its subcommands, options and arguments; only ``$VAR``
placeholders and paths that exist only on the reader's machine are let through), and the operator guide's Run block
exports every secret the sidecar configuration it starts refers to."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest

from tanpuhui.hub.cli import main

from .blocks import ROOT, Block, shell_blocks

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATOR = re.compile(r"^[();<>|&]+$")


def tanpuhui_commands(block: Block) -> list[tuple[int, list[str]]]:
    """Each ``tanpuhui ARGS`` simple command of the block (also after ``&&``, ``|``, ``;``, inside ``$(...)`` and
    after ``VAR=value`` prefixes), with the document line its command starts on."""
    found = []
    for line, command in block.commands():
        lexer = shlex.shlex(command.replace("\\\n", " "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        simple: list[list[str]] = [[]]
        for token in lexer:
            if _OPERATOR.match(token):
                simple.append([])
            else:
                simple[-1].append(token)
        for words in simple:
            while words and _ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words and Path(words[0]).name == "tanpuhui":
                found.append((line, words[1:]))
    return found


class _Lenient(click.ParamType):
    """A parameter's own type, except that a ``$VAR`` placeholder is taken as written and a path need not exist
    (it is the reader's file)."""

    def __init__(self, inner: click.ParamType) -> None:
        if isinstance(inner, click.Path):
            inner = copy.copy(inner)
            inner.exists = False
        self.inner = inner
        self.name = inner.name
        self.arity = inner.arity
        self.envvar_list_splitter = inner.envvar_list_splitter

    @property
    def is_composite(self) -> bool:  # type: ignore[override]
        return self.inner.is_composite

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return self.inner.get_metavar(param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "$" in value:
            return value
        return self.inner.convert(value, param, ctx)


def _lenient(command: click.Command) -> click.Command:
    clone = copy.copy(command)
    clone.params = [copy.copy(p) for p in command.params]
    for param in clone.params:
        param.type = _Lenient(param.type)
    return clone


def parse(args: list[str]) -> click.Command:
    """Parses ``tanpuhui ARGS`` as the command line does (``make_context``, resilient parsing off) without running
    it: a click.UsageError when a subcommand, option or argument is not what the CLI takes. The command found."""
    command: click.Command = main
    name, parent = "tanpuhui", None
    while True:
        try:
            ctx = _lenient(command).make_context(name, list(args), parent=parent)
        except click.exceptions.Exit:  # --help, --version
            return command
        if not isinstance(command, click.Group):
            return command
        first = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
        if first is None:
            raise click.UsageError(f"`{name}` needs a subcommand", ctx)
        name, found, args = command.resolve_command(ctx, args[first:])
        assert name is not None and found is not None
        command, parent = found, ctx


NOT_RUN = [(b, line, args) for b in shell_blocks() if b.not_run is not None for line, args in tanpuhui_commands(b)]


@pytest.mark.parametrize(
    ("block", "line", "args"), NOT_RUN, ids=[f"{b.path}:{line}:{' '.join(a[:2])}" for b, line, a in NOT_RUN]
)
def test_a_tanpuhui_command_that_is_not_run_parses_against_the_cli(block: Block, line: int, args: list[str]) -> None:
    try:
        parse(args)
    except click.UsageError as exc:
        pytest.fail(f"{block.path}:{line}: `tanpuhui {shlex.join(args)}` does not parse: {exc.format_message()}")


def test_the_not_run_blocks_hold_tanpuhui_commands_to_check() -> None:
    assert len(NOT_RUN) >= 5, NOT_RUN


def test_commands_are_found_after_operators_assignments_and_in_substitutions() -> None:
    block = Block(
        "x.md",
        1,
        "sh",
        "A=1 tanpuhui pull x --config hub.toml  # a comment\n"
        "cd /srv && .venv/bin/tanpuhui run \\\n  --quiet | tee log\n"
        'R=$(tanpuhui audit list --json | jq -r .x); echo "$R"',
        "why",
    )
    assert tanpuhui_commands(block) == [
        (2, ["pull", "x", "--config", "hub.toml"]),
        (3, ["run", "--quiet"]),
        (5, ["audit", "list", "--json"]),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "transit_card", "--config", "hub.toml", "--no-such-option"],
        ["no-such-command"],
        ["audit", "no-such-subcommand"],
        ["pull", "transit_card", "--wait", "soon"],
        ["new-adapter", "x", "--auth", "kerberos"],
    ],
)
def test_option_drift_fails_to_parse(args: list[str]) -> None:
    with pytest.raises(click.UsageError):
        parse(args)


def test_placeholders_and_the_readers_paths_parse() -> None:
    assert parse(["pull", "transit_card", "--config", "/srv/hub.toml", "--wait", "$SECONDS"]).name == "pull"
    assert parse(["cassettes", "check", "hefei_water", "--project", "/nowhere/hefei_water"]).name == "check"
    assert parse(["evidence", "--config", "hub.toml", "$RECORD"]).name == "evidence"


def _env_references(value: Any) -> set[str]:
    """The variables a configuration refers to (``{ env = "NAME" }`` tables anywhere in it)."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return {value["env"]}
        return set().union(*map(_env_references, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_env_references, value)) if value else set()
    return set()


def test_the_operator_guides_run_block_exports_every_secret_of_its_config() -> None:
    """The Run block starts ``tanpuhui serve --config FILE``: every ``{ env = ... }`` of FILE must be exported in
    it (``STATE_GRID_WEBHOOK_SECRET_OLD`` once went missing), or the reader's sidecar refuses to start."""
    (run,) = [b for b in shell_blocks() if b.path == "docs/operator-guide.md" and "tanpuhui serve" in b.text]
    configs = [args[args.index("--config") + 1] for _, args in tanpuhui_commands(run) if "--config" in args]
    assert configs, f"{run.where}: no `tanpuhui serve --config FILE`"
    with (ROOT / configs[0]).open("rb") as f:
        wanted = _env_references(tomllib.load(f))
    assert "STATE_GRID_WEBHOOK_SECRET_OLD" in wanted
    exported = set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", run.text))
    missing = sorted(wanted - exported)
    assert not missing, f"{run.where}: the Run block does not export {', '.join(missing)} ({configs[0]} needs it)"
