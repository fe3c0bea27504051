"""Serving a sandbox partner (an ASGI app) on a loopback port from a background thread.

The built-in adapters' partner simulators use this for tests and ``tanpuhui demo``; a third-party adapter's sandbox
can too. Subclasses set ``server_name`` and implement :meth:`asgi_app`; ``start()`` binds an ephemeral port on
``host`` and sets ``url``.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, ClassVar, Self

import uvicorn

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Start/stop (or ``with``) an ASGI app under uvicorn in a daemon thread on ``host``, ephemeral port."""

    server_name: ClassVar[str] = "sandbox"
    host: str = "127.0.0.1"
    url: str = ""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def asgi_app(self) -> Any:
        """The ASGI application to serve."""
        raise NotImplementedError

    def start(self) -> Self:
        """Serve on an ephemeral port (idempotent); raises RuntimeError if it does not come up within 10 s."""
        if self._server is not None:
            return self
        config = uvicorn.Config(
            self.asgi_app(),
            host=self.host,
            port=0,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=self.server_name.replace(" ", "-"), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"{self.server_name} did not start on {self.host}")
            time.sleep(0.002)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
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
