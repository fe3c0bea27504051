"""A stand-in for ``asyncio.sleep`` that records the waits instead of waiting (retry and backoff tests)."""

from __future__ import annotations

__all__ = ["SleepRecorder"]


class SleepRecorder:
    """Pass as ``HttpOptions(sleep=...)`` (or any ``sleep`` hook): each wait asked for lands in :attr:`waits`."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        """The waits asked for, in seconds, in order."""

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
