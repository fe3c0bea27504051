"""Personal data: keyed pseudonyms, identifier validation and masking, redaction, sealing at rest.

Rules (PIPL; see docs/privacy.md): a plain hash of a phone number is reversible by enumeration, so people are
identified only by HMAC-SHA256 pseudonyms under a secret key kept outside the data, with the key's version carried
in each record for rotation. Identifiers are normalised before hashing, so ``+86 138-0013-8000`` and
``13800138000`` give the same pseudonym. Raw partner payloads the hub must keep (quarantine) are sealed with
AES-256-GCM under a key derived from the same secret; error messages and logs go through :func:`redact`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from functools import lru_cache
from operator import mul
from typing import ClassVar, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import PrivacyError
from .secrets import scrub_secrets

__all__ = [
    "KEY_ENV",
    "IdentifierKind",
    "Pseudonymiser",
    "is_valid_resident_id",
    "mask_identifiers",
    "mask_mobile",
    "mask_resident_id",
    "normalise_mobile",
    "normalise_resident_id",
    "redact",
]

KEY_ENV = "TANPUHUI_PSEUDONYM_KEYS"
"""Environment variable holding the keys: ``v2:<base64>,v1:<base64>`` — the first is current."""

IdentifierKind = Literal["resident_id", "mobile", "card", "account", "enterprise", "reference"]
"""``reference``: a partner's reference that can lead to a person (a consent id, an installation id)."""

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_ZERO = ord("0") * sum(_WEIGHTS)
_RID_SHAPE = re.compile(r"^[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dX]$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_MOBILE_STRIP = re.compile(r"[\s\-()]")
# Candidates inside free text (error messages, logs): digits not glued to other digits.
_RID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])")
_MOBILE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[\s-]?|0086[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![0-9A-Za-z])")


def is_valid_resident_id(value: str) -> bool:
    """GB 11643 resident identity number: 18 characters, valid date shape and ISO 7064 MOD 11-2 check char."""
    v = value.strip().upper()
    if not _RID_SHAPE.match(v):
        return False
    total = sum(map(mul, v[:17].encode(), _WEIGHTS)) - _ZERO  # the digits' values from their ASCII codes
    return _CHECK[total % 11] == v[17]


def normalise_resident_id(value: str) -> str:
    """Upper-case, stripped resident ID; :class:`PrivacyError` when the check character is wrong."""
    v = value.strip().upper()
    if not is_valid_resident_id(v):
        raise PrivacyError(f"resident ID {mask_resident_id(v)} is not a valid GB 11643 number")
    return v


def normalise_mobile(value: str) -> str:
    """11-digit mainland mobile number, after stripping +86/0086, spaces and hyphens."""
    v = _MOBILE_STRIP.sub("", value.strip())
    if v.startswith("+86"):
        v = v[3:]
    elif v.startswith("0086"):
        v = v[4:]
    elif v.startswith("86") and len(v) == 13:
        v = v[2:]
    if not _MOBILE.match(v):
        raise PrivacyError(f"mobile number {mask_mobile(v)} is not an 11-digit mainland number (^1[3-9]\\d{{9}}$)")
    return v


def mask_mobile(value: str) -> str:
    """``138****8000``: the first 3 and last 4 digits kept, as Chinese apps display them."""
    v = _MOBILE_STRIP.sub("", value)
    if len(v) < 7:
        return "*" * len(v)
    return f"{v[:3]}{'*' * (len(v) - 7)}{v[-4:]}"


def mask_resident_id(value: str) -> str:
    """``340524********001X``: region code and last 4 kept, birth date hidden."""
    v = value.strip()
    if len(v) < 10:
        return "*" * len(v)
    return f"{v[:6]}{'*' * (len(v) - 10)}{v[-4:]}"


_SHAPE = bytes(48 if 48 <= b <= 57 else 97 if 65 <= b <= 90 or 97 <= b <= 122 else 32 for b in range(256))
"""ASCII byte -> ``0`` (digit), ``a`` (letter) or a space (anything else), for the fast path of mask_identifiers."""


def mask_identifiers(text: str) -> str:
    """Mask anything in ``text`` shaped like a resident ID or a mobile number (:func:`redact` without the secrets):
    every partner string a record carries passes it (``StreamContext.record``).

    Both identifiers start with a digit (or ``+``) that no letter or digit precedes: ASCII text without such a
    digit (``HF20241105080312A1``, ``shanghai:SH2024110500000017``) is returned at once, without a regex scan.
    """
    if text.isascii():
        shape = text.encode().translate(_SHAPE)
        if shape[:1] != b"0" and b" 0" not in shape:
            return text
    masked = _masked(text)
    return text if masked == text else masked


@lru_cache(maxsize=8192)  # partner free text repeats (a baseline method, a line name): remembered, not re-scanned
def _masked(text: str) -> str:
    return _MOBILE_IN_TEXT.sub(lambda m: mask_mobile(m.group(0)), _RID_IN_TEXT.sub(_mask_rid_match, text))


def _mask_rid_match(m: re.Match[str]) -> str:
    return mask_resident_id(m.group(0))


def redact(text: str) -> str:
    """Mask anything in ``text`` shaped like a resident ID or a mobile number, and the secrets the process holds
    (:func:`~tanpuhui.sdk.register_secrets`), for messages, answers, logs and the store."""
    text = _RID_IN_TEXT.sub(lambda m: mask_resident_id(m.group(0)), text)
    return scrub_secrets(_MOBILE_IN_TEXT.sub(lambda m: mask_mobile(m.group(0)), text))


_MEMO_SIZE = 16_384
"""Identifiers whose pseudonym :class:`Pseudonymiser` remembers (~250 bytes each)."""


class _Key:
    """A key with its HMAC-SHA256 pads pre-hashed (RFC 2104): a pseudonym then costs two hash copies, not a new HMAC."""

    __slots__ = ("inner", "outer", "secret", "version")

    def __init__(self, version: str, secret: bytes) -> None:
        self.version = version
        self.secret = secret
        block = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))


class Pseudonymiser:
    """Keyed pseudonyms and sealing, under versioned secrets.

    ``keys`` maps version -> secret (at least 16 bytes); ``current`` is the version new pseudonyms use.
    Build it from the environment with :meth:`from_env`.
    """

    KEY_ENV: ClassVar[str] = KEY_ENV
    """The environment variable :meth:`from_env` reads the keys from."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise PrivacyError(f"current pseudonym key version {current!r} is not among {sorted(keys)}")
        for version, secret in keys.items():
            if len(secret) < 16:
                raise PrivacyError(f"pseudonym key {version!r} is {len(secret)} bytes; use at least 16 random bytes")
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", version):
                raise PrivacyError(f"pseudonym key version {version!r} must match [A-Za-z0-9._-]{{1,32}}")
        self._keys = {v: _Key(v, s) for v, s in keys.items()}
        self._current = self._keys[current]
        self._aead = {v: AESGCM(_derive(k.secret, b"tanpuhui seal v1")) for v, k in self._keys.items()}
        self._digest_keys = {v: _derive(k.secret, b"tanpuhui digest v1") for v, k in self._keys.items()}
        self._memo: dict[tuple[str, str], str] = {}
        """(kind, identifier as given) -> pseudonym under the current key: the same resident or card comes back
        many times in a run. In memory only, bounded (:data:`_MEMO_SIZE`), and gone with this object: a key
        rotation builds a new Pseudonymiser."""

    @classmethod
    def parse(cls, spec: str, source: str = KEY_ENV) -> Pseudonymiser:
        """Parse ``v2:<base64>,v1:<base64>`` (first = current)."""
        keys: dict[str, bytes] = {}
        current = ""
        for part in filter(None, (p.strip() for p in spec.split(","))):
            version, sep, encoded = part.partition(":")
            if not sep:
                raise PrivacyError(f"{source}: expected 'VERSION:BASE64' entries separated by commas")
            try:
                keys[version] = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise PrivacyError(f"{source}: key {version!r} is not valid base64") from None
            current = current or version
        if not keys:
            raise PrivacyError(f"{source} is empty: set it to 'v1:' + base64 of 32 random bytes")
        return cls(keys, current)

    @classmethod
    def from_env(cls, var: str = KEY_ENV) -> Pseudonymiser:
        """The keys from environment variable ``var`` (``TANPUHUI_PSEUDONYM_KEYS``); :class:`PrivacyError` saying
        how to make one when unset.
        """
        spec = os.environ.get(var)
        if not spec:
            raise PrivacyError(
                f"environment variable {var} is not set; generate a key with "
                f"`python -c \"import base64,os;print('v1:'+base64.b64encode(os.urandom(32)).decode())\"`"
            )
        return cls.parse(spec, var)

    @property
    def key_version(self) -> str:
        """The version of the current key (new pseudonyms use it)."""
        return self._current.version

    @property
    def earlier_versions(self) -> tuple[str, ...]:
        """The configured key versions other than the current one (kept after a rotation to read what they sealed
        and to match behaviours claimed under them: see docs/verification.md)."""
        return tuple(v for v in self._keys if v != self._current.version)

    def pseudonym(self, kind: IdentifierKind, value: str, key_version: str | None = None) -> str:
        """HMAC-SHA256 hex of ``kind:normalised value``; validates resident IDs and mobiles first."""
        if key_version is None or key_version == self._current.version:
            memo = self._memo
            found = memo.get((kind, value))
            if found is None:
                found = self._pseudonym(kind, value, self._current)
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[(kind, value)] = found
            return found
        key = self._keys.get(key_version)
        if key is None:
            raise PrivacyError(f"pseudonym key version {key_version!r} is not among {sorted(self._keys)}")
        return self._pseudonym(kind, value, key)

    @staticmethod
    def _pseudonym(kind: IdentifierKind, value: str, key: _Key) -> str:
        if kind == "resident_id":
            value = normalise_resident_id(value)
        elif kind == "mobile":
            value = normalise_mobile(value)
        else:
            value = value.strip()
            if not value:
                raise PrivacyError(f"empty {kind} identifier")
        inner = key.inner.copy()
        inner.update(f"{kind}:{value}".encode())
        outer = key.outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def digest(self, data: bytes) -> str:
        """A keyed digest of ``data`` under the current key (HMAC-SHA256 with a key derived for digests): equal
        data gives an equal digest, and without the key nothing can be learnt from it (an item holding a mobile
        number cannot be found by hashing candidates). A new current key gives new digests."""
        return hmac.new(self._digest_keys[self._current.version], data, hashlib.sha256).hexdigest()

    def seal(self, data: bytes) -> bytes:
        """Encrypt ``data`` for storage: ``version|nonce|ciphertext+tag``."""
        nonce = os.urandom(12)
        version = self._current.version.encode()
        ct = self._aead[self._current.version].encrypt(nonce, data, version)
        return bytes([len(version)]) + version + nonce + ct

    def unseal(self, blob: bytes) -> bytes:
        """Decrypt what :meth:`seal` produced; :class:`PrivacyError` when the key is missing or the data altered."""
        n = blob[0] if blob else 0
        try:
            version = blob[1 : 1 + n].decode()
        except UnicodeDecodeError:
            version = ""
        if not version or len(blob) < 1 + n + 12 + 16:
            raise PrivacyError("sealed data is truncated or not something seal() produced")
        aead = self._aead.get(version)
        if aead is None:
            raise PrivacyError(f"sealed with key version {version!r}, which is not configured in {KEY_ENV}")
        try:
            return aead.decrypt(blob[1 + n : 13 + n], blob[13 + n :], version.encode())
        except Exception:
            raise PrivacyError(f"sealed data does not authenticate under key {version!r}") from None


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(secret)
