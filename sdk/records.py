"""The normalized record: :class:`ReductionRecord`, and its deterministic ids.

The model mirrors ``schemas/reduction-record.schema.json``; a test proves both accept and reject the same
documents. Adapters usually do not build records by hand: :meth:`tanpuhui.sdk.StreamContext.record` fills in the
source reference, pseudonymous subject, quantification, record id and fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    field_validator,
)

__all__ = [
    "Activity",
    "Baseline",
    "Deduction",
    "FactorUsed",
    "Origin",
    "Period",
    "PlausibilityFinding",
    "Quantification",
    "RecordDoc",
    "ReductionRecord",
    "SourceRef",
    "Subject",
    "behaviour_fingerprint",
    "fingerprint_at",
    "fingerprint_claim_keys",
    "make_record_id",
    "neighbour_fingerprint_at",
    "period_start_seconds",
    "record_id_at",
    "record_id_at_revision",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NAME = r"^[a-z][a-z0-9_]{1,63}$"
_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


# The same pattern as the schema's ``$defs/timestamp``. pydantic alone also takes a space for ``T``, an offset
# without a colon, minutes without seconds and (from JSON) "1714557600"; the schema rejects all of them.
_RFC3339 = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: datetime) -> str:
    return value.isoformat()


def _only_rfc3339(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2024-05-01T10:00:00+08:00")


# Lax inside (a checked string is parsed in Python mode too), strict outside: only datetimes and RFC 3339 strings.
Timestamp = Annotated[
    AwareDatetime, Strict(False), BeforeValidator(_only_rfc3339), PlainSerializer(_rfc3339, return_type=str)
]


_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters


def make_record_id(occurred_at: datetime, *source_key: str) -> str:
    """A deterministic, time-ordered id: 48-bit ms timestamp + 80-bit BLAKE2b of the source key, base32.

    The same source item always gets the same id (so re-pulls deduplicate), and ids of one period sort together,
    which keeps the dedup index append-mostly: a random id costs 4-10x more per insert at millions of rows.
    """
    return record_id_at(int(occurred_at.timestamp() * 1000), *source_key)


def record_id_at(ms: int, *source_key: str) -> str:
    """:func:`make_record_id` from a unix time in milliseconds (saves a datetime conversion on the hot path)."""
    if ms < 0 or ms >= 1 << 48:
        raise ValueError(f"timestamp {ms} ms is outside the record id's time range")
    hasher = _BLAKE2B_10.copy()  # a copy of an empty hasher: cheaper than blake2b(..., digest_size=10)
    hasher.update("\x1f".join(source_key).encode())
    # 2 zero bits + 48-bit ms + 80-bit hash = 130 bits = 26 base32 characters, taken 10 bits (2 characters) at a
    # time: the first 10 characters are the time alone (cached), the hash is read as one 80-bit integer (one
    # conversion from bytes, not two of its halves).
    h = _from_bytes(hasher.digest(), "big")
    p = _PAIRS
    return (
        f"{_time_prefix(ms)}{p[h >> 70]}{p[(h >> 60) & 1023]}{p[(h >> 50) & 1023]}{p[(h >> 40) & 1023]}"
        f"{p[(h >> 30) & 1023]}{p[(h >> 20) & 1023]}{p[(h >> 10) & 1023]}{p[h & 1023]}"
    )


def record_id_at_revision(record_id: str, salt: str) -> str:
    """The id of a revision of a record (a correction, a void): the same time prefix as ``record_id``, the hash
    part derived from it and ``salt`` (e.g. the corrected item's raw hash), so the same revision gets the same id."""
    ms = 0
    for ch in record_id[:10]:
        ms = ms * 32 + _CROCKFORD.index(ch)
    return record_id_at(ms, "revision", record_id, salt)


_BLAKE2B_10 = hashlib.blake2b(digest_size=10)
"""Never updated: :func:`record_id_at` hashes into copies of it."""
_from_bytes = int.from_bytes


@lru_cache(maxsize=8192)
def _time_prefix(ms: int) -> str:
    p = _PAIRS
    return f"{p[ms >> 40]}{p[(ms >> 30) & 1023]}{p[(ms >> 20) & 1023]}{p[(ms >> 10) & 1023]}{p[ms & 1023]}"


class RecordDoc(dict[str, Any]):
    """A record document as :meth:`~tanpuhui.sdk.StreamContext.record` builds it: a plain ``dict`` to the schema,
    JSON and everything else, which also remembers when its period starts in unix seconds (``start_seconds``,
    for the period start text ``start_text``), so the hub does not parse the date-time back for the dedup keys.
    A consumer must check ``doc["period"]["start"] is doc.start_text`` (the document may have been changed since).
    """

    __slots__ = ("aliases", "id_stream", "start_seconds", "start_text", "subject_aliases")

    start_seconds: int
    start_text: str
    id_stream: str
    """The stream the record id derives from (``ctx.record(id_stream=...)``): the partner item is tracked for
    corrections and withdrawals under it."""
    aliases: tuple[str, ...]
    """The behaviour fingerprints under the earlier pseudonym keys still configured (set when there are any)."""
    subject_aliases: tuple[str, ...]
    """The subject's pseudonyms under those earlier keys (the overlap rules pair records on them too)."""


@lru_cache(maxsize=4096)
def _window_label(window_epoch: int) -> str:
    return datetime.fromtimestamp(window_epoch, UTC).strftime("%Y%m%d%H%M")


@lru_cache(maxsize=8192)  # a subject's trips of the last hour or so; ~250 bytes an entry, so kept small
def _subject_digest(subject_pseudonym: str, scenario: str) -> str:
    return hashlib.sha256(f"{subject_pseudonym}|{scenario}".encode()).hexdigest()[:32]


def behaviour_fingerprint(subject_pseudonym: str, scenario: str, start: datetime, window_minutes: int = 10) -> str:
    """Identify a behaviour independently of the source that reports it.

    ``<window start, UTC, YYYYMMDDHHMM>:<scenario>:<32 hex of SHA-256(subject, scenario)>``. The time prefix keeps
    the index ordered; the subject is already a keyed pseudonym, so this holds nothing personal.
    """
    return fingerprint_at(subject_pseudonym, scenario, int(start.timestamp()), window_minutes)


def fingerprint_at(subject_pseudonym: str, scenario: str, seconds: int, window_minutes: int = 10) -> str:
    """:func:`behaviour_fingerprint` from a unix time in seconds."""
    window = _window_label(seconds - seconds % (window_minutes * 60))
    return f"{window}:{scenario}:{_subject_digest(subject_pseudonym, scenario)}"


def fingerprint_claim_keys(fingerprint: str, start: datetime, window_minutes: int = 10) -> tuple[str, str]:
    """The fingerprint and the one of the nearest neighbouring window.

    Two sources rarely agree to the second on when a trip began; checking the closer neighbouring window too catches
    the same behaviour reported a few minutes apart across a window boundary.
    """
    return fingerprint, neighbour_fingerprint_at(fingerprint, int(start.timestamp()), window_minutes)


def period_start_seconds(doc: Mapping[str, Any]) -> int:
    """Unix seconds of a record document's ``period.start``: remembered by a document ``ctx.record`` built (unless
    its period was changed since), parsed otherwise."""
    start = doc["period"]["start"]
    if type(doc) is RecordDoc and doc.start_text is start:
        return doc.start_seconds
    return int(datetime.fromisoformat(start).timestamp())


def neighbour_fingerprint_at(fingerprint: str, seconds: int, window_minutes: int = 10) -> str:
    """The second key of :func:`fingerprint_claim_keys`, from the behaviour's start in unix seconds."""
    step = window_minutes * 60
    floored = seconds - seconds % step
    neighbour = floored - step if seconds - floored < step / 2 else floored + step
    return _window_label(neighbour) + fingerprint[12:]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_explicit_null(cls, value: Any) -> Any:
        # Optional parts may be left out, but the schema has no null for them: ``"origin": null`` is an error.
        if value is None:
            raise ValueError("null is not allowed here; leave the field out instead")
        return value


class SourceRef(_Model):
    """Where a record came from: adapter, stream, the partner's own id for the item, and a hash of the raw item."""

    adapter: str = Field(pattern=_NAME)
    adapter_version: str = Field(min_length=1, max_length=64)
    stream: str = Field(pattern=_NAME)
    partner_record_id: str = Field(min_length=1, max_length=256)
    raw_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Origin(_Model):
    """The platform that quantified the reduction, when it was not us (e.g. a YRD scenario platform)."""

    platform: str = Field(min_length=1, max_length=128)
    methodology_code: str | None = Field(default=None, min_length=1, max_length=128)
    record_id: str | None = Field(default=None, min_length=1, max_length=256)


class Subject(_Model):
    """The pseudonymous person or enterprise credited; never a clear-text identifier."""

    kind: Literal["person", "enterprise"]
    pseudonym: str = Field(pattern=r"^[0-9a-f]{64}$")
    key_version: str = Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")


class Period(_Model):
    """When the behaviour happened (an instant has start == end)."""

    start: Timestamp
    end: Timestamp


class Activity(_Model):
    """The measured activity: e.g. 8.4 pkm, 1.2 kWh of peak consumption, 3 m3."""

    quantity: float = Field(ge=0)
    unit: str = Field(min_length=1, max_length=32)
    details: dict[str, str | int | float | bool | None] | None = None


class FactorUsed(_Model):
    """A factor as it was applied: value, unit, citation, and whether it is a labelled default."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    value: float
    unit: str = Field(min_length=1)
    source: str = Field(min_length=1)
    default: bool
    valid_from: str | None = Field(default=None, pattern=_DAY)
    valid_to: str | None = Field(default=None, pattern=_DAY)
    data_year: int | None = Field(default=None, ge=1990, le=2100)
    single_source: bool | None = None
    derived: bool | None = None


class Baseline(_Model):
    """The baseline the activity was compared with (peak-hour saving and similar)."""

    quantity: float = Field(ge=0)
    unit: str = Field(min_length=1)
    method: str = Field(min_length=1)


class Deduction(_Model):
    """A saving another record credits already, taken off this one by a no-double-credit overlap rule."""

    record_id: str = Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")
    quantity: float = Field(ge=0)
    unit: str = Field(min_length=1)
    rule: str = Field(min_length=1, max_length=64)


class Quantification(_Model):
    """Everything needed to recompute the reduction from the record alone."""

    methodology_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,127}$")
    methodology_version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    formula: str = Field(min_length=1, max_length=512)
    factors: list[FactorUsed]
    baseline: Baseline | None = None
    deductions: list[Deduction] | None = Field(default=None, min_length=1)
    reduction_kgco2e: float = Field(ge=0)
    factors_as_of: str | None = Field(default=None, pattern=_DAY)


class PlausibilityFinding(_Model):
    """A plausibility rule that fired on the record: flagged, or held and released by an operator."""

    rule: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    action: Literal["flag", "released"]
    message: str = Field(min_length=1, max_length=500)


class ReductionRecord(_Model):
    """A normalized reduction record (``schemas/reduction-record.schema.json``)."""

    record_id: str = Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")
    schema_version: Literal["1.0"]
    source: SourceRef
    origin: Origin | None = None
    subject: Subject
    scenario: str = Field(pattern=_NAME)
    period: Period
    region: str = Field(pattern=r"^[1-8][0-9]{5}$")
    activity: Activity
    quantification: Quantification
    supersedes: str | None = Field(default=None, pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")
    fingerprint: str = Field(pattern=r"^[0-9]{12}:[a-z][a-z0-9_]{1,63}:[0-9a-f]{32}$")
    plausibility: list[PlausibilityFinding] | None = Field(default=None, min_length=1)

    def to_json_dict(self) -> dict[str, Any]:
        """The record as the schema's JSON document (unset optional parts left out)."""
        return self.model_dump(mode="json", exclude_none=True)
