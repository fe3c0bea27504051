"""``tanpuhui sandbox serve NAME``: an installed adapter's partner sandbox on a port, with the settings to pull it."""

from __future__ import annotations

import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from tanpuhui.sdk import Sandbox

from .common import UserError, err, file_option, friendly, loaded_plugins, out

__all__ = ["sandbox"]


def env_prefix(adapter: str) -> str:
    """The default prefix of the variables holding an adapter's sandbox secrets: ``<ADAPTER>_`` (what the hub.toml
    ``tanpuhui new-adapter`` writes refers to)."""
    return re.sub(r"[^A-Z0-9]", "_", adapter.upper()) + "_"


@click.group()
def sandbox() -> None:
    """Partner sandboxes of the installed adapters (plugin hook register_sandboxes)."""


@sandbox.command("serve")
@click.argument("name")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to serve on; 0 lets the system pick a free one (printed).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind: loopback unless you mean to share it."
)
@click.option(
    "--env-prefix",
    "prefix",
    default=None,
    metavar="PREFIX",
    help="Prefix of the environment variables that carry the sandbox's secrets [default: NAME upper-cased, then _].",
)
@file_option(
    "--env-file",
    "Also write those variables to this file (VAR=value lines, mode 0600), for `set -a; . FILE; set +a`.",
)
@friendly
def serve_sandbox(name: str, port: int, host: str, prefix: str | None, env_file: Path | None) -> None:
    """Serve the sandbox of the installed adapter NAME until Ctrl-C (or SIGTERM).

    Prints the [adapters.NAME] table that reaches it (secrets as { env = "VAR" } references) and the variables to
    export; `tanpuhui pull NAME --config hub.toml` then pulls it. The hub.toml `tanpuhui new-adapter` writes
    matches the default port and prefix.
    """
    from ..demo import to_toml

    plugins = loaded_plugins()
    factory = plugins.sandboxes.get(name)
    if factory is None:
        offered = ", ".join(sorted(plugins.sandboxes)) or "none"
        raise UserError(
            f"no installed adapter named {name!r} offers a sandbox (plugin hook register_sandboxes); "
            f"sandboxes: {offered}"
        )
    try:
        made = factory(host=host, port=port)
    except TypeError as exc:
        raise UserError(f"the {name} sandbox's factory does not take host= and port= ({exc})") from None
    if not isinstance(made, Sandbox):
        raise UserError(f"the {name} sandbox's factory returned {type(made).__name__}, not a tanpuhui.sdk.Sandbox")
    try:
        made.start()
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, stopping) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        table, env = made.hub_settings(prefix if prefix is not None else env_prefix(name))
        out.print(f"# hub.toml\n{to_toml({'adapters': {name: table}})}", markup=False)
        if env:
            out.print("# environment", markup=False)
            for var, value in env.items():
                out.print(f"export {var}={shlex.quote(value)}", markup=False)
        if env_file is not None:
            env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
            env_file.chmod(0o600)
            err.print(f"wrote {env_file}", markup=False)
        sys.stdout.flush()
        err.print(f"{name} sandbox serving on {made.url} (Ctrl-C stops it)", markup=False)
        while not stop.wait(0.5):
            pass
    finally:
        made.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        err.print(f"{name} sandbox stopped", markup=False)
