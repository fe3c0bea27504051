"""Records and quarantine entries as the pipeline hands them to a store (shared by the store tests)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import orjson

from tanpuhui.hub.store.base import NewQuarantine, NewRecord
from tanpuhui.sdk import Problem, behaviour_fingerprint, make_record_id
from tanpuhui.sdk.records import fingerprint_claim_keys

CST = timezone(timedelta(hours=8))
MORNING = datetime(2024, 5, 1, 8, 12, tzinfo=CST)


def pseudonym(person: str) -> str:
    return hashlib.sha256(f"test-subject:{person}".encode()).hexdigest()


def trip(
    partner_id: str,
    *,
    adapter: str = "transit_card",
    stream: str = "trips",
    person: str = "resident-0001",
    start: datetime = MORNING,
    km: float = 8.4,
    neighbour: bool = False,
) -> NewRecord:
    """A Hefei metro trip (``neighbour``: with the claim key of the nearest neighbouring window, as the hub sets)."""
    record_id = make_record_id(start, adapter, stream, partner_id)
    fingerprint = behaviour_fingerprint(pseudonym(person), "metro", start)
    reduction = round(km * 0.0467, 6)
    body = orjson.dumps(
        {
            "record_id": record_id,
            "source": {"adapter": adapter, "stream": stream, "partner_record_id": partner_id},
            "scenario": "metro",
            "region": "340100",
            "activity": {"quantity": km, "unit": "pkm"},
            "quantification": {"reduction_kgco2e": reduction},
            "fingerprint": fingerprint,
        }
    )
    near = fingerprint_claim_keys(fingerprint, start)[1] if neighbour else ""
    return NewRecord(record_id, fingerprint, "metro", reduction, body, near)


def trips(n: int, *, prefix: str = "HF-M1", start: datetime = MORNING) -> list[NewRecord]:
    """``n`` trips by ``n`` different people (no two share a fingerprint)."""
    return [trip(f"{prefix}-{i:06d}", person=f"{prefix}-resident-{i:05d}", start=start) for i in range(n)]


def bad_item(partner_id: str, *, digest: str = "", problem: str = "/tap_out") -> NewQuarantine:
    """A transit item missing a field (``problem``: its pointer); ``digest`` as the pipeline keys the raw item."""
    return NewQuarantine(
        stage="raw",
        partner_record_id=partner_id,
        sealed_raw=b"\x02v1" + bytes(40),
        problems=[Problem(problem, f"'{problem[1:]}' is a required property", "required")],
        digest=digest,
    )
