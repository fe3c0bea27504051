"""``tanpuhui demo --sink KIND``: a broker sink next to the demo's JSONL and HTTP ones, and a consumer reading back
what arrived.

``nats``: the JetStream server at ``NATS_URL`` (default ``nats://127.0.0.1:4222``). The demo creates its stream
``TANPUHUI_DEMO`` (subjects ``tanpuhui.demo.>``, file storage) when missing, forwards one message per record to
``tanpuhui.demo.<adapter>.<scenario>``, then reads the stream back from where it ended before the run (an
independent ordered consumer) and counts the messages and distinct record ids (``ce-id``) that arrived.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from tanpuhui.sdk import ConfigError

from .sinks.common import display_url, one_line, optional_client

__all__ = ["DEMO_SINKS", "Arrived", "DemoBroker", "NatsDemo", "demo_broker"]


@dataclass
class Arrived:
    """What the demo's consumer read back from the broker: messages and distinct record ids, where."""

    where: str
    messages: int
    unique: int


class DemoBroker:
    """One broker the demo forwards to: its ``[sinks.NAME]`` table, setup before and read-back after forwarding."""

    name = "broker"
    label = "broker"

    def sink_table(self) -> dict[str, Any]:
        raise NotImplementedError

    async def prepare(self) -> None:
        """Create what the sink publishes into; note where this run starts."""

    async def arrived(self) -> Arrived:
        raise NotImplementedError


class NatsDemo(DemoBroker):
    name = "bus"
    label = "bus (NATS JetStream)"
    stream = "TANPUHUI_DEMO"
    subjects = "tanpuhui.demo.>"

    def __init__(self) -> None:
        self.url = os.environ.get("NATS_URL") or "nats://127.0.0.1:4222"
        self._nats = optional_client("nats", "nats-py", "nats")
        self._start = 0

    def sink_table(self) -> dict[str, Any]:
        return {"type": "nats", "url": self.url, "subject": "tanpuhui.demo.{adapter}.{scenario}", "stream": self.stream}

    async def _connect(self) -> Any:
        try:
            return await asyncio.wait_for(self._nats.connect(self.url, allow_reconnect=False), 10)
        except Exception as exc:
            raise ConfigError(
                f"demo --sink nats: cannot reach NATS at {display_url(self.url)} ({one_line(exc)}); start "
                "nats-server -js or set NATS_URL"
            ) from None

    async def prepare(self) -> None:
        nc = await self._connect()
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(self.stream)
            except self._nats.js.errors.NotFoundError:
                info = await js.add_stream(name=self.stream, subjects=[self.subjects])
            except self._nats.errors.NoRespondersError:
                raise ConfigError(
                    f"demo --sink nats: {display_url(self.url)} has no JetStream (start nats-server with -js)"
                ) from None
            self._start = info.state.last_seq
        finally:
            await nc.close()

    async def arrived(self) -> Arrived:
        api = self._nats.js.api
        nc = await self._connect()
        messages, ids = 0, set()
        try:
            js = nc.jetstream()
            last = (await js.stream_info(self.stream)).state.last_seq
            if last > self._start:
                config = api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._start + 1
                )
                sub = await js.subscribe(self.subjects, stream=self.stream, ordered_consumer=True, config=config)
                while True:
                    msg = await sub.next_msg(timeout=10)
                    messages += 1
                    ids.add((msg.headers or {}).get("ce-id"))
                    if msg.metadata.sequence.stream >= last:
                        break
                await sub.unsubscribe()
        finally:
            await nc.close()
        return Arrived(f"NATS stream {self.stream}", messages, len(ids))


DEMO_SINKS: dict[str, type[DemoBroker]] = {"nats": NatsDemo}


def demo_broker(kind: str) -> DemoBroker:
    try:
        return DEMO_SINKS[kind]()
    except KeyError:
        raise ConfigError(f"demo --sink {kind}: unknown; choose {', '.join(DEMO_SINKS)}") from None
