"""What the bundled adapters' conformance classes share: their sandbox as the live partner, stand-in credentials
when replaying, short retry settings and the folder of their cassettes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

from tanpuhui.testing.conformance import AdapterConformance, LivePartner

CASSETTES = Path(__file__).parent / "cassettes"
"""The conformance cassettes, a folder per adapter."""
FAST_RETRIES: dict[str, Any] = {"retry_attempts": 3, "retry_initial_backoff": 0.5, "retry_max_backoff": 4.0}
"""Retry settings that keep the suite's fault scenarios short."""


class SandboxConformance(AdapterConformance):
    """Records from (and runs live against) the sandbox :meth:`open_sandbox` starts."""

    replay_client_id: ClassVar[str] = "tanpuhui-sandbox"
    """The OAuth client id when replaying cassettes (no sandbox to ask)."""
    page_size: ClassVar[int]
    """The ``page_size`` setting of the default :meth:`settings`."""

    def open_sandbox(self) -> AbstractContextManager[Any]:
        """The partner's sandbox, not started yet (entering it starts it and gives it back)."""
        raise NotImplementedError(f"{type(self).__name__} must define open_sandbox()")

    def oauth(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        """``base_url`` and the OAuth client credentials: the sandbox's live, stand-ins when replaying."""
        sandbox = partner.handle if partner is not None else None
        return {
            "base_url": base_url,
            "client_id": sandbox.client_id if sandbox else self.replay_client_id,
            "client_secret": sandbox.client_secret if sandbox else "replayed-secret",
        }

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        """The OAuth settings of :meth:`oauth` with :attr:`page_size` and :data:`FAST_RETRIES`."""
        return {**self.oauth(base_url, partner), "page_size": self.page_size, **FAST_RETRIES}

    @contextmanager
    def sandbox(self) -> Iterator[LivePartner]:
        with self.open_sandbox() as sandbox:
            yield LivePartner(sandbox.url, handle=sandbox)
