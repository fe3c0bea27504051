"""A sink that appends each record as one JSON line to a file (fsynced per batch)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal

import orjson

from tanpuhui.sdk import OutboxRow, Sink, SinkError, SinkSettings

__all__ = ["JsonlSink"]


class JsonlSettings(SinkSettings):
    """``[sinks.NAME]`` with ``type = "jsonl"``: where to append, and whether to fsync each batch."""

    type: Literal["jsonl"] = "jsonl"
    path: Path
    fsync: bool = True


class JsonlSink(Sink):
    """Appends each record body as one line (JSON Lines); a batch is flushed (and fsynced) before it counts.

    Delivery is at-least-once: a batch whose write failed half-way is written again in full on retry, so readers
    dedup on ``record_id`` like any other consumer.
    """

    kind = "jsonl"
    Settings = JsonlSettings

    def __init__(self, name: str, settings: SinkSettings) -> None:
        super().__init__(name, settings)
        self._settings = self.settings_as(JsonlSettings)
        self._file: BinaryIO | None = None

    @property
    def path(self) -> Path:
        return self._settings.path

    def _open(self) -> BinaryIO:
        if self._file is None:
            path = self._settings.path
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("ab")
            except OSError as exc:
                raise SinkError(
                    f"jsonl sink {self.name!r}: cannot open {path} for appending: {exc.strerror or exc}",
                    retryable=False,
                ) from exc
        return self._file

    def _write(self, data: bytes) -> None:
        file = self._open()
        try:
            file.write(data)
            file.flush()
            if self._settings.fsync:
                os.fsync(file.fileno())
        except OSError as exc:
            # A full disk may drain; a retry rewrites the whole batch (at-least-once).
            raise SinkError(
                f"jsonl sink {self.name!r}: writing {self._settings.path} failed: {exc.strerror or exc}",
                retryable=True,
            ) from exc

    async def send(self, batch: Sequence[OutboxRow]) -> None:
        if not batch:
            return
        data = b"\n".join([row.body for row in batch]) + b"\n"
        if data.count(b"\n") != len(batch):
            # Bodies are compact JSON from the pipeline; one with a raw newline (pretty-printed) is re-serialised
            # so that a line is still exactly one record.
            data = b"".join([orjson.dumps(orjson.loads(row.body)) + b"\n" for row in batch])
        await asyncio.to_thread(self._write, data)

    async def check(self) -> None:
        await asyncio.to_thread(self._open)

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
