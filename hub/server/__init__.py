"""The sidecar: ``tanpuhui serve`` (see docs/operator-guide.md).

:class:`Sidecar` is the runtime and its ASGI app; :func:`serve` runs it with uvicorn until SIGTERM/SIGINT.
"""

from .app import Sidecar
from .openapi import Endpoint
from .run import serve
from .settings import ScheduleSettings, ServerSettings, parse_duration

__all__ = ["Endpoint", "ScheduleSettings", "ServerSettings", "Sidecar", "parse_duration", "serve"]
