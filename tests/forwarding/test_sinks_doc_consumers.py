"""docs/sinks.md's consumers run as written: each prints what the hub's sink of its type delivered.

For each consumer (the ```python block of a sink's section) realistic records go through the real sink to the server
on loopback, with the subject, routing key or topic template of the document's hub.toml table for that sink; the
block's text runs as written, with only its example names replaced by the test's own (a stream, exchange, queue,
database, topic or client id nobody else uses). Every replacement must find its text as often as the test expects,
so an edited example fails here until the test follows it. The consumer then prints one line per delivered record:
its id and what the document has it print beside (subject, routing key or topic and payload length; scenario and
reduction), checked against the records the sink delivered. A consumer that fails shows its traceback at the lines
of docs/sinks.md it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import linecache
import secrets
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aio_pika
import aiomqtt
import nats
import orjson
import pytest
from docs.blocks import ROOT, Block, blocks
from nats.js.errors import NotFoundError
from test_amqp_sink import BROKER, amqp_sink
from test_mqtt_sink import mqtt_sink
from test_nats_sink import SHARED_NATS, nats_sink
from test_postgres_sink import pg_sink

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.sdk import OutboxRow, Sink

DOC = ROOT / "docs" / "sinks.md"
KINDS = ("nats", "amqp", "postgres", "mqtt")
RECORDS = 6  # two of each scenario the fixtures make (metro, bus, peak electricity saving)
CONSUMER = "docs/sinks.md consumer"  # the name of the task running a consumer's main()


def consumer(kind: str) -> Block:
    """The ```python block of the document's section on ``kind`` (``## `kind`: ...``)."""
    lines = DOC.read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines, 1) if line.startswith(f"## `{kind}`"))
    end = next((i for i, line in enumerate(lines, 1) if i > start and line.startswith("## ")), len(lines))
    found = [b for b in blocks(DOC) if b.lang == "python" and start < b.line < end]
    assert len(found) == 1, f"docs/sinks.md:{start}: expected one consumer in the section, found {len(found)}"
    return found[0]


def documented_table(kind: str) -> dict[str, Any]:
    """The document's hub.toml table for the sink of type ``kind``."""
    tables = [
        table
        for b in blocks(DOC)
        if b.lang == "toml"
        for table in tomllib.loads(b.text).get("sinks", {}).values()
        if table.get("type") == kind
    ]
    assert len(tables) == 1, f"docs/sinks.md: expected one [sinks.NAME] table of type {kind!r}, found {len(tables)}"
    return tables[0]


def replaced(text: str, where: str, replacements: dict[str, tuple[int, str]]) -> str:
    """``text`` with each ``old`` replaced by ``new``, after checking it occurs exactly ``times`` times."""
    for old, (times, new) in replacements.items():
        found = text.count(old)
        assert found == times, (
            f"{where}: the test replaces {old!r} {times} time(s) but finds it {found} time(s): "
            "the example changed, update tests/forwarding/test_sinks_doc_consumers.py with it"
        )
        text = text.replace(old, new)
    return text


def run_block(block: Block, text: str) -> dict[str, Any]:
    """Executes the block's (replaced) text as a module, its line numbers those of the document (a traceback shows
    the document's lines); its namespace."""
    filename = str(DOC)
    source = "\n" * block.line + text + "\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": f"sinks_md_line_{block.line}"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def printed(out: io.StringIO, skip: int = 0) -> list[tuple[str, ...]]:
    """The lines the consumer printed (after the first ``skip``), split into their fields."""
    return [tuple(line.split(" ")) for line in out.getvalue().splitlines()[skip:]]


def printed_ids(out: io.StringIO, skip: int = 0) -> set[str]:
    return {fields[0] for fields in printed(out, skip)}


def expected(rows: list[OutboxRow], where: Callable[[OutboxRow], str]) -> list[tuple[str, ...]]:
    """What the consumer prints for each row: id, where it arrived, payload length (the stored record, unchanged)."""
    return sorted((row.record_id, where(row), str(len(row.body))) for row in rows)


@contextlib.asynccontextmanager
async def running(
    main: Callable[[], Coroutine[Any, Any, None]], opened: list[Any] | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """The consumer's ``main()`` running as a task; at the end it is stopped, as its process would be: cancelled,
    and the connections it ``opened`` (:func:`opened_by_consumer`) closed."""
    task = asyncio.create_task(main(), name=CONSUMER)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        while opened:
            await opened.pop().close()


async def until(task: asyncio.Task[None], condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Waits (20 s at most) for ``condition``; the consumer's own error if it stopped before."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        outcome = condition()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        if task.done():
            task.result()  # the consumer's exception, with the document's lines
            raise AssertionError(f"the consumer returned before {what}")
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def deliver(store: Any, sink: Sink, rows: list[OutboxRow]) -> None:
    """The outbox (``rows``, not delivered yet) through the sink, as the hub's forwarder delivers it; a delivery
    failure (the sink's warning is in the test's log) fails the test at once instead of being retried."""
    try:
        await sink.check()
        summary = await Forwarder(store, {"bus": sink}, batch_size=4, attempts=1).drain()
    finally:
        await sink.aclose()
    assert (summary["bus"].delivered, summary["bus"].dead_lettered) == (len(rows), 0), summary["bus"]


@pytest.fixture
def opened_by_consumer(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], list[Any]]:
    """``track(module)``: the list of the connections a consumer opens with ``module.connect`` (to close them when
    it is stopped; the consumers run until killed, never closing them)."""

    def track(module: Any) -> list[Any]:
        opened: list[Any] = []
        connect = module.connect

        async def noting_connect(*args: Any, **kwargs: Any) -> Any:
            connection = await connect(*args, **kwargs)
            task = asyncio.current_task()
            if task is not None and task.get_name() == CONSUMER:
                opened.append(connection)
            return connection

        monkeypatch.setattr(module, "connect", noting_connect)
        return opened

    return track


@pytest.fixture
def stdout() -> io.StringIO:
    """What the consumer prints (``printing_to`` it)."""
    return io.StringIO()


def printing_to(out: io.StringIO, run: Callable[[], Awaitable[Any]]) -> Any:
    """``asyncio.run(run())`` (a minute at most) with sys.stdout redirected to ``out``; a failed wait says what the
    consumer printed."""
    with contextlib.redirect_stdout(out):
        try:
            return asyncio.run(asyncio.wait_for(run(), 60))
        except AssertionError as failed:
            raise AssertionError(f"{failed}; the consumer printed:\n{out.getvalue()}") from failed


def test_every_consumer_the_document_shows_is_run_here():
    shown = [b.line for b in blocks(DOC) if b.lang == "python"]
    assert shown == sorted(consumer(kind).line for kind in KINDS)


def test_the_nats_consumer_prints_every_record_the_nats_sink_published(store, fill, stdout, opened_by_consumer):
    fill(store, RECORDS)
    rows = store.read_outbox(0, RECORDS)
    block = consumer("nats")
    tag = secrets.token_hex(4)
    stream, prefix = f"TANPUHUI_DOC_{tag.upper()}", f"tanpuhui_doc_{tag}.reductions."
    code = replaced(block.text, block.where, {'"TANPUHUI"': (2, f'"{stream}"'), "tanpuhui.reductions.": (2, prefix)})
    table = documented_table("nats")
    subject = replaced(table["subject"], "docs/sinks.md [sinks.bus]", {"tanpuhui.reductions.": (1, prefix)})
    assert table["stream"] == "TANPUHUI"
    main = run_block(block, code)["main"]
    opened = opened_by_consumer(nats)

    async def stream_exists() -> bool:
        nc = await nats.connect(SHARED_NATS)
        try:
            await nc.jetstream().stream_info(stream)
            return True
        except NotFoundError:
            return False
        finally:
            await nc.close()

    async def run() -> None:
        try:
            async with running(main, opened) as task:
                await until(task, stream_exists, f"the consumer to create the stream {stream}")
                await deliver(store, nats_sink(SHARED_NATS, subject=subject, stream=stream), rows)
                await until(task, lambda: printed_ids(stdout) >= {r.record_id for r in rows}, "every record")
        finally:
            nc = await nats.connect(SHARED_NATS)
            with contextlib.suppress(NotFoundError):
                await nc.jetstream().delete_stream(stream)
            await nc.close()

    printing_to(stdout, run)

    assert sorted(printed(stdout)) == expected(rows, lambda row: f"{prefix}{row.scenario}")


def test_the_amqp_consumer_prints_every_record_the_amqp_sink_published(store, fill, stdout, opened_by_consumer):
    fill(store, RECORDS)
    rows = store.read_outbox(0, RECORDS)
    block = consumer("amqp")
    tag = secrets.token_hex(4)
    exchange, queue = f"tanpuhui_doc_{tag}", f"carbon-account-doc-{tag}"
    code = replaced(
        block.text, block.where, {'"tanpuhui"': (1, f'"{exchange}"'), '"carbon-account"': (1, f'"{queue}"')}
    )
    table = documented_table("amqp")
    assert table["exchange"] == "tanpuhui"
    main = run_block(block, code)["main"]
    opened = opened_by_consumer(aio_pika)

    async def consuming() -> bool:
        """The consumer's queue exists and it consumes from it (declared, bound, then consuming: the doc's order)."""
        connection = await aio_pika.connect(BROKER)
        async with connection:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            return bool(declared.declaration_result.consumer_count)

    async def run() -> None:
        try:
            async with running(main, opened) as task:
                await until(task, consuming, f"the consumer to consume from {queue}")
                await deliver(store, amqp_sink(exchange=exchange, routing_key=table["routing_key"]), rows)
                await until(task, lambda: printed_ids(stdout) >= {r.record_id for r in rows}, "every record")
        finally:
            connection = await aio_pika.connect(BROKER)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.exchange_delete(exchange)

    printing_to(stdout, run)

    assert sorted(printed(stdout)) == expected(rows, lambda row: f"reductions.{row.adapter}.{row.scenario}")


def test_the_postgres_consumer_prints_every_row_the_postgres_sink_inserted(store, fill, consumer_db, stdout):
    fill(store, RECORDS)
    rows = store.read_outbox(0, RECORDS)
    block = consumer("postgres")
    code = replaced(block.text, block.where, {'"postgresql://postgres@127.0.0.1/postgres"': (1, repr(consumer_db))})
    table = documented_table("postgres")
    assert f"FROM {table['table']} " in code  # the table the sink fills, in the test's own database

    asyncio.run(deliver(store, pg_sink(consumer_db, table=table["table"], create_table=True), rows))
    with contextlib.redirect_stdout(stdout):
        run_block(block, code)

    shown = sorted((record_id, scenario, float(reduction)) for record_id, scenario, reduction in printed(stdout))
    assert shown == sorted(
        (row.record_id, row.scenario, orjson.loads(row.body)["quantification"]["reduction_kgco2e"]) for row in rows
    )


def test_the_mqtt_consumer_prints_what_was_published_while_it_was_away(store, fill, stdout, monkeypatch):
    """Started, it subscribes and prints what the sink publishes; stopped, its session keeps what is published
    meanwhile; started again, it prints that."""
    fill(store, 2)
    online = store.read_outbox(0, 2)
    block = consumer("mqtt")
    tag = secrets.token_hex(4)
    prefix, client_id = f"tanpuhui-doc-{tag}/reductions/", f"carbon-account-doc-{tag}"
    code = replaced(
        block.text, block.where, {"tanpuhui/reductions/": (1, prefix), '"carbon-account"': (1, f'"{client_id}"')}
    )
    topic = replaced(
        documented_table("mqtt")["topic"], "docs/sinks.md [sinks.iot]", {"tanpuhui/reductions/": (1, prefix)}
    )
    main = run_block(block, code)["main"]
    subacks: list[object] = []
    subscribe = aiomqtt.Client.subscribe

    async def noting_subscribe(self: aiomqtt.Client, *args: Any, **kwargs: Any) -> Any:
        granted = await subscribe(self, *args, **kwargs)  # the real SUBSCRIBE, answered by the broker's SUBACK
        subacks.append(granted)
        return granted

    monkeypatch.setattr(aiomqtt.Client, "subscribe", noting_subscribe)

    async def end_session() -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        gone = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        gone.SessionExpiryInterval = 0
        client = aiomqtt.Client(
            "127.0.0.1", 1883, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5, properties=gone
        )
        async with client:
            pass  # clean start, no expiry: the broker forgets the consumer's session

    async def run() -> int:
        try:
            async with running(main) as task:
                await until(task, lambda: bool(subacks), "the consumer to subscribe")
                await deliver(store, mqtt_sink(topic=topic), online)
                await until(task, lambda: printed_ids(stdout) >= {r.record_id for r in online}, "the first records")
            seen_online = len(printed(stdout))
            fill(store, 4, offset=2)  # while the consumer is away
            away = store.read_outbox(online[-1].seq, 10)
            await deliver(store, mqtt_sink(topic=topic), away)
            async with running(main) as task:
                away_ids = {r.record_id for r in away}
                await until(task, lambda: printed_ids(stdout, seen_online) >= away_ids, "the records sent while away")
            return seen_online
        finally:
            await end_session()

    seen_online = printing_to(stdout, run)

    away = store.read_outbox(online[-1].seq, 10)
    assert len(away) == 4
    assert sorted(printed(stdout)[:seen_online]) == expected(online, lambda row: f"{prefix}{row.scenario}")
    again = set(printed(stdout, seen_online))
    # the session gives every record published while away, and nothing else but (at least once) a first record again
    assert again - set(expected(online, lambda row: f"{prefix}{row.scenario}")) == set(
        expected(away, lambda row: f"{prefix}{row.scenario}")
    )
