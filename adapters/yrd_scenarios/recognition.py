"""Mutual recognition: turning a YRD platform's record into ours, keeping or redoing its quantification.

One :class:`RecordNormalizer` serves both the pulled and the pushed records, so the two paths cannot drift apart.
For each ``active`` record:

- its origin methodology (``methodology_code``, optionally ``@methodology_version``) is in the recognition table:
  the origin's figure is kept. The record's quantification names *our* methodology it was recognised as, and
  describes the origin's figure so :func:`tanpuhui.sdk.recompute` gives it back: ``activity * origin_factor``
  (``origin_factor`` = reduction / activity) when the origin reported an activity in our methodology's unit (after
  ``unit_aliases``: ``km`` is ``pkm``), else ``origin_kgco2e`` over one ``record`` (the origin's activity kept in
  ``activity.details.origin_activity``). Both are labelled ``derived``: computed from the item, not cited factors;
- it is not, but the record reports an activity and its scenario maps to one of our methodologies: it is
  re-quantified with ours (the origin's figure kept in ``activity.details`` for audit);
- otherwise it is quarantined with the code and the fix (add it to the recognition table), replayable after.

Records reported ``credited`` (already credited on the origin platform) or ``cancelled`` are never offered for
crediting: they produce no record and are counted in the stream state (see :meth:`RecordNormalizer.withdrawn`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tanpuhui.sdk import (
    ItemRejected,
    Methodology,
    MethodologyError,
    PrivacyError,
    Problem,
    StreamContext,
    is_valid_resident_id,
    make_record_id,
    mask_mobile,
    mask_resident_id,
    normalise_mobile,
)

__all__ = [
    "NO_ACTIVITY_UNIT",
    "RECORD_KEY_STREAM",
    "Platform",
    "RecordNormalizer",
    "lookup_recognition",
    "recognised_quantification",
]

RECORD_KEY_STREAM = "records"
"""The stream name record ids are derived from, for pulled *and* pushed records: one origin record has one record
id whichever way it arrives, so a record both pushed and pulled is a duplicate, not a second claim."""

NO_ACTIVITY_UNIT = "record"
"""The activity unit of a recognised record whose origin reported no activity: quantity 1, one origin record."""


@dataclass(frozen=True, slots=True)
class Platform:
    """A YRD platform the hub knows: its id (as the exchange names it), display name and default region."""

    id: str
    name: str
    region: str


def lookup_recognition(table: Mapping[str, str], code: str, version: str) -> str | None:
    """Our methodology id for an origin methodology: ``"CODE@VERSION"`` first, then ``"CODE"`` (any version)."""
    return table.get(f"{code}@{version}") or table.get(code)


def recognised_quantification(
    method: Methodology,
    *,
    platform: str,
    code: str,
    version: str,
    reduction_kgco2e: float,
    activity: float | None,
    unit: str | None,
) -> dict[str, Any]:
    """The quantification of a recognised record: our methodology's id and version, the origin's figure.

    The formula and factor describe the origin's figure, so ``recompute(record)`` equals ``reduction_kgco2e``
    (rounded to 6 decimals like every quantification).
    """
    reduction = round(float(reduction_kgco2e), 6)
    origin = f"origin platform {platform} (methodology {code} v{version}), recognised as {method.key}"
    if activity and unit:
        factor = reduction / activity
        # recompute() rounds activity * factor to 6 decimals; fall back when floating point would not give it back
        if round(activity * factor, 6) == reduction:
            return {
                "methodology_id": method.id,
                "methodology_version": method.version,
                "formula": "activity * origin_factor",
                "factors": [
                    {
                        "name": "origin_factor",
                        "value": factor,
                        "unit": f"kgCO2e/{unit}",
                        "source": f"derived, not a cited factor: the reduction / the activity reported by {origin}",
                        "default": False,
                        "derived": True,
                    }
                ],
                "reduction_kgco2e": reduction,
            }
    return {
        "methodology_id": method.id,
        "methodology_version": method.version,
        "formula": "origin_kgco2e",
        "factors": [
            {
                "name": "origin_kgco2e",
                "value": reduction,
                "unit": "kgCO2e",
                "source": f"derived, not a cited factor: the reduction reported by {origin}",
                "default": False,
                "derived": True,
            }
        ],
        "reduction_kgco2e": reduction,
    }


_KINDS = ("mobile", "resident_id")


def _valid(kind: str, value: str) -> bool:
    if kind == "resident_id":
        return is_valid_resident_id(value)
    try:
        normalise_mobile(value)
    except PrivacyError:
        return False
    return True


def _invalid(kind: str, value: str) -> str:
    if kind == "resident_id":
        return (
            f"resident ID {mask_resident_id(value)} fails the GB 11643 check (date or check character); "
            "the origin platform must send the ID as the resident registered it"
        )
    return f"mobile number {mask_mobile(value)} is not an 11-digit mainland number (^1[3-9]\\d{{9}}$ once +86, spaces and hyphens are removed)"


def _time(value: str, pointer: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ItemRejected(f"not an RFC 3339 date-time: {value!r}", pointer) from None
    if when.tzinfo is None:
        raise ItemRejected(f"date-time {value!r} has no UTC offset (expected e.g. +08:00)", pointer)
    return when


class RecordNormalizer:
    """Normalizes ``yrd-record`` items under one adapter configuration (see the module docstring)."""

    def __init__(
        self,
        *,
        adapter: str,
        platforms: Mapping[str, Platform],
        recognition: Mapping[str, str],
        scenario_methodologies: Mapping[str, str],
        unit_aliases: Mapping[str, str],
        subject_order: Sequence[str],
        withdrawn_log_size: int,
    ) -> None:
        self.adapter = adapter
        self.platforms = dict(platforms)
        self.recognition = dict(recognition)
        self.scenario_methodologies = dict(scenario_methodologies)
        self.unit_aliases = dict(unit_aliases)
        self.subject_order = tuple(subject_order)
        self.withdrawn_log_size = withdrawn_log_size

    # -- the hot path ----------------------------------------------------------------------------------------

    def normalize(
        self, item: dict[str, Any], ctx: StreamContext, serving: frozenset[str] | None = None
    ) -> tuple[dict[str, Any], ...]:
        """Zero records (withdrawn) or one; raises :class:`ItemRejected` with a JSON pointer and the fix.

        ``serving``: the platforms the endpoint being pulled serves (None: any known platform, e.g. a replay).
        """
        platform_id = item["platform"]
        platform = self.platforms.get(platform_id)
        if platform is None:
            raise ItemRejected(
                f"unknown platform {platform_id!r}; known: {', '.join(sorted(self.platforms))} "
                f"(add it under [adapters.{self.adapter}.platforms])",
                "/platform",
            )
        if serving is not None and platform_id not in serving:
            raise ItemRejected(
                f"platform {platform_id!r} is not one this endpoint serves ({', '.join(sorted(serving))}); "
                "a record attributed to another platform is not credited",
                "/platform",
            )
        origin_id: str = item["record_id"]
        partner_record_id = f"{platform_id}:{origin_id}"
        start = _time(item["start_time"], "/start_time")
        end_text = item.get("end_time")
        end = _time(end_text, "/end_time") if end_text else None
        if end is not None and end < start:
            raise ItemRejected(f"end_time {end_text} is before start_time {item['start_time']}", "/end_time")
        status = item["status"]
        if status != "active":
            record_id = make_record_id(start, self.adapter, RECORD_KEY_STREAM, partner_record_id)
            self.withdrawn(ctx, status, platform_id, record_id, origin_id)
            return ()

        subject = self._subject(item, ctx)
        code: str = item["methodology_code"]
        version: str = item["methodology_version"]
        kg = float(item["reduction_kgco2e"])
        unit: str | None = item.get("activity_unit")
        quantity: float | None = float(item["activity_quantity"]) if unit is not None else None
        scenario_id: str = item["scenario_id"]
        origin = {"platform": platform_id, "methodology_code": code, "record_id": origin_id}
        details: dict[str, str | int | float | bool | None] = {
            "origin_scenario": scenario_id,
            "origin_methodology_version": version,
            # the resident's authorisation, as a keyed pseudonym: the origin's reference could lead to the person
            "consent_ref": ctx.pseudonym("reference", item["consent_id"]),
        }
        region = item.get("region") or platform.region

        mapped = lookup_recognition(self.recognition, code, version)
        if mapped is not None:
            method = self._methodology(ctx, mapped, f"recognition table maps {code!r} to", "/methodology_code")
            details["treatment"] = "recognised"
            canonical = self.unit_aliases.get(unit, unit) if unit is not None else None
            if quantity is not None and canonical == method.activity_unit:  # one unit per scenario: km is pkm
                activity, activity_unit = quantity, method.activity_unit
            else:
                if quantity is not None:
                    details["origin_activity"] = f"{quantity:g} {unit}"
                activity, activity_unit, quantity = 1.0, NO_ACTIVITY_UNIT, None
            quantification: dict[str, Any] | None = recognised_quantification(
                method,
                platform=platform_id,
                code=code,
                version=version,
                reduction_kgco2e=kg,
                activity=quantity,
                unit=activity_unit,
            )
        else:
            target = self.scenario_methodologies.get(f"{platform_id}:{scenario_id}") or self.scenario_methodologies.get(
                scenario_id
            )
            if target is None or quantity is None or unit is None:
                raise ItemRejected(
                    self._unrecognised(platform_id, scenario_id, code, version, target), "/methodology_code"
                )
            method = self._methodology(
                ctx, target, f"scenario_methodologies maps {platform_id}:{scenario_id} to", "/scenario_id"
            )
            if method.needs_baseline:
                raise ItemRejected(
                    f"scenario_methodologies maps {platform_id}:{scenario_id} to {method.key}, which needs a baseline "
                    f"that YRD records do not carry; recognise {code!r} instead",
                    "/scenario_id",
                )
            canonical = self.unit_aliases.get(unit, unit)
            if canonical != method.activity_unit:
                raise ItemRejected(
                    f"activity in {unit!r} cannot be re-quantified with {method.key}, which expects "
                    f"{method.activity_unit!r}; add {unit!r} = {method.activity_unit!r} to "
                    f"[adapters.{self.adapter}.unit_aliases] if they are the same unit, or recognise {code!r}",
                    "/activity_unit",
                )
            details["treatment"] = "requantified"
            details["origin_reduction_kgco2e"] = kg
            activity, activity_unit, quantification = quantity, method.activity_unit, None
        doc = ctx.record(
            raw=item,
            partner_record_id=partner_record_id,
            subject=subject,
            scenario=method.scenario,
            start=start,
            end=end,
            region=region,
            activity=activity,
            unit=activity_unit,
            methodology=method,
            details=details,
            origin=origin,
            id_stream=RECORD_KEY_STREAM,
            quantification=quantification,
        )
        return (doc,)

    # -- parts -----------------------------------------------------------------------------------------------

    def _subject(self, item: dict[str, Any], ctx: StreamContext) -> dict[str, str]:
        chosen = None
        for kind in self.subject_order:
            if item.get(kind) is not None:
                chosen = kind
                break
        # Every identifier present must be valid, also the one not used: a record whose identifiers fail their own
        # check rules belongs to nobody we can name. The chosen one is checked by the pseudonymiser itself.
        for kind in _KINDS:
            if kind != chosen:
                value = item.get(kind)
                if value is not None and not _valid(kind, value):
                    raise ItemRejected(_invalid(kind, value), f"/{kind}")
        if chosen is None:
            present = [k for k in _KINDS if item.get(k) is not None]
            raise ItemRejected(
                f"the record identifies the resident by {', '.join(present)} only, but "
                f"[adapters.{self.adapter}] subject_order allows {', '.join(self.subject_order)}",
                f"/{present[0]}" if present else "",
            )
        value = item[chosen]
        try:
            return ctx.subject("mobile" if chosen == "mobile" else "resident_id", value)
        except PrivacyError:
            raise ItemRejected(_invalid(chosen, value), f"/{chosen}") from None

    def _methodology(self, ctx: StreamContext, methodology_id: str, why: str, pointer: str) -> Methodology:
        try:
            return ctx.methodology(methodology_id)
        except MethodologyError as exc:
            raise ItemRejected(f"{why} {methodology_id!r}, which cannot be used: {exc}", pointer) from None

    def _unrecognised(self, platform: str, scenario_id: str, code: str, version: str, target: str | None) -> str:
        head = (
            f"origin methodology {code!r} v{version} ({platform} scenario {scenario_id}) is not in the "
            f"mutual-recognition table"
        )
        if target is None:
            why = f"and scenario {platform}:{scenario_id} has no methodology of ours to re-quantify it with"
        else:
            why = f"and the record reports no activity to re-quantify with {target}"
        return (
            f"{head}, {why}; fix: add {code!r} to [adapters.{self.adapter}.recognition] mapped to our methodology "
            "id once the methodology is recognised, then replay this entry"
        )

    def treatment(self, platform: str, scenario_id: str, code: str, version: str) -> tuple[str, str | None]:
        """How records of a catalog scenario are handled under the current tables: (description, our methodology).

        The methodology is None when no table covers the scenario: its records can never be credited.
        """
        mapped = lookup_recognition(self.recognition, code, version)
        if mapped is not None:
            return f"recognised as {mapped}", mapped
        target = self.scenario_methodologies.get(f"{platform}:{scenario_id}") or self.scenario_methodologies.get(
            scenario_id
        )
        if target is not None:
            return f"re-quantified with {target} (records without activity are quarantined)", target
        return "not creditable", None

    def uncovered(self, platform: str, scenario_id: str, code: str, version: str) -> Problem:
        """The problem reported for a catalog scenario no table covers."""
        return Problem("/methodology_code", self._unrecognised(platform, scenario_id, code, version, None))

    # -- withdrawn records -----------------------------------------------------------------------------------

    def withdrawn(self, ctx: StreamContext, status: str, platform: str, record_id: str, origin_id: str) -> None:
        """Count a record the origin reports ``credited`` or ``cancelled``, and log its record id.

        It is not an error, so it is not quarantined, and it is never offered for crediting. When the same origin
        record was forwarded earlier as ``active``, the hub voids it (``ctx.withdraw``: a ``voided`` event naming
        the record id here, which is the one the consumer has: ids derive from the origin record, not its status).
        The log keeps the last ``withdrawn_log_size`` entries.
        """
        reason = "credited on its origin platform" if status == "credited" else f"{status} by its origin platform"
        ctx.withdraw(f"{platform}:{origin_id}", f"{platform} reports the record {reason}", id_stream=RECORD_KEY_STREAM)
        state = ctx.state
        counts: dict[str, int] = state.setdefault("withdrawn", {})
        key = f"{platform}:{status}"
        counts[key] = counts.get(key, 0) + 1
        log: list[dict[str, str]] = state.setdefault("withdrawn_log", [])
        log.append({"record_id": record_id, "origin": f"{platform}:{origin_id}", "status": status})
        if len(log) > self.withdrawn_log_size:
            del log[: len(log) - self.withdrawn_log_size]
