"""The secrets this process holds, scrubbed from every message it makes.

A partner's token endpoint may echo the credentials it refused in its error text; an exception may carry a URL
with a token; a message may quote a header. The hub registers the secrets it resolved from its configuration
(:func:`register_secrets`: client secrets, webhook secrets, the admin token, pseudonym keys, ...) and every
:class:`~tanpuhui.sdk.TanpuhuiError` message, every :func:`~tanpuhui.sdk.redact`-ed text and every log line is
scrubbed of them where it is made, so a secret never reaches an answer, a log, the store or a terminal.
``whsec_...`` webhook secrets and ``Bearer ...`` credentials are masked even when unregistered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["register_secrets", "scrub_secrets"]

MIN_LENGTH = 6
"""Shorter values are not registered: replacing them would mangle ordinary words and numbers."""
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=]+")
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_secrets: tuple[str, ...] = ()


def register_secrets(values: Iterable[str]) -> None:
    """Add ``values`` (and their parts: a ``whsec_`` secret without its prefix, each ``version:key`` of a
    pseudonym key list and its key) to the secrets scrubbed from messages. Registration is for the life of the
    process: a secret once held is never echoed, even after a reload."""
    global _secrets
    found = set(_secrets)
    for value in values:
        for form in _forms(value):
            if len(form) >= MIN_LENGTH:
                found.add(form)
    _secrets = tuple(sorted(found, key=len, reverse=True))  # longest first: a secret containing another goes whole


def scrub_secrets(text: str) -> str:
    """``text`` with every registered secret, ``whsec_`` secret and bearer credential replaced by ``[secret]``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[secret]")
    if "whsec_" in text:
        text = _WHSEC.sub("whsec_[secret]", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub("Bearer [secret]", text)
    return text


def _forms(value: str) -> set[str]:
    value = value.strip()
    forms = {value}
    if value.startswith("whsec_"):
        forms.add(value[len("whsec_") :])
    for part in value.split(","):  # pseudonym keys: "v2:<base64>,v1:<base64>"
        part = part.strip()
        forms.add(part)
        forms.add(part.partition(":")[2])
    return forms
