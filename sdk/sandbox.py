"""What a partner sandbox offers the hub and its tools: the :class:`Sandbox` protocol.

A sandbox stands in for an adapter's partner on loopback, with synthetic data: ``tanpuhui demo`` starts the
sandbox of every installed adapter that offers one, configures the hub for it, pulls its pull streams and delivers
its signed pushes. A plugin offers a sandbox through the ``register_sandboxes`` hook with a
:data:`SandboxFactory`::

    @hookimpl
    def register_sandboxes(register):
        register("hefei_water", water_sandbox)

    def water_sandbox(**options):
        from .sandbox import WaterSandbox    # the web server loads only when a sandbox is wanted
        return WaterSandbox(**options)

Only typing here; :class:`tanpuhui.testing.sandbox.PartnerSandbox` is a kit that implements the protocol, and any
object with these members will do.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

__all__ = ["Sandbox", "SandboxFactory", "WebhookRequest"]

WebhookRequest = tuple[dict[str, str], bytes]
"""A signed webhook request a partner pushes: its headers and its body."""


@runtime_checkable
class Sandbox(Protocol):
    """A partner sandbox: an adapter's partner on loopback with synthetic data, started and stopped by its user."""

    @property
    def adapter(self) -> str:
        """The name of the adapter whose partner this sandbox plays."""
        ...

    @property
    def url(self) -> str:
        """Its base URL (``http://127.0.0.1:<port>``) once started."""
        ...

    def start(self) -> Self:
        """Serve (idempotent); returns the sandbox."""
        ...

    def stop(self) -> None:
        """Stop serving."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def hub_settings(self, env_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The ``[adapters.NAME]`` table that reaches this sandbox, and the environment it needs.

        Secrets appear in the table only as ``{"env": VAR}`` references, each ``VAR`` starting with
        ``env_prefix``; the second value maps each such variable to the secret. Call it once started (the table
        holds :attr:`url`).
        """
        ...

    def webhook_requests(self) -> dict[str, list[WebhookRequest]]:
        """Push stream name -> the signed webhook requests the partner would push to it (empty: no pushes)."""
        ...


SandboxFactory = Callable[..., Sandbox]
"""Makes a sandbox, not yet started: ``factory(**options)``; with no options, the sizes ``tanpuhui demo`` uses."""
