"""hub.toml: one TOML file; secrets only as references to environment variables; every setting overridable by env.

    [hub]
    store = "var/hub.db"                          # SQLite file (or sqlite:///path)
    # store = { env = "TANPUHUI_STORE_URL" }      # PostgreSQL: postgresql://user:password@host/db (docs/scaling.md)
    pseudonym_keys = { env = "TANPUHUI_PSEUDONYM_KEYS" }

    [adapters.transit_card]
    base_url = "https://transit.example.cn"
    client_id = "anhui-hub"
    client_secret = { env = "TRANSIT_CLIENT_SECRET" }

    [methodologies."tph.water.peak-saving"]
    factors = { kwh_per_m3 = 0.42 }

    [[methodologies."tph.electricity.peak-saving".vintages.ef_grid]]   # a data year the hub does not ship
    value = 0.6401
    data_year = 2024
    valid_from = 2026-01-01
    valid_to = 2026-12-31
    source = "MEE/NBS announcement of the 2024 electricity CO2 emission factors, Anhui"

    [sinks.platform]
    type = "http"
    url = "https://carbon-account.example.cn/hub/events"
    secret = { env = "PLATFORM_WEBHOOK_SECRET" }

Overrides: ``TANPUHUI__ADAPTERS__TRANSIT_CARD__PAGE_SIZE=200`` sets ``adapters.transit_card.page_size`` (the value
is read as a TOML value when it parses as one, else as a string). A key that names a secret (``*secret*``,
``*password*``, ``*token*``, ``pseudonym_keys``) must be ``{ env = "NAME" }``; a literal there is an error.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from tanpuhui.sdk import ConfigError

from .overlaps import DEFAULT_OVERLAPS, OverlapRule
from .plausibility import PlausibilitySettings, plausibility_settings

__all__ = [
    "ENV_PREFIX",
    "Duration",
    "ForwarderSettings",
    "HubConfig",
    "HubSettings",
    "MethodologySettings",
    "VintageSettings",
    "load_config",
    "parse_duration",
    "pydantic_problems",
]

ENV_PREFIX = "TANPUHUI__"
_NOT_SECRET_SUFFIX = re.compile(r"_(url|uri|endpoint|path|file|ttl|env|version|header)$", re.I)
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|pseudonym_keys|private_key|app_key_secret)", re.I)
_SECRET_VALUE_KEY = re.compile(r"(secret|password|passwd|token|pseudonym_keys|private_key|key)", re.I)
"""Keys whose values are scrubbed from messages: wider than the literal-secret rule (an ``sm4_key`` is a secret
even if a partner's ``app_key`` is only an identifier: scrubbing both costs nothing)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"250ms"``, ``"2h"``, ``"1d"``; other values are left to pydantic."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f'{value!r} is not a duration; write e.g. 30, "30s", "5m", "2h" or "250ms"')
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as a number or a string with a unit (``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"3d"``)."""


class HubSettings(BaseModel):
    """The ``[hub]`` table."""

    model_config = ConfigDict(extra="forbid")
    store: str = "tanpuhui.db"
    synchronous: Literal["FULL", "NORMAL", "full", "normal"] = "FULL"
    lease_ttl: float = Field(
        default=30.0, gt=0, le=86400, description="seconds a replica's pull/sink lease lasts unless renewed"
    )
    pseudonym_keys: str | None = None
    fingerprint_window_minutes: int = Field(default=10, ge=1, le=1440)
    commit_records: int = Field(
        default=2000,
        ge=0,
        le=1_000_000,
        description="a pull commits its pages together until they hold this many records (0: each page alone)",
    )
    commit_interval: float = Field(
        default=1.0, ge=0, le=3600, description="seconds a pulled page may wait to be committed with the next ones"
    )
    overlap: list[OverlapRule] | None = Field(
        default=None, description="no-double-credit rules ([[hub.overlap]]); unset: DEFAULT_OVERLAPS, []: none"
    )

    @field_validator("overlap")
    @classmethod
    def _distinct_rules(cls, value: list[OverlapRule] | None) -> list[OverlapRule] | None:
        names = [r.name for r in value or ()]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be distinct, got {names}")
        return value

    def overlap_rules(self) -> tuple[OverlapRule, ...]:
        """The rules in force (the defaults unless hub.toml lists its own)."""
        return DEFAULT_OVERLAPS if self.overlap is None else tuple(self.overlap)


class ForwarderSettings(BaseModel):
    """The ``[forwarder]`` table: batches and the pace of retries (docs/reliability.md, "Consumer outages").

    A transient failure (refused connection, timeout, 408/425/429/5xx) pauses the sink on the batch in hand and
    retries it: the n-th failed try waits ``initial_backoff`` x 2^(n-1) x U(1, 1.5), at most ``max_backoff`` (or
    the consumer's ``Retry-After``, at most ``max_retry_after``). A batch is dead-lettered for a transient failure
    only once it has had ``attempts`` tries *and* the sink has been failing for ``give_up_after``; a one-shot
    ``tanpuhui forward`` makes ``attempts`` tries and leaves a still-failing batch in the outbox for the next run.
    """

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    attempts: int = Field(
        default=8, ge=1, le=100, description="tries of a batch before it may be dead-lettered (one-shot forward: all)"
    )
    initial_backoff: Duration = Field(default=0.5, gt=0, description="wait after the first failed try")
    max_backoff: Duration = Field(default=300.0, gt=0, description="longest wait between tries")
    max_retry_after: Duration = Field(default=300.0, ge=0, description="longest consumer Retry-After honoured")
    give_up_after: Duration = Field(
        default=3 * 86400.0,
        ge=0,
        description="continuous transient failure after which batches are dead-lettered (0: once attempts ran out)",
    )


class VintageSettings(BaseModel):
    """One ``[[methodologies."<id>".vintages.<factor>]]`` entry: a factor value for the activities of a period."""

    model_config = ConfigDict(extra="forbid")
    value: float
    source: str = Field(min_length=1, description="the publication the value comes from")
    valid_from: date = Field(description="first activity date the value applies to (inclusive)")
    valid_to: date | None = Field(default=None, description="last activity date (inclusive); absent: open-ended")
    data_year: int | None = Field(default=None, ge=1990, le=2100)
    single_source: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> VintageSettings:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        return self


class MethodologySettings(BaseModel):
    """A ``[methodologies."<id>"]`` table: pin a version, override factor values, add factor vintages."""

    model_config = ConfigDict(extra="forbid")
    version: str | None = None
    factors: dict[str, float] = Field(default_factory=dict)
    vintages: dict[str, list[VintageSettings]] = Field(default_factory=dict)


@dataclass
class HubConfig:
    """The whole configuration, secrets resolved. ``source`` names the file (for error messages)."""

    source: str
    hub: HubSettings
    forwarder: ForwarderSettings
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)
    methodologies: dict[str, MethodologySettings] = field(default_factory=dict)
    plausibility: PlausibilitySettings = field(default_factory=lambda: plausibility_settings({}, "<defaults>"))
    """The ``[plausibility]`` rules (``tanpuhui.hub.plausibility``), the shipped ones merged with the file's."""
    server: dict[str, Any] = field(default_factory=dict)
    """The ``[server]`` table of the sidecar, validated by ``tanpuhui.hub.server.ServerSettings`` when it starts."""
    base_dir: Path = field(default_factory=Path.cwd)

    def secret_values(self, environ: Mapping[str, str] | None = None) -> set[str]:
        """Every secret this configuration resolved: values under keys that name secrets (``*secret*``,
        ``*token*``, ``*password*``, ``*key*``), the pseudonym keys (here or in the environment) and the store URL's
        password, for :func:`tanpuhui.sdk.register_secrets`."""
        env = os.environ if environ is None else environ
        found: set[str] = set()

        def walk(value: Any, secret: bool) -> None:
            if isinstance(value, Mapping):
                for k, v in value.items():
                    walk(v, secret or bool(_SECRET_VALUE_KEY.search(str(k))))
            elif isinstance(value, list | tuple):
                for v in value:
                    walk(v, secret)
            elif secret and isinstance(value, str):
                found.add(value)

        walk({"adapters": self.adapters, "sinks": self.sinks, "server": self.server}, False)
        for spec in (self.hub.pseudonym_keys, env.get("TANPUHUI_PSEUDONYM_KEYS")):
            if spec:
                found.add(spec)
        dsn = self.store_dsn()
        if dsn:
            try:
                password = urlsplit(dsn).password
            except ValueError:
                password = None
            if password:
                found.add(password)
        return found

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "<config>",
        environ: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> HubConfig:
        env = os.environ if environ is None else environ
        _check_store_literal(data, source)
        doc = _apply_env_overrides(_deepcopy(data), env)
        unknown = set(doc) - {"hub", "forwarder", "adapters", "sinks", "methodologies", "plausibility", "server"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown table(s) {', '.join(sorted(unknown))}; expected hub, forwarder, adapters, sinks, "
                "methodologies, plausibility, server"
            )
        resolved = _resolve(doc, env, source, ())
        table = "hub"
        try:
            hub = HubSettings.model_validate(resolved.get("hub", {}))
            table = "forwarder"
            forwarder = ForwarderSettings.model_validate(resolved.get("forwarder", {}))
            methods = {}
            for key, value in resolved.get("methodologies", {}).items():
                table = f'methodologies."{key}"'
                methods[key] = MethodologySettings.model_validate(value)
        except ValidationError as exc:
            # Name the table: "synchronous: ..." alone does not say where to look.
            raise ConfigError(f"{source}: {pydantic_problems(exc, table)}") from None
        if not isinstance(resolved.get("server", {}), dict):
            raise ConfigError(f"{source}: [server] must be a table")
        for section in ("adapters", "sinks"):
            for name, table in resolved.get(section, {}).items():
                if not isinstance(table, dict):
                    raise ConfigError(f"{source}: [{section}.{name}] must be a table")
        return cls(
            source=source,
            hub=hub,
            forwarder=forwarder,
            adapters=dict(resolved.get("adapters", {})),
            sinks=dict(resolved.get("sinks", {})),
            methodologies=methods,
            plausibility=plausibility_settings(resolved.get("plausibility"), source),
            server=dict(resolved.get("server", {})),
            base_dir=base_dir or Path.cwd(),
        )

    def store_dsn(self) -> str | None:
        """The PostgreSQL URL when ``[hub] store`` is one (``postgresql://`` or ``postgres://``), else None."""
        raw = self.hub.store
        return raw if raw.startswith(_POSTGRES_SCHEMES) else None

    def store_path(self) -> str:
        """The SQLite path, relative paths taken from the config file's folder."""
        raw = self.hub.store
        if raw.startswith("sqlite:///"):
            raw = raw[len("sqlite:///") :]
        elif raw.startswith(_POSTGRES_SCHEMES):
            raise ConfigError(f"{self.source}: [hub] store is a PostgreSQL URL, not a SQLite path")
        elif "://" in raw:
            scheme = raw.split("://", 1)[0]
            raise ConfigError(
                f"{self.source}: [hub] store: unknown scheme {scheme!r}; use a SQLite path (or sqlite:///path) or "
                "postgresql://..."
            )
        if raw == ":memory:":
            return raw
        path = Path(raw)
        return str(path if path.is_absolute() else self.base_dir / path)


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _check_store_literal(data: Mapping[str, Any], source: str) -> None:
    """A PostgreSQL URL written in hub.toml must not carry its password (the rule for every secret)."""
    hub = data.get("hub")
    raw = hub.get("store") if isinstance(hub, Mapping) else None
    if not isinstance(raw, str) or not raw.startswith(_POSTGRES_SCHEMES):
        return
    parts = urlsplit(raw)
    try:
        has_password = parts.password is not None
    except ValueError:
        has_password = False
    if has_password or "password" in parse_qs(parts.query):
        raise ConfigError(
            f"{source}: hub.store holds a literal database password; secrets appear only as references: "
            'store = { env = "TANPUHUI_STORE_URL" }, or a URL without the password and PGPASSWORD set'
        )


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> HubConfig:
    """Read and resolve a hub.toml; errors name the file and the key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return HubConfig.from_dict(data, source=str(p), environ=environ, base_dir=p.resolve().parent)


def pydantic_problems(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``key.path: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in (prefix, *err["loc"]) if x != "")
        parts.append(f"{loc or '(top)'}: {err['msg']}")
    return "; ".join(parts)


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _apply_env_overrides(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        value: Any
        if _is_secret_key(path[-1]):
            value = {"env": name}  # still a reference, so the literal-secret rule holds
        else:
            # Arrays and inline tables are read as TOML; scalars stay strings and the settings model coerces them
            # (so REGION=340100 stays the string a str field expects, PAGE_SIZE=200 still becomes an int).
            value = raw
            if raw.lstrip()[:1] in ("[", "{"):
                try:
                    value = tomllib.loads(f"v = {raw}")["v"]
                except tomllib.TOMLDecodeError:
                    raise ConfigError(f"environment {name}: {raw!r} is not a TOML array or inline table") from None
        target = doc
        for part in path[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"environment {name}: {part} is not a table")
            target = nxt
        target[path[-1]] = value
    return doc


def _is_env_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str)


def _resolve(value: Any, env: Mapping[str, str], source: str, path: tuple[str, ...]) -> Any:
    where = ".".join(path)
    if _is_env_ref(value):
        var = value["env"]
        if var not in env:
            raise ConfigError(f"{source}: {where} refers to environment variable {var}, which is not set")
        return env[var]
    if isinstance(value, dict):
        return {k: _resolve(v, env, source, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, env, source, (*path, str(i))) for i, v in enumerate(value)]
    if isinstance(value, str) and path and _is_secret_key(_owning_key(path)):
        raise ConfigError(
            f"{source}: {where} holds a literal secret; secrets appear only as references, "
            f'e.g. {_owning_key(path)} = {{ env = "{"_".join(p.upper() for p in path if not p.isdigit())}" }}'
        )
    return value


def _is_secret_key(key: str) -> bool:
    """``client_secret``, ``app_secret``, ``admin_token``... but not ``token_url`` or ``secret_path``."""
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET_SUFFIX.search(key)


def _owning_key(path: tuple[str, ...]) -> str:
    for part in reversed(path):
        if not part.isdigit():
            return part
    return ""
