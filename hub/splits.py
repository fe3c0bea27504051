"""A change of split is deliberate: a partitionable pull stream read in N parts is not silently read again in M.

Each part of a split stream (``partitions = {transactions = N}``) keeps its own checkpoint, and the count is in
the part names (``transactions_0ofN``), so the parts of another split start from the partner's beginning: the
records already credited are recognised by their ids and not credited twice, but the whole feed is fetched again
(hours, for a production feed with months of history). So a pull of a stream whose configured split has no
checkpoint yet, while the store holds one of another split (the unsplit stream, or parts of another count), is
refused (:class:`SplitChanged`, before anything is pulled), until the operator either sets the partitions back or
acknowledges the new split with ``tanpuhui repartition ADAPTER:STREAM`` (:func:`repartition`): that removes the
other splits' checkpoints (and their lapsed leases; refused while a run holds one) in one transaction with an audit
entry, and the next pull reads the new split from the beginning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tanpuhui.sdk import Adapter, ConfigError, Partition, PullStream

from .audit import AuditEvent
from .pausing import PAUSED
from .store.base import Store, StreamStatus

__all__ = ["Repartitioned", "SplitChanged", "check_splits", "repartition", "split_bases"]


class SplitChanged(ConfigError):
    """A pull refused: the store holds checkpoints of another split of the stream than the configured one."""


@dataclass(frozen=True, slots=True)
class Repartitioned:
    """What :func:`repartition` did."""

    adapter: str
    base: str
    parts: int
    """The configured split (1: unsplit)."""
    removed: tuple[StreamStatus, ...]
    """The other splits' checkpoints removed (none: there were none)."""
    paused: tuple[str, ...] = ()
    """Streams among them whose operator's pause was lifted with them."""


def split_bases(adapter: Adapter, names: Iterable[str] | None = None) -> list[str]:
    """The partitionable pull streams (base names) among the adapter's streams ``names`` (all when None)."""
    wanted = None if names is None else set(names)
    bases: dict[str, None] = {}
    for stream in adapter.streams():
        if isinstance(stream, PullStream) and stream.partitionable and (wanted is None or stream.name in wanted):
            bases[stream.base_name] = None
    return list(bases)


def parts_of(name: str) -> int:
    """The split a stream name belongs to: N for a part ``base_<i>ofN``, 1 for the unsplit stream."""
    found = Partition.of(name)
    return found[1].count if found else 1


def _committed(status: StreamStatus) -> bool:
    return status.last_success is not None or status.cursor is not None


def _splits(statuses: Iterable[StreamStatus]) -> dict[int, list[StreamStatus]]:
    found: dict[int, list[StreamStatus]] = defaultdict(list)
    for status in statuses:
        if _committed(status):
            found[parts_of(status.stream)].append(status)
    return dict(found)


def describe(base: str, parts: int) -> str:
    """``in 3 parts (transactions_0of3 ... transactions_2of3)`` or ``unsplit (one stream, transactions)``."""
    if parts == 1:
        return f"unsplit (one stream, {base})"
    first, last = Partition(0, parts).stream_name(base), Partition(parts - 1, parts).stream_name(base)
    return f"in {parts} parts ({first}{', ' if parts == 2 else ' ... '}{last})"


def _setting(base: str, parts: int) -> str:
    return f"partitions = {{ {base} = {parts} }}" if parts > 1 else f"no {base} in partitions"


def check_splits(store: Store, adapter: Adapter, names: Sequence[str], config: str = "hub.toml") -> None:
    """Refuse (:class:`SplitChanged`) to pull ``names`` of ``adapter`` when one of them is of a partitionable stream
    whose configured split has no checkpoint yet while another split of it has one (see the module docstring)."""
    for base in split_bases(adapter, names):
        configured = adapter.partitions.get(base, 1)
        splits = _splits(store.split_checkpoints(adapter.name, base))
        if configured in splits or not splits:
            continue
        raise SplitChanged(_refusal(adapter.name, base, configured, splits, config))


def _refusal(adapter: str, base: str, configured: int, splits: dict[int, list[StreamStatus]], config: str) -> str:
    found = "; ".join(
        f"{describe(base, parts)}, last committed {_last(statuses)}" for parts, statuses in sorted(splits.items())
    )
    back = " or ".join(f"`{_setting(base, parts)}`" for parts in sorted(splits))
    return (
        f"{adapter}:{base} is configured {describe(base, configured)}, but the store holds the checkpoints of "
        f"another split: {found}; the configured split has none yet. Pulling it now would read the whole feed "
        "again from the partner's beginning (the records already credited are recognised by their ids: nothing "
        "is credited twice, but every page is fetched again). Nothing was pulled. Either set the partitions back "
        f"in [adapters.{adapter}] of {config} ({back}), or acknowledge the new split with "
        f"`tanpuhui repartition --config {config} {adapter}:{base}` (it removes the other split's checkpoints; "
        "the next pull starts the new split from the beginning)."
    )


def _last(statuses: Sequence[StreamStatus]) -> str:
    times = [s.last_success for s in statuses if s.last_success]
    return f"{max(times)[:19].replace('T', ' ')} UTC" if times else "at an unknown time"


def repartition(store: Store, adapter: Adapter, base: str, actor: str) -> Repartitioned:
    """Acknowledge ``base``'s configured split: remove the checkpoints of its other splits (and their lapsed
    leases, and an operator's pause on them) in one transaction with an audit entry by ``actor``; a
    :class:`~.store.leases.LeaseHeld` while a run holds one of them (nothing written)."""
    if base not in split_bases(adapter):
        names = ", ".join(split_bases(adapter)) or "none"
        raise ConfigError(f"{adapter.name} has no stream {base!r} that can be read in parts (those it has: {names})")
    parts = adapter.partitions.get(base, 1)
    old = [s for s in store.split_checkpoints(adapter.name, base) if parts_of(s.stream) != parts]
    if not old:
        return Repartitioned(adapter.name, base, parts, ())
    streams = [s.stream for s in old]
    paused = tuple(x.stream for x in store.leases() if x.owner == PAUSED and x.adapter == adapter.name)
    details = {
        "parts": parts,
        "removed": {s.stream: {"cursor": s.cursor, "last_success": s.last_success} for s in old},
        "splits": sorted({parts_of(s.stream) for s in old}),
    }
    event = AuditEvent("cli.stream.repartition", f"{adapter.name}:{base}", details, actor=actor)
    store.drop_checkpoints(adapter.name, streams, event, lifting=(PAUSED,))
    return Repartitioned(adapter.name, base, parts, tuple(old), tuple(s for s in paused if s in streams))
