"""A minimal, real consumer of the hub's deliveries: what a carbon-account platform's endpoint has to do.

``POST /events`` verifies the Standard Webhooks signature over the raw body, accepts a CloudEvents batch
(``application/cloudevents-batch+json``) or a single structured event (``application/cloudevents+json``),
deduplicates on ``(source, id)`` — delivery is at-least-once, so this is what makes it exactly-once — and
keeps the current records (corrections replace, voids remove: :class:`~tanpuhui.hub.ledger.Ledger`) with their
kgCO2e by scenario. ``GET /stats`` returns the counts. Received events can be appended to a JSONL file.

For tests and the demo it can misbehave on purpose: a script of responses to give before behaving normally
(``[503, 503, Scripted(429, retry_after=1), 200]``), ``mode="down"`` (503 to everything) or ``mode="gone"``
(410). :class:`ConsumerServer` runs it with uvicorn on a loopback port in a background thread; its port refuses
connections until :meth:`ConsumerServer.start` (and again after :meth:`ConsumerServer.stop`).

Run one by hand: ``TANPUHUI_CONSUMER_SECRET=whsec_... python -m tanpuhui.hub.consumer --port 8900``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypedDict, Unpack

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tanpuhui.sdk import SignatureError, WebhookVerifier

from .ledger import Ledger

__all__ = [
    "BATCH_CONTENT_TYPE",
    "EVENT_CONTENT_TYPE",
    "Consumer",
    "ConsumerOptions",
    "ConsumerServer",
    "Scripted",
    "main",
]

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
EVENT_CONTENT_TYPE = "application/cloudevents+json"

Mode = Literal["normal", "down", "gone"]


@dataclass(frozen=True, slots=True)
class Scripted:
    """One response to give instead of processing a request: a status, a ``Retry-After``, a delay first."""

    status: int
    retry_after: float | str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request the consumer accepted (kept for inspection, most recent last)."""

    webhook_id: str
    content_type: str
    ids: list[str]
    duplicates: int


class ConsumerOptions(TypedDict, total=False):
    """How a :class:`Consumer` behaves (its keyword arguments, which :class:`ConsumerServer` passes on)."""

    script: Iterable[int | Scripted]
    mode: Mode
    jsonl_path: str | Path | None
    keep_deliveries: int


class Consumer:
    """The consumer's state and its Starlette app. Thread-safe: the app runs on uvicorn's thread."""

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        script: Iterable[int | Scripted] = (),
        mode: Mode = "normal",
        jsonl_path: str | Path | None = None,
        keep_deliveries: int = 10_000,
    ) -> None:
        self._verifier = WebhookVerifier([secrets] if isinstance(secrets, str) else list(secrets))
        self._lock = threading.Lock()
        self._script: deque[Scripted] = deque()
        self.mode: Mode = mode
        self._seen: set[tuple[str, str]] = set()
        self._ids: list[str] = []
        self._deliveries: deque[Delivery] = deque(maxlen=keep_deliveries)
        self._counts = {"requests": 0, "rejected": 0, "scripted": 0, "received": 0, "unique": 0, "duplicates": 0}
        self.ledger = Ledger()
        """The current records rebuilt from the events received (read under :meth:`current`)."""
        self.jsonl_path = Path(jsonl_path) if jsonl_path is not None else None
        self._jsonl: BinaryIO | None = None
        self.push(*script)
        self.app = Starlette(
            routes=[
                Route("/events", self._events, methods=["POST"]),
                Route("/stats", self._stats, methods=["GET"]),
            ]
        )

    # -- fault injection -------------------------------------------------------------------------------------

    def push(self, *responses: int | Scripted) -> None:
        """Queue responses to give (in order) before processing requests normally again."""
        with self._lock:
            self._script.extend(r if isinstance(r, Scripted) else Scripted(r) for r in responses)

    def _scripted(self) -> Scripted | None:
        with self._lock:
            if self._script:
                self._counts["scripted"] += 1
                return self._script.popleft()
        if self.mode == "down":
            return Scripted(503)
        if self.mode == "gone":
            return Scripted(410)
        return None

    # -- inspection ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts: requests, rejected (signature), scripted, events received / unique / duplicates, kgCO2e."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            counts = self.ledger.count_by_scenario  # a scenario whose records were all voided drops out
            kg = {k: v for k, v in self.ledger.kg_by_scenario.items() if counts.get(k)}
            out["kgco2e_by_scenario"] = {k: round(v, 6) for k, v in sorted(kg.items())}
            out["kgco2e_total"] = round(sum(kg.values()), 6)
            out["current_records"] = len(self.ledger.records)
        return out

    def current(self) -> dict[str, dict[str, Any]]:
        """The current records by id (created and corrected ones, minus what was superseded or voided)."""
        with self._lock:
            return dict(self.ledger.records)

    def ids(self) -> list[str]:
        """Ids of the unique events, in arrival order."""
        with self._lock:
            return list(self._ids)

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def close(self) -> None:
        with self._lock:
            if self._jsonl is not None:
                self._jsonl.close()
                self._jsonl = None

    # -- endpoints -------------------------------------------------------------------------------------------

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _events(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self._counts["requests"] += 1
        scripted = self._scripted()
        if scripted is not None:
            if scripted.delay:
                await asyncio.sleep(scripted.delay)
            headers = dict(scripted.headers)
            if scripted.retry_after is not None:
                headers["retry-after"] = _retry_after_header(scripted.retry_after)
            return Response(status_code=scripted.status, headers=headers)
        try:
            webhook_id = self._verifier.verify(request.headers, body)
        except SignatureError as exc:
            with self._lock:
                self._counts["rejected"] += 1
            return _problem(401, f"signature: {exc}")
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _problem(400, f"body is not JSON: {exc}")
        if content_type == BATCH_CONTENT_TYPE:
            if not isinstance(document, list):
                return _problem(400, "a CloudEvents batch must be a JSON array")
            events = document
        elif content_type == EVENT_CONTENT_TYPE:
            events = [document]
        else:
            return _problem(415, f"expected {BATCH_CONTENT_TYPE} or {EVENT_CONTENT_TYPE}, got {content_type!r}")
        for i, event in enumerate(events):
            problem = _check_event(event)
            if problem:
                return _problem(400, f"event {i}: {problem}")
        received, duplicates = self._record(webhook_id, content_type, events)
        return JSONResponse({"received": received, "duplicates": duplicates})

    def _record(self, webhook_id: str, content_type: str, events: list[dict[str, Any]]) -> tuple[int, int]:
        fresh: list[dict[str, Any]] = []
        with self._lock:
            seen = self._seen
            for event in events:
                key = (event["source"], event["id"])
                if key in seen:
                    continue
                seen.add(key)
                fresh.append(event)
            duplicates = len(events) - len(fresh)
            for event in fresh:
                self.ledger.apply_event(event)
            self._ids.extend(event["id"] for event in fresh)
            counts = self._counts
            counts["received"] += len(events)
            counts["unique"] += len(fresh)
            counts["duplicates"] += duplicates
            self._deliveries.append(Delivery(webhook_id, content_type, [e["id"] for e in events], duplicates))
            if self.jsonl_path is not None and fresh:
                if self._jsonl is None:
                    self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
                    self._jsonl = self.jsonl_path.open("ab")
                self._jsonl.write(b"".join(orjson.dumps(e) + b"\n" for e in fresh))
                self._jsonl.flush()
        return len(events), duplicates


def _check_event(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "not a JSON object"
    if event.get("specversion") != "1.0":
        return f"specversion must be '1.0', got {event.get('specversion')!r}"
    for attribute in ("id", "source", "type"):
        value = event.get(attribute)
        if not isinstance(value, str) or not value:
            return f"required attribute {attribute!r} is missing or not a non-empty string"
    return None


def _problem(status: int, detail: str) -> Response:
    return JSONResponse({"status": status, "detail": detail}, status_code=status)


def _retry_after_header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class ConsumerServer:
    """A :class:`Consumer` served by uvicorn on ``127.0.0.1`` in a background thread (``options``: the consumer's,
    :class:`ConsumerOptions`).

    The port is reserved at construction (bound, not listening: connections are refused), so ``url`` is known
    before :meth:`start` and stays the same across ``stop()``/``start()``::

        with ConsumerServer("whsec_...") as consumer:
            ...  # deliver to consumer.url
            assert consumer.stats()["unique"] == 1000
    """

    def __init__(
        self, secret: str | Sequence[str], *, host: str = "127.0.0.1", port: int = 0, **options: Unpack[ConsumerOptions]
    ) -> None:
        self.consumer = Consumer(secret, **options)
        self.host = host
        self._sock: socket.socket | None = self._bind(port)
        self.port: int = self._sock.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The ``POST /events`` URL to configure an HTTP sink with."""
        return f"{self.base_url}/events"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, timeout: float = 5.0) -> ConsumerServer:
        if self._thread is not None:
            return self
        sock = self._sock if self._sock is not None else self._bind(self.port)
        self._sock = None  # uvicorn closes it on shutdown
        config = uvicorn.Config(
            self.consumer.app,
            log_config=None,  # leave the host's logging configuration alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tanpuhui-consumer", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout)
                raise RuntimeError(f"consumer on {self.base_url} did not start within {timeout} s")
            time.sleep(0.002)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused again) and close the JSONL file."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        self._server = self._thread = None
        self.consumer.close()

    def close(self) -> None:
        self.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ConsumerServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # conveniences delegating to the consumer

    def stats(self) -> dict[str, Any]:
        return self.consumer.stats()

    def ids(self) -> list[str]:
        return self.consumer.ids()

    def deliveries(self) -> list[Delivery]:
        return self.consumer.deliveries()

    def current(self) -> dict[str, dict[str, Any]]:
        return self.consumer.current()

    def push(self, *responses: int | Scripted) -> None:
        self.consumer.push(*responses)

    def set_mode(self, mode: Mode) -> None:
        self.consumer.mode = mode


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a consumer in the foreground (the secret comes from an environment variable, never the command line)."""
    parser = argparse.ArgumentParser(
        prog="python -m tanpuhui.hub.consumer", description="Serve a tanpuhui delivery consumer."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--secret-env", default="TANPUHUI_CONSUMER_SECRET", help="variable holding the whsec_ secret")
    parser.add_argument("--jsonl", type=Path, default=None, help="append received events to this file")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.secret_env)
    if not secret:
        parser.error(f"set {args.secret_env} to the whsec_... secret the hub signs with")
    consumer = Consumer(secret, jsonl_path=args.jsonl)
    try:
        uvicorn.run(consumer.app, host=args.host, port=args.port, log_level="info", access_log=False, lifespan="off")
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
