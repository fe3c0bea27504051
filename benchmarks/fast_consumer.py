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

from .raw_http import serve_forever

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

    def answer(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        if method == b"GET" and path == b"/stats":
            answer = orjson.dumps(self.counts)
            return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
                len(answer),
                answer,
            )
        if method != b"POST":
            return b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n"
        self.counts["requests"] += 1
        if not self.verified(headers, body):
            self.counts["bad_signatures"] += 1
            return b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
        self.counts["events"] += body.count(_MARK)
        self.counts["bytes"] += len(body)
        return b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def _serve() -> None:
    consumer = _Consumer(decode_secret(os.environ["BENCH_CONSUMER_SECRET"]))
    await serve_forever(consumer.answer, limit=1 << 20)


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
