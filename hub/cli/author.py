"""The adapter author's kit: ``tanpuhui new-adapter``."""

from __future__ import annotations

from pathlib import Path

import click

from ..scaffold import AUTH, PAGING
from .common import UserError, choice_option, err, folder_option, friendly, loaded_plugins, out


@click.command("new-adapter")
@click.argument("name")
@folder_option("--directory", ".", "Where to create the NAME folder.")
@choice_option(
    "--auth",
    AUTH,
    "oauth2",
    "How the partner authenticates the hub: OAuth2 client credentials, a key in an X-API-Key header, or none.",
)
@choice_option(
    "--paging",
    PAGING,
    "cursor",
    "How the partner pages: an opaque cursor, page numbers, offset/limit, or a link to the next page.",
)
@click.option("--no-record", is_flag=True, help="Do not record the conformance cassettes from the sandbox now.")
@click.option("--force", is_flag=True, help="Write into an existing, non-empty NAME folder.")
@friendly
def new_adapter(name: str, directory: Path, auth: str, paging: str, no_record: bool, force: bool) -> None:
    """Scaffold an installable adapter package NAME that passes the conformance suite.

    Writes ./NAME (pyproject with the `tanpuhui` entry point, adapter, partner schema, methodology, sandbox,
    conformance tests, a hub.toml that pulls the sandbox), then records its cassettes from the sandbox with
    `pytest --tanpuhui-record`.
    """
    from ..scaffold import record_cassettes, scaffold

    installed = loaded_plugins().adapters
    if name in installed:
        raise UserError(
            f"an installed adapter is already named {name!r} ({installed[name].__module__}): adapter names are unique "
            "in a hub (they name the [adapters.NAME] table and the webhook routes); choose another NAME"
        )
    made = scaffold(name, directory, force=force, auth=auth, paging=paging)
    for rel in made.files:
        out.print(f"  created {made.root / rel}", markup=False)
    if not no_record:
        err.print("recording the conformance cassettes from the sandbox (pytest --tanpuhui-record) ...")
        result = record_cassettes(made.root)
        if result.returncode != 0:
            err.print(result.stdout[-4000:] + result.stderr[-2000:], markup=False)
            raise UserError(f"recording the cassettes failed (pytest exit {result.returncode}); see above")
        cassettes = sorted((made.root / "tests" / "cassettes").rglob("*.json"))
        out.print(f"  recorded {len(cassettes)} cassettes in {made.root / 'tests' / 'cassettes'}", markup=False)
    out.print(
        f"\nNext: cd {made.root} && pip install -e '.[test]' && pytest\n"
        f"Then pull its sandbox: tanpuhui sandbox serve {name} --port 8765, and tanpuhui pull {name} --config hub.toml\n"
        "Make it yours: docs/adapter-authors.md (partner interface, schema, methodology, re-record).",
        markup=False,
    )
