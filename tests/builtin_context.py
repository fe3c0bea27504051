"""The context a stream builds records in, over the hub's built-in methodologies: for tests that make records
without a hub."""

from __future__ import annotations

from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.sdk import Pseudonymiser, StreamContext

BY_ID = {m.id: m for m in BUILTIN_METHODOLOGIES}
"""The built-in methodologies by id."""
KEY = bytes(range(32))


def builtin_context(adapter: str, adapter_version: str, stream: str, key: bytes = KEY) -> StreamContext:
    """The context of ``stream`` of ``adapter`` (version ``adapter_version``): pseudonyms under ``key`` (key id
    ``v1``), methodologies looked up in :data:`BY_ID`."""
    return StreamContext(
        adapter=adapter,
        adapter_version=adapter_version,
        stream=stream,
        pseudonymiser=Pseudonymiser({"v1": key}, "v1"),
        methodologies=BY_ID.__getitem__,
    )
