"""Exceptions adapter authors raise and catch.

Every error the hub raises for a user's or partner's mistake derives from :class:`TanpuhuiError` and carries a
message that names the place (adapter, stream, record, JSON pointer) and what was expected.

    TanpuhuiError
    ├── ConfigError              a hub.toml / adapter setting is missing or wrong
    ├── PluginError              a plugin failed to load or registered something broken
    ├── SchemaError              an unknown schema name or an invalid schema document
    ├── MethodologyError         an unknown methodology or a factor missing for a formula
    ├── PrivacyError             an identifier that is not what it claims to be, or no pseudonym key
    ├── SignatureError           a webhook or gateway signature is missing, malformed or wrong
    ├── ItemRejected             one raw item cannot be normalized (quarantined, the page goes on)
    └── PartnerError             talking to a partner failed
        ├── PartnerAuthError         credentials refused (after one token re-fetch)
        ├── PartnerUnavailable       retries exhausted on 429/5xx/timeouts/connection errors
        └── PartnerResponseError     a response that is not what the interface promises (bad JSON, 4xx)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .secrets import scrub_secrets

__all__ = [
    "ConfigError",
    "ItemRejected",
    "MethodologyError",
    "PartnerAuthError",
    "PartnerError",
    "PartnerResponseError",
    "PartnerUnavailable",
    "PluginError",
    "PrivacyError",
    "Problem",
    "SchemaError",
    "SignatureError",
    "TanpuhuiError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an item: where (a JSON pointer into the item) and what."""

    pointer: str
    message: str
    keyword: str = ""

    def as_dict(self) -> dict[str, str]:
        """``{"pointer", "message"}`` and ``keyword`` when set: how quarantine entries and API errors carry a
        problem.
        """
        data = {"pointer": self.pointer, "message": self.message}
        if self.keyword:
            data["keyword"] = self.keyword
        return data


class TanpuhuiError(Exception):
    """Base of every error tanpuhui raises on purpose; its message is scrubbed of the secrets the process holds
    where it is made (:func:`~tanpuhui.sdk.register_secrets`): a partner echoing credentials cannot leak them."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (scrub_secrets(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(TanpuhuiError):
    """A configuration value is missing or wrong; the message names the file and key."""


class PluginError(TanpuhuiError):
    """A plugin could not be loaded or registered something unusable."""


class SchemaError(TanpuhuiError):
    """An unknown schema name or a schema document that is not valid 2020-12."""


class MethodologyError(TanpuhuiError):
    """An unknown methodology id/version, or a factor a formula needs is missing."""


class PrivacyError(TanpuhuiError):
    """A personal identifier failed validation, or no pseudonymisation key is configured."""


class SignatureError(TanpuhuiError):
    """A signature header is missing, malformed, outside the tolerance window, or does not verify."""


class ItemRejected(TanpuhuiError):
    """Raised by ``normalize`` when one raw item cannot become a record.

    The hub quarantines the item with these problems and carries on with the rest of the page.
    """

    def __init__(self, problems: Sequence[Problem] | str, pointer: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(pointer, problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(f"{p.pointer or '/'}: {p.message}" for p in self.problems))


class PartnerError(TanpuhuiError):
    """Talking to a partner API failed."""


class PartnerAuthError(PartnerError):
    """The partner refused our credentials, also after re-fetching the token once."""


class PartnerUnavailable(PartnerError):
    """The partner kept answering 429/5xx, timing out or refusing connections until retries ran out."""


class PartnerResponseError(PartnerError):
    """The partner answered something its interface does not allow (a 4xx, a body that is not JSON, ...)."""
