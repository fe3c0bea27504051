"""Serving a sandbox partner (an ASGI app) on a loopback port from a background thread.

The built-in adapters' partner simulators use this for tests and ``tanpuhui demo``; a third-party adapter's sandbox
can too (:class:`tanpuhui.testing.sandbox.PartnerSandbox` builds on it). Subclasses set ``server_name`` and
implement :meth:`asgi_app`; ``start()`` binds ``port`` on ``host`` (an ephemeral port unless ``port`` is set, for
a sandbox another process must find at a known address) and sets ``url``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import uvicorn

__all__ = ["LoopbackServer", "free_port", "wait_until"]

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now, for a server another process starts (``tanpuhui serve --port``).

    The port is released before it is returned, so another process could take it first; prefer port 0 wherever the
    server itself can report the port it bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], T], timeout: float = 10.0, what: str = "the condition") -> T:
    """Poll ``condition`` every 20 ms until it returns a truthy value, and return that value; AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class LoopbackServer:
    """Start/stop (or ``with``) an ASGI app under uvicorn in a daemon thread on ``host``:``port`` (0: ephemeral)."""

    server_name: ClassVar[str] = "sandbox"
    host: str = "127.0.0.1"
    port: int = 0
    """The port to bind; 0 (the default) lets the system pick a free one."""
    url: str = ""
    """``http://127.0.0.1:<port>`` once started."""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"{self.server_name}: port must be 0 (ephemeral) or 1-65535, not {port}")
        self.host = host
        self.port = port

    def asgi_app(self) -> Any:
        """The ASGI application to serve."""
        raise NotImplementedError

    def start(self) -> Self:
        """Serve (idempotent). RuntimeError if the port cannot be bound (taken, say) or the server does not come
        up within 10 s."""
        if self._server is not None:
            return self
        # Bound here, not by uvicorn in its thread, so that a taken port is an error of this call.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            hint = "; is the port in use? choose another, or 0 for an ephemeral one" if self.port else ""
            raise RuntimeError(
                f"{self.server_name} could not bind {self.host}:{self.port}: {exc.strerror}{hint}"
            ) from None
        config = uvicorn.Config(
            self.asgi_app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self.server_name.replace(" ", "-"), daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"{self.server_name} did not start on {self.host}:{self.port}")
            time.sleep(0.002)
        port = sock.getsockname()[1]
        self.url = f"http://[{self.host}]:{port}" if ":" in self.host else f"http://{self.host}:{port}"
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (up to 10 s)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
