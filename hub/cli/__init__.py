"""The ``tanpuhui`` command line: one module per concern, the commands gathered on :func:`main` here."""

from __future__ import annotations

import click

from .audit import audit, drift
from .author import new_adapter
from .cassettes import cassettes
from .catalogue import catalogue, schemas
from .listings import adapters, methodologies, plugins
from .operate import dead_letters, quarantine
from .pull import forward, pull
from .sandbox import sandbox
from .serve import demo, migrate, serve
from .status import status
from .validate import validate

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tanpuhui")
def main() -> None:
    """tanpuhui: the carbon-inclusion (碳普惠) integration hub.

    Pulls and receives low-carbon behaviour data from partners, validates it against shared JSON Schemas,
    quantifies reductions with cited methodologies, pseudonymises people, deduplicates, and forwards
    normalized reduction records. Start with `tanpuhui demo`.
    """


for command in (
    adapters,
    schemas,
    catalogue,
    methodologies,
    plugins,
    validate,
    pull,
    forward,
    quarantine,
    dead_letters,
    demo,
    serve,
    new_adapter,
    migrate,
    audit,
    drift,
    status,
    sandbox,
    cassettes,
):
    main.add_command(command)
