"""A minimal, fast consumer for the forwarding benchmark: raw asyncio HTTP/1.1 in its own process.

``POST /events``: reads ``Content-Length`` bytes, checks the Standard Webhooks signature (HMAC-SHA256 over
``id.timestamp.body``), counts the CloudEvents in the batch (``{"specversion"`` occurrences: no JSON parsing) and
answers ``200``; a bad signature gets ``401``. ``GET /stats`` returns the counts. Keep-alive, no chunked bodies.

    BENCH_CONSUMER_SECRET=whsec_... python -m benchmarks.fast_consumer   # prints "PORT <n>" when listening
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os

import orjson

from tanpuhui.sdk.webhooks import decode_secret

__all__ = ["main"]

_MARK = b'{"specversion"'


class _Consumer:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.counts = {"requests": 0, "events": 0, "bytes": 0, "bad_signatures": 0}

    def verified(self, headers: dict[bytes, bytes], body: bytes) -> bool:
        msg_id = headers.get(b"webhook-id", b"")
        ts = headers.get(b"webhook-timestamp", b"")
        offered = headers.get(b"webhook-signature", b"").split()
        mac = hmac.new(self.key, msg_id + b"." + ts + b"." + body, hashlib.sha256).digest()
        expected = b"v1," + base64.b64encode(mac)
        return any(hmac.compare_digest(expected, sig) for sig in offered)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(b":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                body = await reader.readexactly(length) if length else b""
                if method == b"GET" and path == b"/stats":
                    answer = orjson.dumps(self.counts)
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(answer), answer)
                    )
                elif method == b"POST":
                    self.counts["requests"] += 1
                    if self.verified(headers, body):
                        self.counts["events"] += body.count(_MARK)
                        self.counts["bytes"] += len(body)
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    else:
                        self.counts["bad_signatures"] += 1
                        writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()


async def _serve() -> None:
    consumer = _Consumer(decode_secret(os.environ["BENCH_CONSUMER_SECRET"]))
    server = await asyncio.start_server(consumer.handle, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
