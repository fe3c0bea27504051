"""The raw asyncio HTTP/1.1 the benchmarks' partner and consumer processes speak (no framework in the way).

Enough of HTTP/1.1 for httpx clients on keep-alive connections: a request head, a ``Content-Length`` body, one
answer per request. The process prints ``PORT <n>`` once it listens, for the benchmark that started it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Answer", "serve_connection", "serve_forever"]

Answer = Callable[[bytes, bytes, dict[bytes, bytes], bytes], bytes]
"""(method, target, headers with lower-case names, body) -> the whole response, head and body."""


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer) -> None:
    """Answer the requests of one connection in turn until the client closes it."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].split(b" ", 2)
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            body = await reader.readexactly(length) if length else b""
            writer.write(answer(method, target, headers, body))
            await writer.drain()
    finally:
        writer.close()


async def serve_forever(answer: Answer, *, limit: int = 1 << 16) -> None:
    """Listen on a free loopback port, print ``PORT <n>``, and answer every connection with ``answer``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, answer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=limit)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()
