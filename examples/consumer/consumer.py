"""A minimal consumer of the hub's deliveries, standard library only: what a carbon-account platform must do.

    WEBHOOK_SECRET=whsec_... python consumer.py --port 8900 --db received.db

``POST /events`` takes a CloudEvents batch (``application/cloudevents-batch+json``, a JSON array) or one structured
event (``application/cloudevents+json``), signed with Standard Webhooks:

1. verify ``webhook-signature`` over ``{webhook-id}.{webhook-timestamp}.{raw body}`` with HMAC-SHA256 under the
   base64-decoded part of the ``whsec_`` secret (several space-separated ``v1,`` signatures allowed; constant-time
   comparison; the timestamp within 5 minutes) -- before parsing anything;
2. store each event once, keyed by ``(source, id)``: delivery is at-least-once (the hub retries until it gets a 2xx),
   and the key makes processing exactly-once, also across restarts (SQLite);
3. answer 200 only after the events are committed; 401 for a bad signature, 400 for a body that is not events.

``GET /stats`` answers ``{"events": N, "duplicates": M, "records": R, "kgco2e": X}``: R current records and their
kgCO2e, rebuilt from the events (``...reduction.corrected.v1`` replaces the record its ``supersedes`` names,
``...reduction.voided.v1`` removes the one its ``voids`` names; docs/verification.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 5 * 60


class SignatureError(Exception):
    """The request is not signed by the hub (missing, malformed, stale or wrong signature)."""


def verify(secret: str, headers: Any, body: bytes, now: float | None = None) -> str:
    """Check a Standard Webhooks signature; return the webhook id. Raises :class:`SignatureError`."""
    msg_id, stamp, signatures = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not unix seconds") from None
    if abs((time.time() if now is None else now) - sent) > TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is outside the 5-minute tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise SignatureError("no signature matches")


CREATED = "org.tanpuhui.reduction.v1"
CORRECTED = "org.tanpuhui.reduction.corrected.v1"
VOIDED = "org.tanpuhui.reduction.voided.v1"
CURRENT_RECORDS = f"""
SELECT count(*), coalesce(sum(json_extract(data, '$.quantification.reduction_kgco2e')), 0) FROM events
WHERE type IN ('{CREATED}', '{CORRECTED}')
  AND coalesce(json_extract(data, '$.record_id'), id) NOT IN (
    SELECT json_extract(data, '$.supersedes') FROM events WHERE type = '{CORRECTED}'
    UNION ALL SELECT json_extract(data, '$.voids') FROM events WHERE type = '{VOIDED}')
"""


class Inbox:
    """Received events, each stored once under (source, id)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (source TEXT, id TEXT, type TEXT, data TEXT, PRIMARY KEY (source, id))"
        )
        self._lock = threading.Lock()
        self.duplicates = 0

    def add(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Store new events in one transaction; returns (new, duplicates)."""
        with self._lock, self._db:
            new = 0
            for event in events:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
                    (event["source"], event["id"], event["type"], json.dumps(event.get("data"))),
                )
                new += cursor.rowcount
            self.duplicates += len(events) - new
            return new, len(events) - new

    def stats(self) -> dict[str, Any]:
        """Events stored, and the current records: a correction replaces the record its ``supersedes`` names, a
        void removes the one its ``voids`` names (the hub never changes an event it sent)."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM events").fetchone()
            current, kg = self._db.execute(CURRENT_RECORDS).fetchone()
        return {"events": count, "duplicates": self.duplicates, "records": current, "kgco2e": round(kg, 6)}


def make_server(secret: str, inbox: Inbox, host: str = "127.0.0.1", port: int = 8900) -> ThreadingHTTPServer:
    """An HTTP server for ``POST /events`` and ``GET /stats`` (``port=0``: any free port)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != "/stats":
                return self._answer(404, {"error": "not found"})
            return self._answer(200, inbox.stats())

        def do_POST(self) -> None:
            if self.path != "/events":
                return self._answer(404, {"error": "not found"})
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                verify(secret, self.headers, body)
            except SignatureError as exc:
                return self._answer(401, {"error": str(exc)})
            try:
                doc = json.loads(body)
                events = doc if isinstance(doc, list) else [doc]
                if not all(isinstance(e, dict) and {"id", "source", "type"} <= e.keys() for e in events):
                    raise ValueError("every event needs id, source and type")
            except ValueError as exc:
                return self._answer(400, {"error": f"not CloudEvents: {exc}"})
            new, duplicates = inbox.add(events)
            return self._answer(200, {"accepted": new, "duplicates": duplicates})

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--db", default="received.db", help="SQLite file of received events")
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set WEBHOOK_SECRET to the whsec_... secret of the hub's [sinks.NAME] table")
    server = make_server(secret, Inbox(args.db), args.host, args.port)
    print(f"receiving on http://{args.host}:{server.server_address[1]}/events")
    server.serve_forever()


if __name__ == "__main__":
    main()
