"""The configured adapters and their streams as the sidecar serves them; an adapter that cannot be configured is
reported (``/readyz``, the admin API) instead of stopping the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tanpuhui.sdk import Adapter, PushStream, TanpuhuiError, redact

from ..runtime import Runtime

__all__ = ["Configured", "StreamInfo"]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    adapter: str
    stream: str
    kind: Literal["pull", "push"]
    schema: str
    description: str = ""


@dataclass
class Configured:
    """What of ``[adapters]`` loaded: adapters and streams, and the problems of what did not (redacted)."""

    adapters: dict[str, Adapter] = field(default_factory=dict)
    streams: dict[tuple[str, str], StreamInfo] = field(default_factory=dict)
    plugin_problems: list[str] = field(default_factory=list)
    adapter_problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, runtime: Runtime) -> Configured:
        """Instantiate every configured adapter; push streams get their schemas compiled now, not on the first
        request."""
        out = cls(plugin_problems=[redact(p) for p in runtime.plugins.problems])
        for name in runtime.config.adapters:
            try:
                adapter = runtime.adapter(name)
                streams = list(adapter.streams())
            except TanpuhuiError as exc:
                out.adapter_problems.append(redact(str(exc)))
                continue
            out.adapters[name] = adapter
            for s in streams:
                kind: Literal["pull", "push"] = "push" if isinstance(s, PushStream) else "pull"
                out.streams[(name, s.name)] = StreamInfo(name, s.name, kind, s.schema, s.description)
                if kind == "push":
                    runtime.push_stream(name, s.name)
        return out

    @property
    def problems(self) -> list[str]:
        return self.plugin_problems + self.adapter_problems

    def of_kind(self, kind: str) -> list[tuple[str, str]]:
        return [key for key, info in self.streams.items() if info.kind == kind]
