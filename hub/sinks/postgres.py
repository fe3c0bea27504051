"""A sink that inserts each record as a row of a consumer's PostgreSQL table.

The table (see :func:`consumer_table_ddl`, also in docs/sinks.md) is keyed by the record id; a batch is one
``INSERT ... SELECT FROM unnest(...) ON CONFLICT (record_id) DO NOTHING`` statement, so a batch sent again after a
failure adds nothing twice (exactly-once rows from at-least-once delivery), and a batch is in the table entirely or
not at all.

A lost connection, a timeout, a server shutting down or out of resources, a serialization failure or deadlock, or a
table that does not exist yet is transient (retried, the sink pauses on the batch); anything else the server
refuses (a missing privilege, a column the table lacks, a record the ``jsonb`` type rejects) is permanent: the batch
is dead-lettered at once with the server's answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator

from tanpuhui.sdk import OutboxRow, Sink, SinkError, SinkSettings

from .common import ConnectLock, TlsSettings, display_url, one_line, reject_url_password

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresSettings", "PostgresSink", "consumer_table_ddl"]

log = logging.getLogger("tanpuhui.forwarder")

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
"""Connection exceptions, transaction rollbacks (serialization, deadlock), insufficient resources, operator
intervention (shutdown, cancel), system errors: worth trying again."""
TRANSIENT_SQLSTATES = frozenset({"42P01", "55P03"})
"""undefined_table (the consumer has not created it yet), lock_not_available."""


def consumer_table_ddl(table: str = "tanpuhui_records") -> str:
    """The ``CREATE TABLE`` for a consumer table named ``table`` (``name`` or ``schema.name``)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n"
        "    record_id    text PRIMARY KEY,\n"
        "    adapter      text NOT NULL,\n"
        "    stream       text NOT NULL,\n"
        "    scenario     text NOT NULL,\n"
        "    kind         text NOT NULL DEFAULT 'created',\n"
        "    record       jsonb NOT NULL,\n"
        "    delivered_at timestamptz NOT NULL DEFAULT now()\n"
        ")"
    )


class PostgresSettings(SinkSettings):
    """``[sinks.NAME]`` with ``type = "postgres"`` (see docs/sinks.md).

    ``url``: ``postgresql://user@host:port/dbname`` (libpq parameters in the query allowed), never a password:
    ``password = { env = "NAME" }`` (or PGPASSWORD in the hub's environment). ``table``: ``name`` or
    ``schema.name``; ``create_table``: create it (:func:`consumer_table_ddl`) on first use when missing.
    ``tls``: verify the server (``sslmode = "verify-full"``) with ``ca_file``, client certificate optional.
    """

    type: Literal["postgres"] = "postgres"
    url: str = Field(pattern=r"^postgres(ql)?://")
    password: SecretStr | None = None
    table: str = Field(default="tanpuhui_records", pattern=rf"^{_IDENTIFIER}(\.{_IDENTIFIER})?$")
    create_table: bool = False
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    tls: TlsSettings | None = None
    timeout: float = Field(default=10.0, gt=0, description="seconds to connect, and for one batch's statement")

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        reject_url_password(value)
        if "password=" in value.partition("?")[2]:
            raise ValueError('the URL holds a literal password; use password = { env = "NAME" }')
        return value


class PostgresSink(Sink):
    """Inserts batches into the consumer's table over one connection per sink, reconnecting after a failure."""

    kind = "postgres"
    Settings = PostgresSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        super().__init__(name, settings)
        self._settings = self.settings_as(PostgresSettings)
        table = self._settings.table
        self._where = f"postgres sink {name!r} ({display_url(self._settings.url)}, table {table})"
        self._insert = (
            f"INSERT INTO {table} (record_id, adapter, stream, scenario, kind, record) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]::jsonb[]) "
            "ON CONFLICT (record_id) DO NOTHING"
        )
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._created = False
        self._connecting = ConnectLock()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        async with self._connecting():
            return await self._connect_locked()

    async def _connect_locked(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        import psycopg
        import psycopg.conninfo

        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is not None and self._loop is loop and not connection.closed and not connection.broken:
            return connection
        await self._drop()
        s = self._settings
        params: dict[str, str | int] = {
            "application_name": f"tanpuhui sink {self.name}"[:63],
            "connect_timeout": max(1, round(s.timeout)),
        }
        # A batch's INSERT may not hang on a lock for ever; the URL's own options (search_path, ...) are kept.
        own_options = psycopg.conninfo.conninfo_to_dict(s.url).get("options")
        params["options"] = " ".join(
            filter(None, [str(own_options or ""), f"-c statement_timeout={int(s.timeout * 1000)}"])
        )
        if s.password is not None:
            params["password"] = s.password.get_secret_value()
        if s.tls is not None:
            params["sslmode"] = s.sslmode or "verify-full"
            for key, path in (("sslrootcert", s.tls.ca_file), ("sslcert", s.tls.cert_file), ("sslkey", s.tls.key_file)):
                if path is not None:
                    params[key] = str(path)
        elif s.sslmode is not None:
            params["sslmode"] = s.sslmode
        try:
            conninfo = psycopg.conninfo.make_conninfo(s.url, **params)
            connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise SinkError(f"{self._where}: cannot connect ({one_line(exc)})", retryable=True) from exc
        self._connection, self._loop = connection, loop
        if s.create_table and not self._created:
            try:
                await connection.execute(consumer_table_ddl(s.table).encode())
            except psycopg.Error as exc:
                # Setting up is never the records' fault (two replicas racing to create it, a missing privilege):
                # retried and shown by /readyz, never a reason to dead-letter a batch.
                error = self._error("creating the table", exc)
                raise SinkError(str(error), retryable=True) from exc
            self._created = True
        return connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self._loop is asyncio.get_running_loop():
            try:
                await connection.close()
            except Exception:  # a broken connection: nothing left to release
                log.debug("%s: close failed", self._where, exc_info=True)

    def _error(self, doing: str, exc: Exception) -> SinkError:
        import psycopg

        state = getattr(exc, "sqlstate", None) or ""
        transient = (
            isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            or state[:2] in TRANSIENT_SQLSTATE_CLASSES
            or state in TRANSIENT_SQLSTATES
        )
        code = f" [SQLSTATE {state}]" if state else ""
        return SinkError(f"{self._where}: {doing} failed{code} ({one_line(exc)})", retryable=transient)

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        import psycopg

        if not batch:
            return
        connection = await self._connect()
        columns = (
            [row.record_id for row in batch],
            [row.adapter for row in batch],
            [row.stream for row in batch],
            [row.scenario for row in batch],
            [row.kind for row in batch],
            [row.body.decode("utf-8", "replace") for row in batch],
        )
        try:
            await connection.execute(self._insert.encode(), columns)
        except psycopg.Error as exc:
            if connection.broken or connection.closed:
                await self._drop()
            first, last = batch[0].record_id, batch[-1].record_id
            raise self._error(f"inserting {len(batch)} record(s) {first}..{last}", exc) from exc

    async def check(self) -> None:
        """Connected, and the table answers a query."""
        import psycopg

        connection = await self._connect()
        try:
            await connection.execute(f"SELECT 1 FROM {self._settings.table} LIMIT 0".encode())
        except psycopg.Error as exc:
            if connection.broken:
                await self._drop()
            raise self._error("reading the table", exc) from exc

    async def aclose(self) -> None:
        await self._drop()
