"""A shared-bike operator as a test partner, independent of any real one: its ride schema, its methodology, rides,
the record a ride makes, and its adapter but for the ride stream. The hub's pipeline tests pull rides from it; the sidecar's tests receive them pushed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from tanpuhui.sdk import Adapter, Factor, Formula, Methodology, StreamContext

MOBILE = "13955123456"

RIDE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://tanpuhui.example/schemas/test/bike-ride.schema.json",
    "title": "Shared-bike ride (test partner)",
    "type": "object",
    "required": ["ride_id", "mobile", "start", "km"],
    "properties": {
        "ride_id": {"type": "string"},
        "mobile": {"type": "string", "x-personal-data": "mobile"},
        "start": {"type": "string", "format": "date-time"},
        "km": {"type": "number", "minimum": 0},
        "note": {"type": "string"},
    },
}

BIKE = Methodology(
    id="test.bike",
    version="1.0.0",
    scenario="shared_bike",
    title="Shared bike instead of car",
    formula=Formula("activity * ef_reduction"),
    factors=(Factor("ef_reduction", 0.0933, "kgCO2e/km", "Wuhan platform value (2025), test fixture"),),
    activity_unit="km",
)


def ride(n: int, *, km: float = 2.4, mobile: str = MOBILE, **extra: Any) -> dict[str, Any]:
    """Ride ``n`` (``R000001``, ...), started on 5 November 2024 in the morning."""
    return {
        "ride_id": f"R{n:06d}",
        "mobile": mobile,
        "start": f"2024-11-05T08:{n % 60:02d}:00+08:00",
        "km": km,
        **extra,
    }


def ride_record(item: dict[str, Any], ctx: StreamContext) -> dict[str, Any]:
    """The record a plausible ride makes: the rider pseudonymised by mobile, ``km`` the activity."""
    return ctx.record(
        raw=item,
        partner_record_id=item["ride_id"],
        subject=ctx.subject("mobile", item["mobile"]),
        scenario="shared_bike",
        start=datetime.fromisoformat(item["start"]),
        region="340100",
        activity=item["km"],
        methodology=BIKE.id,
    )


class BikeShareAdapter(Adapter):
    """The operator's adapter, ``bike_share``; a test's subclass gives it the ride stream (``stream_types``) and, if
    the stream needs them, its settings."""

    name = "bike_share"
    version = "0.3.0"
    schemas: ClassVar[dict[str, Any]] = {"bike-ride": RIDE_SCHEMA}
