"""Logs as JSON lines, with the request id, and without personal identifiers or secrets.

One JSON object per line on stderr::

    {"ts":"2024-11-05T08:00:00.123Z","level":"info","logger":"tanpuhui.access","msg":"POST /v1/webhooks/... 200",
     "request_id":"5f0c...","method":"POST","path":"/v1/webhooks/...","status":200,"ms":1.9}

Every message, structured field and traceback goes through :func:`tanpuhui.sdk.redact` (resident IDs and mobile
numbers are masked) and through a scrubber of the secrets the hub knows (webhook secrets, the admin token, partner
client secrets, pseudonym keys): they are replaced by ``[secret]`` wherever they appear. ``whsec_...`` strings and
``Bearer ...`` credentials are masked even when the hub does not know them.

The request id comes from the ``X-Request-ID`` request header when it is a sane token, else it is generated; the
sidecar echoes it in the response and it is in every log line written while the request is handled (also by the
ingest thread).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

from tanpuhui.sdk import redact, register_secrets

__all__ = ["JsonFormatter", "configure_logging", "new_request_id", "request_id"]

request_id: ContextVar[str | None] = ContextVar("tanpuhui_request_id", default=None)
"""The id of the request being handled (None outside requests)."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id(offered: str | None) -> str:
    """The offered ``X-Request-ID`` when it is a plain token of at most 128 characters (and not shaped like a
    personal identifier), else a fresh one."""
    if offered and _REQUEST_ID.match(offered) and redact(offered) == offered:  # an id shaped like a mobile: no
        return offered
    return os.urandom(12).hex()


class JsonFormatter(logging.Formatter):
    """Formats records as one JSON object per line; see the module docstring for what is masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        register_secrets(secrets)

    @staticmethod
    def scrub(text: str) -> str:
        return redact(text)  # personal identifiers, and every secret the process registered

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self.scrub(record.getMessage()),
        }
        rid = request_id.get()
        if rid is not None:
            doc["request_id"] = self.scrub(rid)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                doc[str(key)] = self.scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            doc["exc"] = self.scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exc"] = self.scrub(record.exc_text)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str = "info", *, secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Send every log record of the process (tanpuhui, uvicorn, libraries) to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every request line at INFO, with full URLs (query strings may carry partner ids): keep it quiet.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
