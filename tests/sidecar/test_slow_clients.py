"""Slow and hostile clients, over real sockets: a request head or body trickled in is cut off within the
``[server]`` timeouts while other clients are served meanwhile; a worker caps its connections (503 problem
documents beyond); the admin token is checked before a byte of the body is read."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import orjson
import pytest

from .conftest import ADMIN_TOKEN, RunningSidecar, SidecarFactory, ride, signed

FAST = {"header_timeout": 1.0, "body_timeout": 1.0, "min_body_rate": 200}
WEBHOOK = "/v1/webhooks/bike_share/rides"


@contextmanager
def raw(server: RunningSidecar) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        yield sock


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it has not by ``deadline``)."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the connection is still open; received {received!r}") from None
        if not chunk:
            return received
        received += chunk


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and a ``Content-Length`` body) from a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> float:
    """Send ``data`` a byte at a time, ``every`` seconds apart, until the server closes (returns when it did)."""
    for byte in data:
        if stop.is_set():
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return time.monotonic()
        time.sleep(every)
    return time.monotonic()


class Meanwhile:
    """A well-behaved client asking ``/healthz`` over and over in a thread: its slowest answer is kept."""

    def __init__(self, server: RunningSidecar) -> None:
        self.server = server
        self.stop = threading.Event()
        self.slowest = 0.0
        self.answered = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                assert http.get("/healthz").status_code == 200
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answered += 1
                time.sleep(0.02)

    def __enter__(self) -> Meanwhile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_slowloris_head_is_cut_off_with_a_408_while_others_are_served(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server=FAST)
    head = b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    with raw(server) as sock, Meanwhile(server) as others:
        started = time.monotonic()
        sender = threading.Thread(target=trickle, args=(sock, head, 0.1, others.stop), daemon=True)
        sender.start()
        answer = read_until_closed(sock, started + 5)
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.5, elapsed
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"content-type: application/problem+json" in answer
    assert b'"status":408' in answer
    assert others.answered > 10 and others.slowest < 0.5


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server=FAST)
    with raw(server) as sock:
        started = time.monotonic()
        answer = read_until_closed(sock, started + 5)
    assert 0.9 < time.monotonic() - started < 2.5
    assert answer.startswith(b"HTTP/1.1 408")


def test_the_head_timeout_starts_again_for_each_request_of_a_kept_alive_connection(
    start_sidecar: SidecarFactory,
) -> None:
    server = start_sidecar(server={**FAST, "header_timeout": 0.6})
    with raw(server) as sock:
        for _ in range(4):  # 4 × 0.3 s on one connection: longer than the timeout in all, within it for each
            time.sleep(0.3)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 OK")


def test_a_body_sent_a_byte_at_a_time_is_cut_off_however_regular(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server=FAST)
    body = orjson.dumps([ride(n) for n in range(20)])
    head = b"POST %s HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        WEBHOOK.encode(),
        len(body),
    )
    head += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in signed(body, "msg_slow_body").items())
    with raw(server) as sock, Meanwhile(server) as others:
        sock.sendall(head + b"\r\n")
        started = time.monotonic()
        sender = threading.Thread(target=trickle, args=(sock, body, 0.05, others.stop), daemon=True)
        sender.start()  # 20 bytes/s: never a pause of body_timeout, but under min_body_rate
        answer = read_until_closed(sock, started + 6)
        elapsed = time.monotonic() - started
    assert answer == b""  # the route saw its client go away: nothing to answer
    assert 0.9 < elapsed < 3.5, elapsed
    assert others.answered > 10 and others.slowest < 0.5
    # and nothing of it was stored: the same id with the whole body is a first delivery
    assert server.post_ride([ride(n) for n in range(20)], "msg_slow_body").headers.get("x-webhook-replayed") is None


def test_a_body_that_stalls_is_cut_off_after_the_body_timeout(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={**FAST, "min_body_rate": 0})
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/validate/bike-ride HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[{"
        )
        started = time.monotonic()
        assert read_until_closed(sock, started + 5) == b""
    assert 0.9 < time.monotonic() - started < 2.5


def test_a_body_with_pauses_under_the_timeout_is_served(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={**FAST, "min_body_rate": 0})
    body = orjson.dumps([ride(n) for n in range(3)])
    chunks = [body[: len(body) // 3], body[len(body) // 3 : 2 * len(body) // 3], body[2 * len(body) // 3 :]]
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/validate/bike-ride HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for chunk in chunks:
            time.sleep(0.5)
            sock.sendall(chunk)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer


def test_connections_over_the_cap_are_answered_503_problems(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={"max_connections": 2})
    request = b"GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n"
    with raw(server) as first, raw(server) as second:
        for sock in (first, second):  # two kept-alive connections: the cap
            sock.sendall(request)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
        response = httpx.get(f"{server.url}/healthz", timeout=5)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert "at most 2 connections" in response.json()["detail"]
        first.sendall(request)  # the connections under the cap are still served
        assert read_response(first).startswith(b"HTTP/1.1 200")
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # and a slot frees when one closes


def test_a_request_uvicorn_cannot_parse_is_a_400_problem(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    with raw(server) as sock:
        sock.sendall(b"HELLO THERE\r\n\r\n")
        answer = read_until_closed(sock, time.monotonic() + 5)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"application/problem+json" in answer


@pytest.mark.parametrize("authorization", ["", f"Authorization: Bearer {ADMIN_TOKEN}x\r\n"])
def test_the_admin_token_is_checked_before_the_body_is_read(start_sidecar: SidecarFactory, authorization: str) -> None:
    server = start_sidecar()
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/admin/quarantine/replay HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n" + authorization.encode() + b"\r\n"
        )  # and not a byte of the 5 MB body
        answer = read_until_closed(sock, time.monotonic() + 3)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer
    assert b"connection: close" in answer  # the server does not go on to read (and discard) the body


def test_the_settings_reach_the_server(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar(server={"header_timeout": "3s", "max_connections": 7})
    limits = server.server.config.http_protocol_class.limits  # type: ignore[attr-defined]
    assert (limits.header_timeout, limits.body_timeout, limits.min_body_rate, limits.max_connections) == (
        3.0,
        10.0,
        1024,
        7,
    )


def test_a_refused_request_with_a_small_body_keeps_its_connection(start_sidecar: SidecarFactory) -> None:
    """Closing with a body still arriving would reset the connection and could lose the answer: a small body is
    read and dropped instead, and the connection serves the next request."""
    server = start_sidecar()
    body = b'{"ids": [1]}'
    with raw(server) as sock:
        sock.sendall(
            b"POST /v1/admin/quarantine/replay HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.1)  # the body in a segment of its own, after the answer may have gone
        sock.sendall(body)
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and b"connection: close" not in answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 OK")
