"""The command line follows one convention: every option has help; every listing takes ``--json`` and prints one
JSON document whose field names are the admin API's; ``pull --quiet`` prints nothing when all went well."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from tanpuhui.hub.cli import main
from tanpuhui.hub.consumer import ConsumerServer
from tanpuhui.hub.demo import run_demo, to_toml
from tanpuhui.hub.plugins import load_plugins
from tanpuhui.hub.server.admin import summary_doc
from tanpuhui.hub.server.openapi_components import COMPONENT_SCHEMAS

LISTINGS = {
    ("adapters",): "adapters",
    ("schemas",): "schemas",
    ("methodologies",): "methodologies",
    ("plugins",): "plugins",
    ("status",): "streams",
    ("quarantine", "list"): "entries",
    ("dead-letters", "list"): "dead_letters",
    ("audit", "list"): "entries",
    ("drift",): "drift",
}
"""Every listing command, and the key of the list in its ``--json`` document."""

NEEDS_CONFIG = {("status",), ("quarantine", "list"), ("dead-letters", "list"), ("audit", "list"), ("drift",)}


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    if isinstance(group, click.Group):  # commands are imported lazily: ask the group, not its loaded table
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, f"tanpuhui {' '.join((*path, name))} is listed but cannot be loaded"
            yield from _commands(command, (*path, name))


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"tanpuhui {' '.join(path)} {'/'.join(option.opts)}"
        for path, command in _commands(main)
        for option in command.params
        if isinstance(option, click.Option) and not (option.help or "").strip()
    ]
    assert not missing, "options without help: " + ", ".join(missing)


def test_every_command_says_what_it_does() -> None:
    silent = [" ".join(path) or "tanpuhui" for path, command in _commands(main) if not (command.help or "").strip()]
    assert not silent, f"commands without help: {silent}"


def test_the_readme_command_list_names_every_top_level_command_and_no_other() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    listed: set[str] = set()
    for line in readme.split("```text\ntanpuhui adapters", 1)[1].split("```", 1)[0].splitlines():
        if line.startswith("tanpuhui "):  # "tanpuhui pause|resume ADAPTER:STREAM ...": both commands
            listed.update(line.split()[1].split("|"))
    listed.add("adapters")  # the block's first line, the one it was found by
    commands = set(main.list_commands(click.Context(main)))
    assert listed == commands, f"missing from README.md: {commands - listed}; not commands: {listed - commands}"


def test_every_listing_takes_json_and_none_uses_format() -> None:
    commands = dict(_commands(main))
    for path in LISTINGS:
        options = {o for p in commands[path].params if isinstance(p, click.Option) for o in p.opts}
        assert "--json" in options, f"tanpuhui {' '.join(path)} has no --json"
    visible_format = [
        " ".join(path)
        for path, command in commands.items()
        for p in command.params
        if isinstance(p, click.Option) and "--format" in p.opts and not p.hidden
    ]
    assert not visible_format, f"--format is --json now: {visible_format}"


@pytest.fixture(scope="module")
def demo_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A store filled by ``tanpuhui demo`` (its partners serve bad items: quarantine entries, an audit log), its
    hub.toml, and the environment its secrets are read from."""
    workdir = tmp_path_factory.mktemp("demo")
    saved = dict(os.environ)
    try:
        run_demo(workdir=workdir, trips=200, fresh=False, from_start=False, console=Console(file=io.StringIO()))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    env = dict(line.split("=", 1) for line in (workdir / "sandbox.env").read_text().splitlines())
    env["REFUSING_SECRET"] = "whsec_" + base64.b64encode(b"r" * 24).decode()
    with ConsumerServer(env["REFUSING_SECRET"], script=[400] * 10) as refusing:  # dead letters: refused for good
        refusing_config = workdir / "refusing.toml"
        refusing_config.write_text(
            (workdir / "hub.toml").read_text()
            + f'\n[sinks.refusing]\ntype = "http"\nurl = "{refusing.url}"\nsecret = {{ env = "REFUSING_SECRET" }}\n',
            encoding="utf-8",
        )
        CliRunner().invoke(main, ["forward", "--config", str(refusing_config), "--sink", "refusing"], env=env)
    yield refusing_config, env


def _invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, f"tanpuhui {' '.join(args)}: {result.output}"
    return result


@pytest.mark.parametrize("path", sorted(LISTINGS), ids=" ".join)
def test_a_listing_with_json_prints_one_document_naming_its_list(
    path: tuple[str, ...], demo_hub: tuple[Path, dict[str, str]]
) -> None:
    config, env = demo_hub
    args = [*path, "--json"] + (["--config", str(config)] if path in NEEDS_CONFIG else [])
    doc = orjson.loads(_invoke(args, env).stdout)
    assert isinstance(doc, dict) and isinstance(doc[LISTINGS[path]], list), doc


def test_quarantine_json_has_the_admin_api_fields(demo_hub: tuple[Path, dict[str, str]]) -> None:
    config, env = demo_hub
    fields = set(COMPONENT_SCHEMAS["QuarantineEntry"]["properties"])
    entries = orjson.loads(_invoke(["quarantine", "list", "--config", str(config), "--json"], env).stdout)["entries"]
    assert entries and all(set(e) == fields - {"raw"} for e in entries)
    assert {e["adapter"] for e in entries} >= {"transit_card", "state_grid"}
    shown = orjson.loads(
        _invoke(["quarantine", "show", str(entries[0]["id"]), "--config", str(config), "--json"], env).stdout
    )
    assert set(shown) == fields and shown["id"] == entries[0]["id"] and isinstance(shown["raw"], dict)


def test_dead_letters_json_has_the_admin_api_fields(demo_hub: tuple[Path, dict[str, str]]) -> None:
    config, env = demo_hub
    letters = orjson.loads(_invoke(["dead-letters", "list", "--config", str(config), "--json"], env).stdout)
    assert letters["dead_letters"], "the refusing sink left no dead letters"
    fields = {"id", "sink", "seq", "record_id", "attempts", "error", "created_at"}  # GET /v1/admin/dead-letters
    assert all(set(d) == fields and d["sink"] == "refusing" for d in letters["dead_letters"])
    assert "400" in letters["dead_letters"][0]["error"]


def test_audit_list_json_is_one_document_of_the_newest_entries(demo_hub: tuple[Path, dict[str, str]]) -> None:
    config, env = demo_hub
    audit = orjson.loads(_invoke(["audit", "list", "--config", str(config), "--limit", "3", "--json"], env).stdout)
    seqs = [e["seq"] for e in audit["entries"]]
    assert len(seqs) == 3 and seqs == sorted(seqs)
    assert set(audit["entries"][0]) == {"seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash"}


def test_schemas_json_rows_are_the_sidecar_listing_rows() -> None:
    rows = orjson.loads(_invoke(["schemas", "--json"]).stdout)["schemas"]
    assert {"transit-card-trip", "reduction-record"} <= {r["name"] for r in rows}
    assert all(set(r) == {"name", "$id", "version", "title", "partner"} for r in rows)


def test_adapters_json_lists_each_adapter_with_its_streams() -> None:
    adapters = {a["name"]: a for a in orjson.loads(_invoke(["adapters", "--json"]).stdout)["adapters"]}
    transit = adapters["transit_card"]
    assert transit["plugin"] == "transit_card" and "transit-card-trip" in transit["schemas"]
    assert {"name": "transactions", "kind": "pull", "schema": "transit-card-trip"} in transit["streams"]
    assert any(s["kind"] == "push" for s in adapters["state_grid"]["streams"])


def test_validate_json_is_the_old_format_json(tmp_path: Path) -> None:
    doc = tmp_path / "trips.json"
    doc.write_bytes(orjson.dumps([{"not": "a trip"}]))
    new = CliRunner().invoke(main, ["validate", str(doc), "--schema", "transit-card-trip", "--json"])
    old = CliRunner().invoke(main, ["validate", str(doc), "--schema", "transit-card-trip", "--format", "json"])
    assert new.exit_code == old.exit_code == 1
    assert orjson.loads(new.stdout) == orjson.loads(old.stdout) and orjson.loads(new.stdout)["invalid"] == 1


@pytest.fixture
def transit_sandbox_config(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A hub.toml pulling from a running transit card sandbox (started through the plugin hook, as the demo does)."""
    with load_plugins().sandboxes["transit_card"](trips=120) as sandbox:
        table, env = sandbox.hub_settings("CLI_TRANSIT_")
        env["CLI_KEYS"] = "v1:" + "a" * 43 + "="
        document = {
            "hub": {"store": "hub.db", "pseudonym_keys": {"env": "CLI_KEYS"}},
            "adapters": {"transit_card": table},
        }
        config = tmp_path / "hub.toml"
        config.write_text(to_toml(document), encoding="utf-8")
        yield config, env


def test_pull_quiet_prints_nothing_when_every_stream_pulled(
    transit_sandbox_config: tuple[Path, dict[str, str]],
) -> None:
    config, env = transit_sandbox_config
    result = CliRunner().invoke(main, ["pull", "transit_card", "--config", str(config), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    again = _invoke(["pull", "transit_card:transactions", "--config", str(config), "--json"], env)
    (summary,) = orjson.loads(again.stdout)["summaries"]
    assert set(summary) == _summary_fields()
    assert summary["stream"] == "transactions" and summary["error"] is None and summary["inserted"] == 0


def _summary_fields() -> set[str]:
    from tanpuhui.hub.drivers.pull import PullSummary

    return {*summary_doc(PullSummary("a", "s")), "leased_elsewhere", "paused"}


def test_pull_quiet_still_names_a_failed_stream(transit_sandbox_config: tuple[Path, dict[str, str]]) -> None:
    config, env = transit_sandbox_config
    env = {
        **env,
        "TANPUHUI__ADAPTERS__TRANSIT_CARD__BASE_URL": "http://127.0.0.1:9",
        "TANPUHUI__ADAPTERS__TRANSIT_CARD__RETRY_ATTEMPTS": "1",
    }
    result = CliRunner().invoke(main, ["pull", "transit_card:transactions", "--config", str(config), "-q"], env=env)
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr.startswith("transit_card:transactions: "), result.stderr
