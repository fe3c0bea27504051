"""The ``[server]`` table of hub.toml: the sidecar's address, limits, admin token, schedules and shutdown bound.

    [server]
    host = "127.0.0.1"
    port = 8700
    admin_token = { env = "TANPUHUI_ADMIN_TOKEN" }
    max_body_bytes = 8_388_608
    header_timeout = "10s"                       # slow clients: the request head must arrive within this,
    body_timeout = "10s"                         # a body may pause this long, and must then average
    min_body_rate = 1024                         # this many bytes/s
    max_connections = 1000                       # per worker; a request beyond is answered 503
    shutdown_timeout = "10s"
    workers = 1                                  # sidecar processes on the port (one core each)

    [server.schedules.transit_card]              # every pull stream of the adapter
    interval = "5m"
    jitter = 0.1

    [server.schedules.yrd_scenarios.catalog]     # one stream (inherits the adapter's keys when given)
    interval = "1d"

Durations are seconds (a number) or a string with a unit: ``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from tanpuhui.sdk import ConfigError

from ..config import Duration, HubConfig, parse_duration, pydantic_problems
from ..scheduler import Schedule

__all__ = ["Duration", "ScheduleSettings", "ServerSettings", "parse_duration"]


class ScheduleSettings(BaseModel):
    """When to pull a stream."""

    model_config = ConfigDict(extra="forbid")
    interval: Duration = Field(gt=0)
    jitter: float = Field(default=0.1, ge=0, le=1, description="each wait is interval × a factor in 1 ± jitter")
    max_backoff: Duration = Field(default=3600.0, gt=0, description="longest wait after failures in a row")
    run_at_start: bool = Field(default=True, description="first run soon after start (within jitter × interval)")

    def schedule(self) -> Schedule:
        return Schedule(self.interval, self.jitter, max(self.max_backoff, self.interval), self.run_at_start)


_SCHEDULE_KEYS = frozenset(ScheduleSettings.model_fields)


class ServerSettings(BaseModel):
    """The ``[server]`` table (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    workers: int = Field(
        default=1, ge=1, le=64, description="sidecar processes sharing the port, one core each (serve --workers)"
    )
    admin_token: SecretStr | None = Field(default=None, description="bearer token of /v1/admin (env reference)")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="request body limit (413 beyond)")
    header_timeout: Duration = Field(
        default=10.0, gt=0, description="a request head (line and headers) must arrive within this (408 beyond)"
    )
    body_timeout: Duration = Field(
        default=10.0, gt=0, description="longest pause while a body streams in; also the grace of min_body_rate"
    )
    min_body_rate: int = Field(
        default=1024, ge=0, description="bytes/s a body must average once it has streamed body_timeout (0: none)"
    )
    max_connections: int = Field(
        default=1000, ge=1, description="connections one worker serves at once (503 with Retry-After beyond)"
    )
    shutdown_timeout: Duration = Field(default=10.0, ge=0, description="SIGTERM: how long in-flight work may take")
    receipt_retention: Duration = Field(default=7 * 86400.0, gt=0, description="how long webhook answers are kept")
    forward: bool = Field(default=True, description="run the forwarder loop to the configured sinks")
    forward_idle: Duration = Field(default=5.0, gt=0, description="outbox poll interval when nothing wakes it")
    forward_linger: Duration = Field(default=0.05, ge=0, description="wait after a wake so commits share a batch")
    forward_error_pause: Duration = Field(default=30.0, gt=0, description="pause after a sink is gone or broken")
    readiness_timeout: Duration = Field(default=2.0, gt=0, description="per sink check in /readyz")
    console_session: Duration = Field(default=8 * 3600.0, gt=0, description="how long a console sign-in lasts")
    stale_after: Duration = Field(default=86400.0, gt=0, description="console: a stream is stale past this")
    run_retention: Duration = Field(default=30 * 86400.0, gt=0, description="how long the run history is kept")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    schedules: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _schedules_parse(self) -> ServerSettings:
        self.stream_schedules()
        return self

    def stream_schedules(self) -> dict[tuple[str, str | None], ScheduleSettings]:
        """``(adapter, stream)`` -> schedule; stream None: every pull stream of the adapter without its own."""
        out: dict[tuple[str, str | None], ScheduleSettings] = {}
        for adapter, table in self.schedules.items():
            if not isinstance(table, dict):
                raise ValueError(f"schedules.{adapter} must be a table")
            own = {k: v for k, v in table.items() if not isinstance(v, dict)}
            unknown = set(own) - _SCHEDULE_KEYS
            if unknown:
                raise ValueError(
                    f"schedules.{adapter}: unknown key(s) {', '.join(sorted(unknown))}; expected "
                    f"{', '.join(sorted(_SCHEDULE_KEYS))} or a [server.schedules.{adapter}.STREAM] table"
                )
            if own:
                if "interval" not in own:
                    subs = [k for k, v in table.items() if isinstance(v, dict)]
                    if not subs:
                        raise ValueError(f"schedules.{adapter}: interval is required")
                else:
                    out[(adapter, None)] = _schedule(own, f"schedules.{adapter}")
            for stream, sub in table.items():
                if isinstance(sub, dict):
                    out[(adapter, stream)] = _schedule({**own, **sub}, f"schedules.{adapter}.{stream}")
        return out

    @classmethod
    def from_config(cls, config: HubConfig) -> ServerSettings:
        """Validate ``config.server``; errors name the file and the key."""
        try:
            return cls.model_validate(config.server)
        except ValidationError as exc:
            raise ConfigError(f"{config.source}: {pydantic_problems(exc, 'server')}") from None


def _schedule(table: dict[str, Any], where: str) -> ScheduleSettings:
    try:
        return ScheduleSettings.model_validate(table)
    except ValidationError as exc:
        raise ValueError(pydantic_problems(exc, where)) from None
