"""The JSONL sink: one line per record, appended, fsynced per batch."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tanpuhui.hub.forwarder import Forwarder
from tanpuhui.hub.sinks.jsonl import JsonlSink
from tanpuhui.sdk import OutboxRow, SinkError


def test_every_record_is_written_exactly_once_across_two_drains(store, fill, tmp_path):
    ids = fill(store, 2500)
    path = tmp_path / "out" / "nested" / "records.jsonl"
    sink = JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=path))
    forwarder = Forwarder(store, {"archive": sink}, batch_size=1000)

    async def run():
        try:
            return await forwarder.drain(), await forwarder.drain()
        finally:
            await sink.aclose()

    first, second = asyncio.run(run())

    assert (first["archive"].delivered, first["archive"].batches) == (2500, 3)
    assert (second["archive"].delivered, second["archive"].batches) == (0, 0)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["record_id"] for line in lines] == ids
    assert lines == [row.body for row in store.read_outbox(0, 10_000)]
    assert store.sink_position("archive") == store.outbox_max_seq()


def test_appends_to_an_existing_file(store, fill, tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"earlier": true}\n')
    fill(store, 10)
    sink = JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=path, fsync=False))

    async def run():
        try:
            await Forwarder(store, {"archive": sink}).drain()
        finally:
            await sink.aclose()

    asyncio.run(run())

    lines = path.read_bytes().splitlines()
    assert len(lines) == 11
    assert lines[0] == b'{"earlier": true}'


def test_a_body_with_a_raw_newline_still_takes_one_line(tmp_path):
    path = tmp_path / "records.jsonl"
    sink = JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=path))
    rows = [
        OutboxRow(1, "01HX0000000000000000000001", "a_b", "s_t", "metro", b'{\n  "pretty": 1\n}'),
        OutboxRow(2, "01HX0000000000000000000002", "a_b", "s_t", "metro", b'{"compact":2}'),
    ]

    async def run():
        try:
            await sink.send(rows)
        finally:
            await sink.aclose()

    asyncio.run(run())

    assert path.read_bytes() == b'{"pretty":1}\n{"compact":2}\n'


def test_a_directory_that_cannot_be_created_is_a_sink_error_naming_the_path(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    path = blocker / "sub" / "records.jsonl"
    sink = JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=path))

    with pytest.raises(SinkError) as check_error:
        asyncio.run(sink.check())
    with pytest.raises(SinkError) as send_error:
        asyncio.run(sink.send([OutboxRow(1, "01HX0000000000000000000001", "a_b", "s_t", "metro", b"{}")]))

    for error in (check_error.value, send_error.value):
        assert str(path) in str(error)
        assert "archive" in str(error)
        assert not error.retryable


def test_an_unwritable_path_dead_letters_the_batch_and_draining_goes_on(store, fill, tmp_path):
    fill(store, 30)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    sink = JsonlSink("archive", JsonlSink.Settings(type="jsonl", path=blocker / "records.jsonl"))

    summary = asyncio.run(Forwarder(store, {"archive": sink}, batch_size=10).drain())

    assert (summary["archive"].dead_lettered, summary["archive"].batches) == (30, 3)
    letters = store.dead_letters("archive")
    assert len(letters) == 30
    assert all(letter.attempts == 1 and str(blocker) in letter.error for letter in letters)
