"""Running the sidecar with uvicorn, and stopping it cleanly on SIGTERM.

uvicorn stops accepting connections on SIGTERM/SIGINT and waits for in-flight requests; the sidecar hears about the
signal at the same moment (so scheduled pulls and deliveries stop at their next safe point instead of after the
requests), and then its lifespan shutdown waits for them within ``[server] shutdown_timeout``. The process exits
with status 0 after a clean stop (uvicorn would otherwise re-raise the signal, which ends the process with it).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn

from ..process import tune_gc
from .app import Sidecar
from .protocol import ConnectionLimits, GuardedHttpProtocol

__all__ = ["SidecarServer", "serve", "tune_gc", "uvicorn_config"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SidecarServer(uvicorn.Server):
    """uvicorn's server, telling the sidecar about a stop signal at once and exiting 0 after a clean stop."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: object) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def uvicorn_config(sidecar: Sidecar, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration for the sidecar: its HTTP protocol with the ``[server]`` connection limits
    (:mod:`.protocol`), no websockets, the sidecar's own logging."""
    s = sidecar.settings
    limits = ConnectionLimits(s.header_timeout, s.body_timeout, s.min_body_rate, s.max_connections)
    return uvicorn.Config(
        sidecar.app,
        host=host if host is not None else s.host,
        port=port if port is not None else s.port,
        http=GuardedHttpProtocol.with_limits(limits),
        ws="none",
        log_config=None,  # the JSON logging set up by the caller stays in charge
        log_level=s.log_level,
        access_log=False,  # the sidecar writes its own (JSON, with the request id, without query strings)
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(s.shutdown_timeout)),
        server_header=False,
    )


def serve(
    sidecar: Sidecar, host: str | None = None, port: int | None = None, sock: socket.socket | None = None
) -> bool:
    """Serve until SIGTERM/SIGINT (or ``should_exit``); False when the server did not start."""
    server = SidecarServer(uvicorn_config(sidecar, host, port), sidecar.begin_shutdown)
    tune_gc()
    server.run(sockets=[sock] if sock is not None else None)
    return server.started
