"""What the commands share: consoles, the --config option, one-line errors, plugins, opening the hub."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import orjson
from click.decorators import FC
from rich.console import Console
from rich.markup import escape

from tanpuhui.sdk import TanpuhuiError, redact

from ..config import HubConfig, load_config
from ..plugins import Plugins, PluginWarning, load_plugins
from ..validation import SchemaRegistry

P = ParamSpec("P")
R = TypeVar("R")

# Piped output (logs, CI, `| less`) gets wide tables instead of rich's 80-column default for non-terminals.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="hub.toml",
    envvar="TANPUHUI_CONFIG",
    show_default=True,
    help="Hub configuration (TOML). Env: TANPUHUI_CONFIG.",
)

JSON_OPTION = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (the admin API's field names) instead of a table.",
)


def choice_option(name: str, choices: Sequence[str], default: str, help: str) -> Callable[[FC], FC]:
    """An option that takes one of ``choices``; --help shows its default."""
    return click.option(name, type=click.Choice(choices), default=default, show_default=True, help=help)


def folder_option(name: str, default: str, help: str, *, exists: bool = False) -> Callable[[FC], FC]:
    """An option naming a folder (``exists``: one that is there already); --help shows its default."""
    folder = click.Path(file_okay=False, exists=exists, path_type=Path)
    return click.option(name, type=folder, default=Path(default), show_default=True, help=help)


def file_option(name: str, help: str) -> Callable[[FC], FC]:
    """An option naming a file to write, none by default."""
    return click.option(name, type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)


def print_json(doc: Any) -> None:
    """A listing's ``--json`` output: one indented JSON document on stdout."""
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


class UserError(click.ClickException):
    """A mistake in the input or configuration: printed as one line, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        err.print(f"[bold red]error:[/] {escape(self.message)}", markup=True)


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the project's own errors into one clear line instead of a stack trace."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TanpuhuiError as exc:
            raise UserError(redact(str(exc))) from None

    return wrapper


def loaded_plugins() -> Plugins:
    """Load plugins; a broken plugin is reported once as a clean warning line (the hub goes on without it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        plugins = load_plugins()
    for problem in plugins.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}")
    return plugins


def schema_registry(plugins: Plugins) -> SchemaRegistry:
    docs: dict[str, Any] = {}
    for cls in plugins.adapters.values():
        docs.update(cls.schemas)
    return SchemaRegistry(docs)


def open_hub(config_path: Path, *, long_running: bool = False) -> Any:
    from ..hub import Hub
    from ..process import tune_gc

    config: HubConfig = load_config(config_path)
    hub = Hub(config, plugins=loaded_plugins())
    if long_running:
        tune_gc()  # what start-up built stays for the whole command: not walked by every full collection
    return hub
