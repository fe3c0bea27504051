"""JSON logs: one object per line, the request id in each, no personal identifiers or secrets anywhere."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tanpuhui.hub.logging import JsonFormatter, new_request_id

from .conftest import (
    ADMIN_TOKEN,
    MOBILE,
    OLD_PUSH_SECRET,
    PSEUDONYM_KEYS,
    PUSH_SECRET,
    RESIDENT_ID,
    SidecarFactory,
    hub_config,
    ride,
)


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[io.StringIO]:
    """The root logger writing JSON lines (as `tanpuhui serve` sets it up) into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter(hub_config(tmp_path).secret_values(environ={})))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


def test_webhook_traffic_leaves_no_personal_data_or_secret_in_the_logs(
    start_sidecar: SidecarFactory, captured: io.StringIO
) -> None:
    server = start_sidecar()
    server.post_ride([ride(1, note="boom"), ride(2, km=RESIDENT_ID), ride(3, note=f"tel {MOBILE}")], "msg_log_1")  # type: ignore[arg-type]
    server.post_ride(ride(4), "msg_log_2", secret="whsec_" + "V3JvbmdTZWNyZXRXcm9uZ1NlY3JldA==")
    server.http.get("/v1/admin/streams", headers={"authorization": f"Bearer {ADMIN_TOKEN}x"})
    server.http.get("/v1/admin/streams", headers={"authorization": f"Bearer {PUSH_SECRET}"})
    server.admin("GET", "/v1/admin/quarantine/1")
    server.http.get("/healthz", headers={"x-request-id": "trace-7f3a"})
    server.stop()
    text = captured.getvalue()
    records = [orjson.loads(line) for line in text.splitlines()]
    assert any("normalize raised" in r["msg"] and "exc" in r for r in records), "the adapter bug is logged"
    assert any(r.get("request_id") == "trace-7f3a" and r["logger"] == "tanpuhui.access" for r in records)
    bug = next(r for r in records if "normalize raised" in r["msg"])
    assert bug["request_id"]  # logged from the ingest thread, still with the request's id
    for secret in (MOBILE, RESIDENT_ID, ADMIN_TOKEN, PUSH_SECRET, OLD_PUSH_SECRET, PSEUDONYM_KEYS.split(":")[1]):
        assert secret not in text
    assert PUSH_SECRET.removeprefix("whsec_") not in text


def test_the_formatter_masks_identifiers_secrets_and_credentials() -> None:
    formatter = JsonFormatter(["s3cr3t-client-value"])
    record = logging.LogRecord(
        "tanpuhui.test", logging.WARNING, __file__, 1, "%s called with %s", (MOBILE, "s3cr3t-client-value"), None
    )
    record.fields = {"header": "Authorization: Bearer abc.def.ghi", "id": RESIDENT_ID, "n": 3}
    doc = orjson.loads(formatter.format(record))
    assert doc["msg"] == "139****3456 called with [secret]"
    assert doc["header"] == "Authorization: Bearer [secret]" and doc["n"] == 3
    assert RESIDENT_ID not in doc["id"]
    whsec = orjson.loads(formatter.format(logging.LogRecord("t", 20, "", 1, "got whsec_QUJDREVGRw==", (), None)))
    assert whsec["msg"] == "got whsec_[secret]"


@pytest.mark.parametrize(
    ("offered", "kept"),
    [("trace-7f3a", True), ("a" * 129, False), ("has space", False), (MOBILE, False), ("", False), (None, False)],
)
def test_request_ids_are_taken_only_when_plain(offered: str | None, kept: bool) -> None:
    rid = new_request_id(offered)
    assert (rid == offered) is kept
    assert rid and len(rid) <= 128
