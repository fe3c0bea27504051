"""Helpers for the broker sink tests: private broker processes, a TCP proxy that can be cut, outage-driven drains.

The shared brokers on loopback (NATS :4222, RabbitMQ :5672, Mosquitto :1883, PostgreSQL :5432) are never stopped:
an outage is a private broker process killed and started again, a proxy between the sink and the broker whose
connections are cut (and new ones refused) for a while, or a server-side termination of the sink's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tanpuhui.hub.forwarder import Forwarder, ForwardSummary
from tanpuhui.sdk import OutboxRow, Sink, SinkError

ADMIN_DSN = os.environ.get("TANPUHUI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The loopback PostgreSQL's admin connection (trust auth as on the CI machine): consumer databases are made here."""


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with status {process.returncode} (see its log)")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class BrokerProcess:
    """A broker of our own (``command`` with its port), killed with SIGKILL and started again on the same port."""

    command: Sequence[str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(list(self.command), stdout=out, stderr=subprocess.STDOUT)
        self.starts += 1
        wait_for_port(self.port, process=self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM: the broker shuts down as on a service restart (saving what it persists)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@dataclass
class CuttableProxy:
    """A loopback TCP proxy to ``upstream_port``: :meth:`cut` resets every open connection and refuses new ones
    until :meth:`restore` (what a broker restart or a network cut looks like to the client)."""

    upstream_port: int
    port: int = 0
    cut_now: bool = False
    cuts: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.cut_now = True
        self.cuts += 1
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_now = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


async def drain_through_outage(
    store: object,
    sink: Sink,
    *,
    after_rows: int,
    begin: Callable[[], object],
    end: Callable[[], object],
    outage_seconds: float,
    batch_size: int = 50,
) -> tuple[ForwardSummary, Forwarder]:
    """Drain everything to ``sink`` (riding out failures like the sidecar); once ``after_rows`` are marked
    delivered, ``begin()`` the outage a moment later (so it hits a batch in flight) and ``end()`` it after
    ``outage_seconds``. The sink is closed at the end."""
    loop = asyncio.get_running_loop()
    delivered = 0
    started = False
    pending: list[asyncio.Task[object]] = []

    async def outage() -> None:
        await asyncio.sleep(0.005)
        await _maybe_await(begin())
        await asyncio.sleep(outage_seconds)
        await _maybe_await(end())

    def progress(_sink: str, rows: int) -> None:
        nonlocal delivered, started
        delivered += rows
        if delivered >= after_rows and not started:
            started = True
            pending.append(loop.create_task(outage()))

    forwarder = Forwarder(
        store,  # type: ignore[arg-type]
        {"bus": sink},
        batch_size=batch_size,
        attempts=1000,
        initial_backoff=0.05,
        max_backoff=0.4,
        give_up_after=120,
    )
    try:
        summary = await forwarder.drain(progress=progress, ride_out=True)
        for task in pending:
            await task
    finally:
        await sink.aclose()
    return summary, forwarder


async def _maybe_await(value: object) -> None:
    if isinstance(value, Awaitable):
        await value


@dataclass
class TestCertificates:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost it signed (PEM files in ``folder``)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(folder: Path) -> TestCertificates:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tanpuhui test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = TestCertificates(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    out.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    for path in (out.ca_file, out.cert_file, out.key_file):
        path.chmod(0o644)
    return out


def sink_failure(sink: Sink, batch: Sequence[OutboxRow] | None = None) -> SinkError:
    """The :class:`SinkError` that ``sink.check()`` raises (``sink.send(batch)`` with a batch); the test fails when
    it raises none. The sink is closed after."""

    async def attempt() -> SinkError:
        try:
            with pytest.raises(SinkError) as raised:
                await (sink.check() if batch is None else sink.send(batch))
            return raised.value
        finally:
            await sink.aclose()

    return asyncio.run(attempt())
