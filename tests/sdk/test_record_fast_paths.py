"""The shortcuts of ``StreamContext.record`` and ``record_id_at`` (issue 19) give what the plain code gave, byte for
byte: details copied at once when every string is remembered as having nothing to mask, the period start's cache
read inline, the record id's hash read as one 80-bit integer from a copied hasher."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import orjson
from builtin_context import builtin_context

from tanpuhui.sdk import StreamContext, mask_identifiers
from tanpuhui.sdk.records import record_id_at

CST = timezone(timedelta(hours=8))
MOBILE = "13800138000"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ctx() -> StreamContext:
    return builtin_context("transit_card", "0.3.0", "transactions")


def _bus(ctx: StreamContext, txn: str, details: Any, start: datetime | None = None) -> dict[str, Any]:
    return ctx.record(
        raw={"txn_id": txn},
        partner_record_id=txn,
        subject=ctx.subject("card", "9900355694391974"),
        scenario="bus",
        start=start or datetime(2024, 11, 5, 8, 1, tzinfo=CST),
        region="340100",
        activity=7.5,
        unit="pkm",
        methodology="tph.transit.bus",
        details=details,
    )


def _plainly_masked(details: Any) -> dict[str, Any]:
    """What the details were before any shortcut: each string value (exactly ``str``) through the masker."""
    return {k: mask_identifiers(v) if type(v) is str else v for k, v in details.items()}


class _Text(str):
    """A string subclass: passed on as it is, like any value that is not exactly ``str``."""


def test_details_are_copied_at_once_only_when_every_value_is_a_remembered_clean_string() -> None:
    ctx = _ctx()
    clean = {"line": "B18", "stop": "B18-04", "distance_basis": "line average trip length", "network_version": "n1"}
    variants: list[Any] = [
        clean,  # every string new
        dict(clean),  # every string remembered clean: the copy at once
        {**clean, "stop": f"call {MOBILE}"},  # one to mask among remembered ones
        {**clean, "stop": f"call {MOBILE}"},  # that one remembered too: masked from the cache, not copied
        {**clean, "transfers": 1, "accessible": True, "note": None, "km": 7.5},  # not only strings
        {**clean, "stops": ["B18-04", MOBILE]},  # an unhashable value: passed on as it is
        {"stops": ["B18-04"], **clean},  # ... also when it comes first
        MappingProxyType(dict(clean)),  # not a dict: copied value by value
        {**clean, "line": _Text("B18")},  # equal to a remembered clean string, but a subclass
        {**clean, "line": _Text(MOBILE)},  # a subclass is not masked (as before the shortcut)
        {"line": MOBILE},  # a string seen masked is never taken for a clean one
    ]
    for i, details in enumerate(variants):
        record = _bus(ctx, f"HF{i:04d}", details)
        got = record["activity"]["details"]
        assert got == _plainly_masked(details)
        assert list(got) == list(details)  # the partner's order, as JSON writes it
        assert type(got) is dict and got is not details
        assert orjson.dumps(got) == orjson.dumps(_plainly_masked(details))
    assert _bus(ctx, "HF9999", {"line": MOBILE})["activity"]["details"] == {"line": "138****8000"}


def test_remembered_strings_are_forgotten_together_when_the_memo_is_full() -> None:
    ctx = _ctx()
    for i in range(5000):  # past the memo's bound: it is cleared at least once on the way
        text = f"stop {i}" if i % 7 else f"stop {i} {MOBILE}"
        details = {"stop": text, "line": "B1"}
        assert _bus(ctx, f"HF{i}", details)["activity"]["details"] == _plainly_masked(details)
    assert ctx._clean <= set(ctx._masks)  # never a clean string the memo does not hold


def test_equal_starts_in_other_offsets_keep_their_own_text_with_the_inline_cache() -> None:
    ctx = _ctx()
    local = datetime(2024, 11, 5, 8, 1, tzinfo=CST)
    utc = local.astimezone(UTC)
    first, again, other = _bus(ctx, "A1", None, local), _bus(ctx, "A1", None, local), _bus(ctx, "A1", None, utc)
    assert first["period"]["start"] == again["period"]["start"] == "2024-11-05T08:01:00+08:00"
    assert other["period"]["start"] == "2024-11-05T00:01:00+00:00"
    assert first["record_id"] == other["record_id"]  # the same instant: the same id


def _reference_id(ms: int, *source_key: str) -> str:
    """The id spelled out: 26 Crockford base32 characters of ms (48 bits) followed by BLAKE2b-80 of the key."""
    digest = hashlib.blake2b("\x1f".join(source_key).encode(), digest_size=10).digest()
    n = (ms << 80) | int.from_bytes(digest, "big")
    return "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def test_record_ids_match_their_plain_definition() -> None:
    rnd = random.Random(19)
    cases = [(0, ("a",)), ((1 << 48) - 1, ("transit_card", "transactions", "HF1")), (1730768460000, ("", ""))]
    for _ in range(3000):
        key = tuple(
            "".join(rnd.choice("aZ9\x1f+é") for _ in range(rnd.randrange(12))) for _ in range(rnd.randrange(1, 4))
        )
        cases.append((rnd.randrange(1 << 48), key))
    for ms, key in cases:
        assert record_id_at(ms, *key) == _reference_id(ms, *key)
