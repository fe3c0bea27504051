"""Running a document's ``sh`` block as a reader would: from a copy of the repository whose ``.venv/bin`` is on PATH
(after ``make install``), with the partners' sandboxes and the sidecar the commands talk to, the files they name,
and what a ``<!-- run-with: ... -->`` line before the block asks for (:data:`FIXTURES`)."""

from __future__ import annotations

import base64
import contextlib
import importlib
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from store.pg import database_url, temporary_database

from tanpuhui.hub.cli.common import schema_registry
from tanpuhui.hub.plugins import load_plugins

from .blocks import ROOT, Block, blocks

BLOCK_TIMEOUT = 600.0
_SKIP = shutil.ignore_patterns(
    ".venv", ".git", "build", "var", ".tanpuhui-demo", "*.egg-info", "__pycache__", ".*_cache", "node_modules"
)
_SIDECAR_URL = re.compile(r"(?:127\.0\.0\.1|localhost):8700")
_CONFIG = re.compile(r"--config[ =](\S+)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_VALIDATE_FILE = re.compile(r"tanpuhui validate (?P<file>[\w./-]+) --schema (?P<schema>[\w-]+)")
_POSTED_FILE = re.compile(r"/v1/validate/(?P<schema>[\w-]+)(?:(?!\n\S).)*?--data-binary @(?P<file>[\w./-]+)", re.S)


@dataclass
class Outcome:
    """What running a block did: the first failing command (document line and text) and everything it printed."""

    block: Block
    failed: tuple[int, str, int] | None = None
    output: str = ""
    extra: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.failed is None:
            return f"{self.block.where}: ok"
        line, command, status = self.failed
        return (
            f"{self.block.path}:{line}: `{command}` exited with status {status}\n"
            f"(the ```sh block at {self.block.where}; mark it `<!-- not-run: reason -->` only if it cannot run)\n"
            + (f"set up for it: {'; '.join(self.extra)}\n" if self.extra else "")
            + f"--- output ---\n{self.output[-6000:]}"
        )


def copy_repository(target: Path) -> Path:
    """The repository as a reader's checkout, without its virtualenv, build outputs and state."""
    shutil.copytree(ROOT, target, ignore=_SKIP, symlinks=True)
    return target


def overlay_venv(workdir: Path) -> Path:
    """``workdir/.venv``: a virtualenv that sees this test run's installed packages (tanpuhui and its tools) and
    gets its own on top (``pip install`` there leaves the test run's environment alone), with every console
    script of the test run's environment (tanpuhui, pip, pytest, ruff, mypy ...) running on its interpreter."""
    venv = workdir / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    parent_site = sysconfig.get_paths()["purelib"]
    Path(site_dir, "_tanpuhui_docs_overlay.pth").write_text(
        f"import site; site.addsitedir({parent_site!r})\n", encoding="utf-8"
    )
    parent_bin = Path(sys.executable).parent
    for script in parent_bin.iterdir():
        target = venv / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        with script.open("rb") as f:
            first = f.readline()
        if not first.startswith(b"#!"):  # a compiled tool (ruff)
            target.symlink_to(script)
        elif b"python" in first:
            body = script.read_bytes().split(b"\n", 1)[1]
            target.write_bytes(b"#!" + str(python).encode() + b"\n" + body)
            target.chmod(0o755)
    return venv


def environment(workdir: Path, venv: Path) -> dict[str, str]:
    """The reader's shell: ``.venv/bin`` first on PATH, keys and tokens set, no stray TANPUHUI settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANPUHUI", "PYTEST", "COV_", "VIRTUAL_ENV"))}
    parent_bin = str(Path(sys.executable).parent)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != parent_bin]
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), *rest]),
        VIRTUAL_ENV=str(venv),
        HOME=str(workdir.parent / "home"),
        TANPUHUI_PSEUDONYM_KEYS="v1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        TANPUHUI_ADMIN_TOKEN=secrets.token_urlsafe(18),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    Path(env["HOME"]).mkdir(exist_ok=True)
    return env


def write_named_files(block: Block, workdir: Path) -> list[str]:
    """The payload files a block validates or posts, when the repository has none by that name: the schema's own
    valid examples (a JSON array for ``.json``, one per line for ``.jsonl``)."""
    wanted = [(m["file"], m["schema"]) for m in _VALIDATE_FILE.finditer(block.text)]
    wanted += [(m["file"], m["schema"]) for m in _POSTED_FILE.finditer(block.text)]
    if not wanted:
        return []
    registry = schema_registry(load_plugins())
    written = []
    for name, schema in wanted:
        path = workdir / name
        if path.exists() or schema not in registry.names():
            continue
        examples = list(registry.document(schema).get("examples", []))
        if name.endswith(".jsonl"):
            path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in examples))
        else:
            path.write_bytes(orjson.dumps(examples if len(examples) != 1 else examples[0]))
        written.append(f"{name}: the {len(examples)} example(s) of schema {schema}")
    return written


def _run(argv: list[str], workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``argv`` run in the checkout with the reader's environment, no input, its output captured."""
    return subprocess.run(
        argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )


def _tanpuhui(workdir: Path, env: dict[str, str], *args: str) -> None:
    """``tanpuhui ARGS`` run in the checkout as the reader's shell would; a failure says what it printed."""
    proc = _run([str(workdir / ".venv" / "bin" / "tanpuhui"), *args], workdir, env)
    if proc.returncode != 0:
        raise RuntimeError(f"`tanpuhui {shlex.join(args)}` exited with {proc.returncode}: {proc.stdout + proc.stderr}")


@contextlib.contextmanager
def _demo(block: Block, workdir: Path, env: dict[str, str], arg: str) -> Iterator[str]:
    """``run-with: demo``: ``tanpuhui demo`` run with the checkout as its workdir, so ``hub.toml`` (a transit_card
    adapter, a ``platform`` sink ...) and its SQLite store ``hub.db`` (with its audit log) are there, and the
    variables of its ``sandbox.env`` exported (the hub.toml's secrets and pseudonym keys)."""
    _tanpuhui(workdir, env, "demo", "--workdir", ".")
    for line in (workdir / "sandbox.env").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            env[key.strip()] = value.strip()
    yield "tanpuhui demo --workdir . (hub.toml, hub.db; sandbox.env exported)"


@contextlib.contextmanager
def _scaffold(block: Block, workdir: Path, env: dict[str, str], arg: str) -> Iterator[str]:
    """``run-with: scaffold:NAME``: ``tanpuhui new-adapter NAME`` run in the checkout (the project in ./NAME, its
    cassettes recorded from its sandbox), as section 1 of docs/adapter-authors.md does."""
    if not arg:
        raise ValueError(f"{block.where}: run-with scaffold needs the adapter's name (scaffold:NAME)")
    _tanpuhui(workdir, env, "new-adapter", arg)
    yield f"tanpuhui new-adapter {arg}"


@contextlib.contextmanager
def _postgres(block: Block, workdir: Path, env: dict[str, str], arg: str) -> Iterator[str]:
    """``run-with: postgres``: a database of its own on the loopback PostgreSQL (tests/store/pg.py; dropped
    afterwards) whose URL is in ``TANPUHUI_STORE_URL``, and ``hub.toml`` the document's last ``toml`` block before
    the block (the configuration the reader was just shown)."""
    shown = [b for b in blocks(ROOT / block.path) if b.lang == "toml" and b.line < block.line]
    if not shown:
        raise ValueError(f"{block.where}: run-with postgres writes hub.toml from a ```toml block before it; none")
    (workdir / "hub.toml").write_text(shown[-1].text + "\n", encoding="utf-8")
    with temporary_database() as dsn:
        env["TANPUHUI_STORE_URL"] = database_url(dsn)
        yield f"hub.toml from {shown[-1].where}; TANPUHUI_STORE_URL={env['TANPUHUI_STORE_URL']}"


FIXTURES = {"demo": _demo, "scaffold": _scaffold, "postgres": _postgres}
"""What ``<!-- run-with: NAME[:ARG], ... -->`` can ask for (each set up in the checkout, in order, before the
block's sandboxes and sidecar)."""


@contextlib.contextmanager
def fixtures_for(block: Block, workdir: Path, env: dict[str, str]) -> Iterator[list[str]]:
    """The fixtures the block's ``run-with`` line names, set up for it and torn down after it."""
    with contextlib.ExitStack() as stack:
        done = []
        for spec in block.run_with:
            name, _, arg = spec.partition(":")
            if name not in FIXTURES:
                raise ValueError(f"{block.where}: run-with {name!r} is none of {', '.join(sorted(FIXTURES))}")
            done.append(stack.enter_context(FIXTURES[name](block, workdir, env, arg.strip())))
        yield done


@contextlib.contextmanager
def _example_plugins() -> Iterator[list[Any]]:
    """The example third-party plugins of examples/*/src, imported from their source (not installed here), and
    forgotten afterwards."""
    saved_path = list(sys.path)
    packages = []
    try:
        for src in sorted((ROOT / "examples").glob("*/src")):
            for package in sorted(p.name for p in src.iterdir() if (p / "plugin.py").exists()):
                sys.path.insert(0, str(src))
                packages.append(package)
        yield [importlib.import_module(f"{package}.plugin") for package in packages]
    finally:
        sys.path[:] = saved_path
        for name in [m for m in sys.modules if m.split(".", 1)[0] in packages]:
            del sys.modules[name]


@contextlib.contextmanager
def sandboxes_for(block: Block, workdir: Path, env: dict[str, str]) -> Iterator[list[str]]:
    """For each hub config a block names (``--config FILE``), the sandbox of every adapter it configures, started
    through the plugin hook as ``tanpuhui demo`` does, and the environment overrides pointing the config at it."""
    configs = {m[1] for m in _CONFIG.finditer(block.text)}
    adapters: dict[str, dict[str, Any]] = {}
    for name in configs:
        path = workdir / name
        if path.is_file():
            with path.open("rb") as f:
                adapters.update(tomllib.load(f).get("adapters", {}))
    if not adapters:
        yield []
        return
    started = []
    with contextlib.ExitStack() as stack:
        plugins = load_plugins(stack.enter_context(_example_plugins()))
        for adapter in sorted(adapters):
            factory = plugins.sandboxes.get(adapter)
            if factory is None:
                continue
            sandbox = stack.enter_context(factory())
            prefix = f"DOCS_{adapter.upper()}_"
            settings, secrets_env = sandbox.hub_settings(prefix)
            env.update(secrets_env)
            for key, value in settings.items():  # the sandbox's own table
                override = f"TANPUHUI__ADAPTERS__{adapter.upper()}__{key.upper()}"
                if isinstance(value, dict) and set(value) == {"env"}:  # a secret: the override holds it
                    env[override] = secrets_env[value["env"]]
                elif isinstance(value, list | dict):
                    env[override] = _toml_value(value)
                else:
                    env[override] = value if isinstance(value, str) else _toml_value(value)
            started.append(f"sandbox {adapter} at {sandbox.url}")
        yield started


def _toml_value(value: Any) -> str:
    """A setting as a ``TANPUHUI__...`` override reads it: a TOML value (strings quoted, tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def _toml_key(key: str) -> str:
    """A key of an inline table: bare when TOML allows it, quoted otherwise (``"ZJ-TPH-GJCX-2023@1.0"``)."""
    return key if _BARE_KEY.fullmatch(key) else orjson.dumps(key).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sidecar_for(block: Block, workdir: Path, env: dict[str, str]) -> Iterator[int | None]:
    """A sidecar (``tanpuhui serve``) for a block that talks to one on 127.0.0.1:8700: started on a free port, which
    the block's commands are pointed at instead."""
    if not _SIDECAR_URL.search(block.text):
        yield None
        return
    config = workdir / "docs-sidecar.toml"
    config.write_text(
        '[hub]\nstore = "docs-sidecar.db"\npseudonym_keys = { env = "TANPUHUI_PSEUDONYM_KEYS" }\n\n'
        '[server]\nadmin_token = { env = "TANPUHUI_ADMIN_TOKEN" }\n',
        encoding="utf-8",
    )
    port = _free_port()
    log = (workdir / "docs-sidecar.log").open("wb")
    proc = subprocess.Popen(
        [str(workdir / ".venv" / "bin" / "tanpuhui"), "serve", "--config", str(config), "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar did not start: {(workdir / 'docs-sidecar.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def script(block: Block, port: int | None) -> str:
    """The block as one bash script that stops at the first failing command and names its document line."""
    parts = ["set -o pipefail"]
    for line, command in block.commands():
        if port is not None:
            command = _SIDECAR_URL.sub(f"127.0.0.1:{port}", command)
        parts.append(command)
        parts.append(
            f'__status=$?; if [ $__status -ne 0 ]; then echo; echo "__DOCS_FAILED__ {line} $__status" >&2; exit 97; fi'
        )
    return "\n".join(parts) + "\n"


def run_block(block: Block, workdir: Path) -> Outcome:
    venv = overlay_venv(workdir)
    env = environment(workdir, venv)
    outcome = Outcome(block)
    with contextlib.ExitStack() as stack:
        outcome.extra += stack.enter_context(fixtures_for(block, workdir, env))
        outcome.extra += write_named_files(block, workdir)
        outcome.extra += stack.enter_context(sandboxes_for(block, workdir, env))
        port = stack.enter_context(sidecar_for(block, workdir, env))
        proc = _run(["bash", "-c", script(block, port)], workdir, env)
    outcome.output = proc.stdout + proc.stderr
    failed = re.search(r"__DOCS_FAILED__ (\d+) (\d+)", proc.stderr)
    if failed:
        line = int(failed[1])
        command = dict(block.commands())[line]
        outcome.failed = (line, command, int(failed[2]))
    elif proc.returncode != 0:
        outcome.failed = (block.line, shlex.join(["bash", "-c", "..."]), proc.returncode)
    return outcome
