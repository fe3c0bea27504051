"""The ``tanpuhui`` command line: one module per concern, the commands gathered on :func:`main` here.

Each command's module is imported when the command runs (or when ``--help`` lists them), not at start-up: a
``tanpuhui run`` from cron does not pay for the sidecar, the console and the catalogue it never uses (~0.2 s of
CPU per start, docs/performance.md).
"""

from __future__ import annotations

import importlib

import click

__all__ = ["main"]

_COMMANDS = {
    # command name -> "module:attribute" under tanpuhui.hub.cli
    "adapters": "listings:adapters",
    "schemas": "catalogue:schemas",
    "catalogue": "catalogue:catalogue",
    "methodologies": "listings:methodologies",
    "plugins": "listings:plugins",
    "validate": "validate:validate",
    "pull": "pull:pull",
    "forward": "pull:forward",
    "run": "run:run",
    "quarantine": "operate:quarantine",
    "dead-letters": "operate:dead_letters",
    "demo": "serve:demo",
    "serve": "serve:serve",
    "new-adapter": "author:new_adapter",
    "migrate": "serve:migrate",
    "audit": "audit:audit",
    "drift": "audit:drift",
    "status": "status:status",
    "pause": "pausing:pause",
    "resume": "pausing:resume",
    "repartition": "repartition:repartition",
    "report": "verification:report",
    "evidence": "verification:evidence",
    "sandbox": "sandbox:sandbox",
    "cassettes": "cassettes:cassettes",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (see the module docstring)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module, _, attribute = _COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tanpuhui")
def main() -> None:
    """tanpuhui: the carbon-inclusion (碳普惠) integration hub.

    Pulls and receives low-carbon behaviour data from partners, validates it against shared JSON Schemas,
    quantifies reductions with cited methodologies, pseudonymises people, deduplicates, and forwards
    normalized reduction records. Start with `tanpuhui demo`.
    """
