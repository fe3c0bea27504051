"""Hostile input against the sidecar: every schemathesis check from its own OpenAPI document, property-based
webhook payloads and signature headers (hypothesis), and bodies far over the size limit.

What must hold for any request: no 5xx; no webhook is accepted without a valid signature over exactly its bytes;
every item of an accepted webhook is accounted for (a record or a quarantine entry); a body over
``[server] max_body_bytes`` is refused while it streams in, so memory does not grow with it.

The generators are derandomized (the same cases on every run) and bounded in count.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tanpuhui.hub.demo import to_toml

from .crash import tanpuhui_exe
from .sidecar import ADMIN_TOKEN, ENVIRON, ITEMS, PUSH_SECRET, WEBHOOK, Running, hub_document, signed

OTHER_SECRET = "whsec_" + base64.b64encode(b"an attacker's guess at the secret").decode()

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("hostile"))
    yield running
    running.stop()


# -- the OpenAPI document, fuzzed with every check ------------------------------------------------------------

HOOKS = Path(__file__).with_name("openapi_hooks.py")


def test_the_server_behaves_as_its_openapi_document_says_under_every_schemathesis_check(
    sidecar: Running, tmp_path: Path
) -> None:
    """``schemathesis run --checks all``, every phase (examples, coverage, fuzzing, stateful), positive and negative
    data, against the running server: no 5xx, only documented status codes and content types, answers that
    conform to their schemas, schema-violating requests refused and valid ones accepted, missing auth refused,
    unsupported methods 405. Webhook requests are signed (``openapi_hooks.py``), so they reach the pipeline.
    Seeded, about a thousand requests."""
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS.stem,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS.parent), os.environ.get("PYTHONPATH")])),
        "TANPUHUI_TEST_PUSH_SECRET": PUSH_SECRET,
    }
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{sidecar.url}/openapi.json",
        "--checks=all",
        "--mode=all",
        "--max-examples=15",
        "--seed=1",
        "--generation-database=none",
        "--request-timeout=30",
        f"--header=Authorization: Bearer {ADMIN_TOKEN}",
        "--no-color",
    ]
    run = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12_000:]
    # health, ready, metrics, openapi, validate, the webhook, the admin API (7), the published schemas (2)
    assert "16 selected / 16 total" in report


# -- webhook signatures --------------------------------------------------------------------------------------

HEADER_TEXT = st.one_of(
    st.sampled_from(["", "garbage", "v1,a,b", "v1,@@@", "v1,", "v2,abc", "v1 v1", "hello", "-1", "1e10", "0x10"]),
    st.text(max_size=80),
)


@FUZZ
@given(
    msg_id=st.one_of(st.none(), HEADER_TEXT),
    timestamp=st.one_of(st.none(), HEADER_TEXT, st.integers(-(2**70), 2**70).map(str)),
    signature=st.one_of(st.none(), HEADER_TEXT),
)
def test_malformed_or_missing_signature_headers_are_a_4xx_never_accepted_never_5xx(
    sidecar: Running, msg_id: str | None, timestamp: str | None, signature: str | None
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    sent = {k: v for k, v in headers.items() if v is not None and v.isascii() and v.isprintable()}
    response = sidecar.push(orjson.dumps({"items": ITEMS[:2]}), sent)
    assert response.status_code in (400, 401), response.text


@FUZZ
@given(
    tamper=st.sampled_from(["flip", "append", "truncate", "other_id", "other_secret", "stale", "future"]),
    position=st.integers(0, 10_000),
)
def test_a_forged_or_altered_webhook_is_never_accepted(sidecar: Running, tamper: str, position: int) -> None:
    body = orjson.dumps({"items": ITEMS[:3]})
    msg_id = f"msg_forged_{tamper}_{position}"
    headers = signed(body, msg_id)
    now = int(time.time())
    if tamper == "flip":
        i = position % len(body)
        body = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
    elif tamper == "append":
        body += b" "
    elif tamper == "truncate":
        body = body[: position % len(body)]
    elif tamper == "other_id":
        headers["webhook-id"] = msg_id + "x"
    elif tamper == "other_secret":
        headers = signed(body, msg_id, OTHER_SECRET)
    elif tamper == "stale":
        headers = signed(body, msg_id, timestamp=now - 5 * 60 - 2)
    else:
        headers = signed(body, msg_id, timestamp=now + 5 * 60 + 2)
    response = sidecar.push(body, headers)
    assert response.status_code == 401, (tamper, response.status_code, response.text)


def test_the_standard_webhooks_rejection_vectors_are_401s(sidecar: Running) -> None:
    body = orjson.dumps({"items": ITEMS[:1]})
    good = signed(body, "msg_vectors")
    for value in ("garbage", "v1,a,b", "v1,@@@", "", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="):
        response = sidecar.push(body, {**good, "webhook-signature": value})
        assert response.status_code in (400, 401), value
    response = sidecar.push(body, {**good, "webhook-timestamp": "hello"})
    assert response.status_code in (400, 401)
    assert sidecar.push(body, {k: v for k, v in good.items() if k != "webhook-signature"}).status_code == 401


# -- webhook payloads ----------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
ITEM = st.one_of(
    JSON,
    st.sampled_from(ITEMS).flatmap(
        lambda item: st.dictionaries(st.sampled_from(sorted(item)), JSON, max_size=3).map(lambda d: {**item, **d})
    ),
)


@FUZZ
@given(items=st.lists(ITEM, max_size=6), wrap=st.sampled_from(["items", "list", "other"]), n=st.integers(0, 10**9))
def test_any_signed_payload_is_answered_without_5xx_and_every_item_is_accounted_for(
    sidecar: Running, items: list[Any], wrap: str, n: int
) -> None:
    doc: Any = {"items": items} if wrap == "items" else items if wrap == "list" else {"data": items}
    body = json.dumps(doc).encode()  # not orjson: partners may send integers beyond 64 bits
    response = sidecar.push(body, signed(body, f"msg_payload_{n}_{len(body)}"))
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        answer = response.json()
        assert answer["accepted"] + answer["quarantined"] == answer["items"] == len(answer["results"])
        assert all(r["status"] in ("accepted", "quarantined") for r in answer["results"])
        assert all(r.get("errors") for r in answer["results"] if r["status"] == "quarantined")
    else:
        assert response.status_code in (400, 409, 413, 422), response.text


@FUZZ
@given(body=st.binary(max_size=2048), n=st.integers(0, 10**9))
def test_arbitrary_signed_bytes_are_a_4xx_or_a_clean_answer(sidecar: Running, body: bytes, n: int) -> None:
    response = sidecar.push(body, signed(body, f"msg_bytes_{n}_{len(body)}"))
    assert response.status_code < 500, response.text


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=2048), JSON.map(lambda d: json.dumps(d).encode())),
    media=st.sampled_from(["application/json", "application/x-ndjson", "text/plain"]),
    schema=st.sampled_from(["yrd-record", "reduction-record", "nope", "..%2f"]),
)
def test_the_validate_endpoint_answers_anything_without_5xx(
    sidecar: Running, body: bytes, media: str, schema: str
) -> None:
    response = sidecar.http.post(f"/v1/validate/{schema}", content=body, headers={"content-type": media})
    assert response.status_code < 500, response.text


# -- bodies over the limit: refused as they stream in, memory flat ------------------------------------------


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _huge(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    block = b"[" + b"0," * (chunk // 2 - 1) + b"0"
    sent = 0
    while sent < total:
        yield block
        sent += len(block)


def test_bodies_far_over_the_limit_are_refused_without_the_server_growing(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(to_toml(hub_document("hub.db")), encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **ENVIRON}
    proc = subprocess.Popen(
        [tanpuhui_exe(), "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "tanpuhui serve did not start"
                time.sleep(0.05)
            ok_body = orjson.dumps({"items": ITEMS[:1]})
            assert (
                http.post(
                    WEBHOOK, content=ok_body, headers=signed(ok_body, "msg_warm") | {"content-type": "application/json"}
                ).status_code
                == 200
            )
            before = _peak_rss_kib(proc.pid)
            refused = 0
            for n in range(4):
                for path in (WEBHOOK, "/v1/validate/yrd-record"):
                    headers = {"content-type": "application/json"}
                    if n % 2:  # declared up front: refused before a byte of the body is read
                        body: Any = b"[" + b"0," * (20 * 1024 * 1024) + b"0]"
                    else:  # chunked, no Content-Length: refused once the limit is crossed
                        body = _huge(40 * 1024 * 1024)
                    try:
                        response = http.post(path, content=body, headers=headers)
                    except httpx.TransportError:
                        refused += 1  # the server answered 413 and closed while we were still sending
                        continue
                    assert response.status_code == 413, response.text
                    refused += 1
            grown = _peak_rss_kib(proc.pid) - before
            assert proc.poll() is None
            assert http.get("/healthz").status_code == 200
        assert refused == 8
        assert grown < 16 * 1024, f"peak RSS grew by {grown} KiB for 8 bodies of 20-40 MiB"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_out_of_range_ids_and_non_ascii_digits_are_4xx_not_5xx(sidecar: Running) -> None:
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    http = sidecar.http
    assert http.get(f"/v1/admin/quarantine/{2**64}", headers=auth).status_code == 404
    assert http.post("/v1/admin/quarantine/replay", json={"ids": [2**64]}, headers=auth).status_code == 400
    assert http.post("/v1/admin/dead-letters/replay", json={"ids": [-1]}, headers=auth).status_code == 400
    assert http.get("/v1/admin/quarantine", params={"limit": "²"}, headers=auth).status_code == 400
    assert http.get("/v1/admin/dead-letters", params={"limit": "١٠"}, headers=auth).status_code == 400
