"""The runtime: what a hub process wires once from its configuration and plugins.

:class:`Runtime` loads the plugins, chooses the pseudonymiser, builds the schema registry, opens the store, and
instantiates the configured adapters, methodologies and sinks on first use. It runs nothing: the
:class:`~tanpuhui.hub.pipeline.Pipeline` turns pages into writes, and the drivers (:mod:`tanpuhui.hub.drivers`)
feed it from pulls, pushes and quarantine replays. Dependencies point one way: runtime <- pipeline <- drivers <-
CLI, sidecar, demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import orjson
from pydantic import ValidationError

from tanpuhui.sdk import (
    Adapter,
    ConfigError,
    Factor,
    HttpOptions,
    Methodology,
    MethodologyError,
    Partition,
    Pseudonymiser,
    PushStream,
    Sink,
    Stream,
    StreamContext,
    register_secrets,
)

from .config import HubConfig, MethodologySettings, pydantic_problems
from .plugins import Plugins, load_plugins
from .store.base import QuarantineEntry, Store
from .store.factory import open_store
from .store.leases import new_owner_id
from .validation import RECORD_SCHEMA, CompiledSchema, SchemaRegistry

__all__ = ["BoundStream", "Runtime", "RuntimeOptions"]


class BoundStream:
    """A configured adapter's stream with its compiled schemas: what the pipeline needs to process its pages."""

    __slots__ = ("adapter", "known_fields", "raw_schema", "record_schema", "runtime", "stream")

    def __init__(self, runtime: Runtime, adapter: Adapter, stream: Stream) -> None:
        self.runtime = runtime
        self.adapter = adapter
        self.stream = stream
        self.raw_schema: CompiledSchema = runtime.schemas.get(stream.schema)
        self.record_schema: CompiledSchema = runtime.schemas.get(RECORD_SCHEMA)
        self.known_fields = known_fields(self.raw_schema.document)

    @property
    def key(self) -> tuple[str, str]:
        return self.adapter.name, self.stream.name

    @property
    def label(self) -> str:
        """``adapter:stream``, as logs, errors and audit subjects name a stream."""
        return f"{self.adapter.name}:{self.stream.name}"

    def context(self, state: dict[str, Any]) -> StreamContext:
        """A fresh context over ``state`` (the stream's pending state, as loaded from its checkpoint)."""
        runtime = self.runtime
        return StreamContext(
            adapter=self.adapter.name,
            adapter_version=self.adapter.version,
            stream=self.stream.base_name,  # a partition's records are the whole stream's (same names, same ids)
            pseudonymiser=runtime.pseudonymiser,
            methodologies=runtime.methodology,
            state=state,
            fingerprint_window_minutes=runtime.config.hub.fingerprint_window_minutes,
        )


class RuntimeOptions(TypedDict, total=False):
    """What a :class:`Runtime` may be given instead of what it would make from its configuration (each None: made)."""

    plugins: Plugins | None
    store: Store | None
    pseudonymiser: Pseudonymiser | None
    http: HttpOptions | None


class Runtime:
    """Plugins, pseudonymiser, schemas and store of one hub process, and its configured adapters and sinks."""

    def __init__(
        self,
        config: HubConfig,
        *,
        plugins: Plugins | None = None,
        store: Store | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        http: HttpOptions | None = None,
    ) -> None:
        self.config = config
        register_secrets(config.secret_values())  # scrubbed from every message made from here on
        self.plugins = plugins if plugins is not None else load_plugins()
        self.http = http or HttpOptions()
        if pseudonymiser is None:
            spec = config.hub.pseudonym_keys
            pseudonymiser = (
                Pseudonymiser.parse(spec, f"{config.source} [hub] pseudonym_keys") if spec else Pseudonymiser.from_env()
            )
        self.pseudonymiser = pseudonymiser
        schemas: dict[str, Any] = {}
        for adapter_cls in self.plugins.adapters.values():
            schemas.update(adapter_cls.schemas)
        self.schemas = SchemaRegistry(schemas)
        self._methodologies: dict[str, Methodology] = {}
        for methodology_id, settings in config.methodologies.items():
            if settings.vintages:  # a wrong vintage table fails here, not item by item in the quarantine
                try:
                    self.methodology(methodology_id)
                except MethodologyError as exc:
                    raise ConfigError(f'{config.source} [methodologies."{methodology_id}"]: {exc}') from None
        self.store: Store = store if store is not None else open_store(config)
        self.replica_id = new_owner_id()
        """This process's name as a lease owner (host, process, random part)."""
        self._adapters: dict[str, Adapter] = {}
        self._streams: dict[tuple[str, str], BoundStream] = {}

    def methodology(self, methodology_id: str) -> Methodology:
        """The methodology in force: pinned or latest version, with hub.toml factor overrides applied."""
        found = self._methodologies.get(methodology_id)
        if found is None:
            settings = self.config.methodologies.get(methodology_id)
            found = self.plugins.methodology(methodology_id, settings.version if settings else None)
            if settings and settings.factors:
                found = found.with_factors(settings.factors, f"override in {self.config.source}")
            if settings and settings.vintages:
                found = configured_vintages(found, settings, f'{self.config.source} [methodologies."{methodology_id}"]')
            self._methodologies[methodology_id] = found
        return found

    def adapter(self, name: str) -> Adapter:
        """The configured adapter instance (settings from ``[adapters.NAME]`` validated once)."""
        adapter = self._adapters.get(name)
        if adapter is None:
            cls = self.plugins.adapter(name)
            table = self.config.adapters.get(name)
            if table is None:
                raise ConfigError(
                    f"{self.config.source}: no [adapters.{name}] table; adapter {name!r} is not configured"
                )
            table = dict(table)
            partitions = table.pop("partitions", None)  # the hub's, not the adapter's: how its streams are read
            try:
                settings = cls.Settings.model_validate(table)
            except ValidationError as exc:
                raise ConfigError(f"{self.config.source}: {pydantic_problems(exc, f'adapters.{name}')}") from None
            adapter = cls(settings, self.http)
            if partitions is not None:
                try:
                    adapter.split(partitions)
                except ConfigError as exc:
                    raise ConfigError(f"{self.config.source}: {exc}") from None
            self._adapters[name] = adapter
        return adapter

    def stream(self, adapter_name: str, stream_name: str) -> BoundStream:
        """A configured stream, bound to its schemas (built once)."""
        key = (adapter_name, stream_name)
        bound = self._streams.get(key)
        if bound is None:
            adapter = self.adapter(adapter_name)
            try:
                stream = adapter.stream(stream_name)
            except KeyError:
                names = ", ".join(s.name for s in adapter.streams())
                raise ConfigError(f"adapter {adapter_name!r} has no stream {stream_name!r}; streams: {names}") from None
            bound = self._streams[key] = BoundStream(self, adapter, stream)
        return bound

    def push_stream(self, adapter_name: str, stream_name: str) -> BoundStream:
        """A configured push stream; ConfigError for a pull stream or an unknown one."""
        bound = self._streams.get((adapter_name, stream_name)) or self.stream(adapter_name, stream_name)
        if not isinstance(bound.stream, PushStream):
            raise ConfigError(f"{adapter_name}:{stream_name} is a pull stream; it cannot receive pushes")
        return bound

    def stream_schema(self, adapter_name: str, stream_name: str) -> CompiledSchema:
        """The partner schema of a stream (or of a partition of one), found from the adapter class (no configuration
        needed)."""
        cls = self.plugins.adapter(adapter_name)
        base = Partition.base_of(stream_name)
        for stream_type in cls.stream_types:
            if stream_type.name in (stream_name, base):
                return self.schemas.get(stream_type.schema)
        raise ConfigError(f"adapter {adapter_name!r} has no stream {stream_name!r}")

    def build_sinks(self, names: Sequence[str] | None = None) -> dict[str, Sink]:
        """Instantiate the ``[sinks.NAME]`` tables (all, or the named ones) with their registered sink types."""
        out: dict[str, Sink] = {}
        for name, table in self.config.sinks.items():
            if names is not None and name not in names:
                continue
            kind = table.get("type")
            cls = self.plugins.sinks.get(str(kind))
            if cls is None:
                known = ", ".join(sorted(self.plugins.sinks)) or "none"
                raise ConfigError(
                    f"{self.config.source}: [sinks.{name}] type {kind!r} is not a registered sink type ({known})"
                )
            path = table.get("path")
            if isinstance(path, str) and not Path(path).is_absolute():
                table = {**table, "path": str(self.config.base_dir / path)}  # relative to hub.toml, like the store
            try:
                settings = cls.Settings.model_validate(table)
            except ValidationError as exc:
                raise ConfigError(f"{self.config.source}: {pydantic_problems(exc, f'sinks.{name}')}") from None
            out[name] = cls(name, settings)
        if names is not None and set(names) - set(out):
            raise ConfigError(f"{self.config.source}: no [sinks.{', '.join(sorted(set(names) - set(out)))}] table")
        return out

    def quarantine_raw(self, entry: QuarantineEntry) -> Any:
        """The quarantined raw item, unsealed (only for replay and masked display)."""
        return orjson.loads(self.pseudonymiser.unseal(entry.sealed_raw))

    async def aclose(self) -> None:
        """Close the adapters (their HTTP clients) and the store."""
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()
        self._streams.clear()
        self.store.close()


def known_fields(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The top-level fields a partner schema names, when it admits others (then they are drift); None when it
    does not (unknown fields fail validation instead) or names none at the top level."""
    if schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False:
        return None
    names: set[str] = set()
    for part in (schema, *(s for key in ("allOf", "anyOf", "oneOf") for s in schema.get(key, ()))):
        props = part.get("properties") if isinstance(part, Mapping) else None
        if isinstance(props, Mapping):
            names.update(props)
    if not names or schema.get("patternProperties"):
        return None
    return frozenset(names)


def configured_vintages(methodology: Methodology, settings: MethodologySettings, where: str) -> Methodology:
    """``methodology`` with the factor vintages of its hub.toml table added (unit: the factor's own)."""
    added = []
    for name, vintages in settings.vintages.items():
        try:
            unit = methodology.factor(name).unit
        except MethodologyError as exc:
            raise ConfigError(f"{where} vintages.{name}: {exc}") from None
        for v in vintages:
            added.append(
                Factor(
                    name,
                    v.value,
                    unit,
                    v.source,
                    valid_from=v.valid_from,
                    valid_to=v.valid_to,
                    data_year=v.data_year,
                    single_source=v.single_source,
                )
            )
    try:
        return methodology.with_vintages(added)
    except MethodologyError as exc:
        raise ConfigError(f"{where} vintages: {exc}") from None
