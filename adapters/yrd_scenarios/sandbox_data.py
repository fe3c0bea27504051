"""The YRD sandbox's synthetic data: the three platforms' catalogs and a seeded records feed.

:data:`SCENARIOS` are the catalogs; :class:`Dataset` is ``records`` records of Anhui residents over ``days`` days, on
the scenarios that have a ``weight``; residents are identified by a mobile number (``198`` + 8 digits), a resident
ID (Anhui region codes, valid GB 11643 check characters) or both; every value is synthetic, no real person's. Codes
other than ``SHCER02010022024II`` and the origin factors are illustrative, not the platforms' published figures.
Mixed in, ``bad`` items of the kinds in :data:`BAD_KINDS` and withdrawn ones of :data:`WITHDRAWN_KINDS` (default
one per 500 records of each kind, at least one); :meth:`Dataset.expected` says what a correct pull makes of them
with :func:`sandbox_recognition`.

:mod:`.sandbox` serves them and re-exports these names.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tanpuhui.testing.sandbox.identities import with_check_char, with_wrong_check_char

from .recognition import lookup_recognition

__all__ = [
    "BAD_KINDS",
    "CATALOG_VERSION",
    "PLATFORM_PREFIX",
    "SCENARIOS",
    "WITHDRAWN_KINDS",
    "Dataset",
    "Scenario",
    "sandbox_recognition",
]

CST = timezone(timedelta(hours=8))
CATALOG_VERSION = "2024-11-01"
PLATFORM_PREFIX = {"shanghai": "SH", "zhejiang": "ZJ", "jiangsu": "JS"}

BAD_KINDS = ("no_offset", "bad_resident_id", "unrecognised_no_activity")
"""Bad items the sandbox mixes in: a ``start_time`` without UTC offset (the schema rejects it), a resident ID whose
check character is wrong, and a record of an unrecognised methodology that reports no activity (the adapter
rejects both)."""

WITHDRAWN_KINDS = ("credited", "cancelled", "cancelled_after_active")
"""Records never offered for crediting: already ``credited`` on the origin platform, ``cancelled``, and one that is
first ``active`` and later appears again as ``cancelled``."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A catalog scenario and how the sandbox generates its records."""

    platform: str
    scenario_id: str
    name: str
    methodology_code: str
    methodology_version: str
    unit: str
    origin_factor: float
    """Illustrative kgCO2e per unit the sandbox's origin platform uses (not a published figure)."""
    weight: int
    """Share of the dataset's records; 0: listed in the catalog, no records (a new scenario)."""
    regions: tuple[str, ...]
    low: float
    high: float

    def catalog_entry(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "scenario_id": self.scenario_id,
            "name": self.name,
            "methodology_code": self.methodology_code,
            "methodology_version": self.methodology_version,
            "activity_unit": self.unit,
            "online": True,
        }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "shanghai",
        "SH-RAIL",
        "轨道交通出行",
        "SHCER-RAIL-2024",
        "1.0",
        "km",
        0.0556,
        30,
        ("310000", "310104", "310115"),
        3,
        28,
    ),
    Scenario(
        "shanghai", "SH-BUS", "公交出行", "SHCER-BUS-2024", "1.0", "km", 0.0312, 12, ("310000", "310106"), 1.5, 12
    ),
    Scenario(
        "shanghai",
        "SH-POWER-TOU",
        "居民分时电价家庭节电",
        "SHCER02010022024II",
        "2024II",
        "kWh",
        0.55,
        8,
        ("310000",),
        0.3,
        4.5,
    ),
    Scenario(
        "zhejiang", "ZJ-GJCX", "公交出行", "ZJ-TPH-GJCX-2023", "1.0", "km", 0.0298, 14, ("330100", "330200"), 1.5, 14
    ),
    Scenario(
        "zhejiang", "ZJ-DTCX", "地铁出行", "ZJ-TPH-DTCX-2023", "1.0", "km", 0.0521, 16, ("330100", "330200"), 3, 30
    ),
    Scenario("zhejiang", "ZJ-GXDC", "共享单车骑行", "ZJ-TPH-GXDC-2023", "1.0", "km", 0.0933, 0, ("330100",), 0.5, 5),
    Scenario(
        "jiangsu", "JS-METRO", "地铁出行", "JS-TPH-METRO-2024", "1.0", "km", 0.049, 20, ("320100", "320500"), 3, 30
    ),
    Scenario("jiangsu", "JS-NEV", "新能源汽车出行", "JS-TPH-NEV-2024", "1.0", "km", 0.071, 0, ("320100",), 5, 60),
)
"""The three platforms' catalogs. ``SHCER02010022024II`` is Shanghai's real code for time-of-use household
electricity (the SHCER methodology series, 2024-03; docs/methodologies.md); every other code, and every origin
factor, is an illustrative placeholder."""


def sandbox_recognition() -> dict[str, dict[str, str]]:
    """The recognition tables the sandbox demo runs with (a deployment decides its own; see the docs).

    Recognised: Shanghai rail and household electricity, Zhejiang bus. Re-quantified by scenario: Shanghai bus,
    Zhejiang metro, Jiangsu metro. Not creditable (the catalog stream reports them): Zhejiang shared bikes, Jiangsu
    new-energy vehicles.
    """
    return {
        "recognition": {
            "SHCER-RAIL-2024": "tph.transit.metro",
            "SHCER02010022024II": "tph.electricity.peak-saving",
            "ZJ-TPH-GJCX-2023@1.0": "tph.transit.bus",
        },
        "scenario_methodologies": {
            "shanghai:SH-BUS": "tph.transit.bus",
            "zhejiang:ZJ-DTCX": "tph.transit.metro",
            "jiangsu:JS-METRO": "tph.transit.metro",
        },
    }


# Anhui county-level codes (GB/T 2260): Hefei Yaohai, Luyang, Shushan, Baohe; Wuhu Jinghu; Bengbu Longzihu;
# Ma'anshan Huashan; Huangshan Tunxi; Xuancheng Xuanzhou; Anqing Yingjiang.
_ANHUI_COUNTIES = ("340102", "340103", "340104", "340111", "340202", "340302", "340503", "341002", "341802", "340802")


def _resident_id(rng: random.Random) -> str:
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 45))
    body = f"{rng.choice(_ANHUI_COUNTIES)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return with_check_char(body)


@dataclass(slots=True)
class _Resident:
    mobile: str | None
    resident_id: str | None
    consent: str


class Dataset:
    """The records feed the sandbox serves, ordered by ``updated_at``, and what a correct pull makes of it."""

    def __init__(
        self,
        records: int,
        seed: int,
        *,
        days: int = 1,
        start: date = date(2024, 11, 5),
        bad: Mapping[str, int] | None = None,
        withdrawn: Mapping[str, int] | None = None,
    ) -> None:
        if records < 0 or days < 1:
            raise ValueError("records must be >= 0 and days >= 1")
        unknown = (set(bad or ()) - set(BAD_KINDS)) | (set(withdrawn or ()) - set(WITHDRAWN_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(BAD_KINDS + WITHDRAWN_KINDS)}")
        rng = random.Random(seed)
        self.seed = seed
        per_kind = max(1, records // 500)
        self.bad_counts = {k: per_kind for k in BAD_KINDS} if bad is None else dict(bad)
        self.withdrawn_counts = {k: per_kind for k in WITHDRAWN_KINDS} if withdrawn is None else dict(withdrawn)
        self.items: list[dict[str, Any]] = []
        self.kinds: dict[str, list[str]] = {k: [] for k in BAD_KINDS + WITHDRAWN_KINDS}
        """Kind -> origin record ids of the items of that kind."""
        self.bad_positions: list[int] = []
        self.treatments: Counter[str] = Counter()
        """Forwarded records by treatment: recognised / requantified (for :meth:`expected`)."""

        people = [self._person(rng, i) for i in range(max(1, records // 4))]
        weighted = [s for s in SCENARIOS if s.weight]
        weights = [s.weight for s in weighted]
        recognition = sandbox_recognition()["recognition"]

        # Pick which records get a special kind; each on a record of a scenario where the kind makes sense.
        plan: list[str] = [""] * records
        free = list(range(records))
        rng.shuffle(free)
        for kind in (*BAD_KINDS, *WITHDRAWN_KINDS):
            count = (self.bad_counts if kind in BAD_KINDS else self.withdrawn_counts).get(kind, 0)
            for _ in range(min(count, len(free))):
                plan[free.pop()] = kind

        serials: Counter[str] = Counter()
        feed: list[tuple[datetime, int, dict[str, Any], str]] = []
        for n in range(records):
            kind = plan[n]
            scenario = weighted[self._scenario_index(rng, weights)]
            if kind == "unrecognised_no_activity":
                scenario = next(s for s in SCENARIOS if s.scenario_id == "JS-METRO")
            person = rng.choice(people)
            day = start + timedelta(days=rng.randrange(days))
            item, updated = self._record(rng, scenario, person, day, serials)
            if kind == "no_offset":
                item["start_time"] = item["start_time"][:19]
            elif kind == "bad_resident_id":
                rid = person.resident_id or _resident_id(rng)
                item.pop("mobile", None)
                item["resident_id"] = with_wrong_check_char(rid, 3)
            elif kind == "unrecognised_no_activity":
                item.pop("activity_quantity", None)
                item.pop("activity_unit", None)
            elif kind in ("credited", "cancelled"):
                item["status"] = kind
            elif kind == "cancelled_after_active":
                later = updated + timedelta(hours=6, minutes=rng.randrange(60))
                feed.append((later, 2 * n + 1, {**item, "status": "cancelled", "updated_at": later.isoformat()}, kind))
            feed.append((updated, 2 * n, item, kind if kind != "cancelled_after_active" else ""))
            if not kind or kind == "cancelled_after_active":
                recognised = lookup_recognition(recognition, scenario.methodology_code, scenario.methodology_version)
                self.treatments["requantified" if recognised is None else "recognised"] += 1
        feed.sort(key=lambda t: (t[0], t[1]))
        for position, (_, _, item, kind) in enumerate(feed):
            self.items.append(item)
            if kind:
                self.kinds[kind].append(item["record_id"])
                if kind in BAD_KINDS:
                    self.bad_positions.append(position)

    @staticmethod
    def _scenario_index(rng: random.Random, weights: list[int]) -> int:
        return rng.choices(range(len(weights)), weights)[0]

    @staticmethod
    def _person(rng: random.Random, n: int) -> _Resident:
        draw = rng.random()
        mobile = f"198{n:08d}" if draw < 0.75 else None
        resident_id = _resident_id(rng) if draw >= 0.55 else None
        if mobile and rng.random() < 0.1:
            mobile = f"+86 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
        return _Resident(mobile, resident_id, f"CNS-{n:07d}")

    def _record(
        self, rng: random.Random, scenario: Scenario, person: _Resident, day: date, serials: Counter[str]
    ) -> tuple[dict[str, Any], datetime]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=CST)
        if scenario.unit == "kWh":  # a time-of-use household's peak period (06:00-22:00) of the previous day
            begin, end = midnight - timedelta(hours=18), midnight - timedelta(hours=2)
        else:
            draw = rng.random()
            hour = rng.gauss(8, 0.8) if draw < 0.35 else rng.gauss(18, 1.0) if draw < 0.7 else rng.uniform(6, 22.5)
            begin = midnight + timedelta(minutes=int(min(max(hour, 5.7), 23) * 60), seconds=rng.randrange(60))
            end = None
        quantity = round(rng.uniform(scenario.low, scenario.high), 1)
        if end is None:
            speed = 0.5 if scenario.unit == "km" else 1.0  # km per minute, door to door
            end = begin + timedelta(minutes=round(4 + quantity / speed + rng.uniform(0, 6)))
        updated = end + timedelta(minutes=rng.randint(2, 90), seconds=rng.randrange(60))
        prefix = PLATFORM_PREFIX[scenario.platform]
        serials[prefix] += 1
        item: dict[str, Any] = {
            "record_id": f"{prefix}{day:%Y%m%d}{serials[prefix]:08d}",
            "platform": scenario.platform,
            "scenario_id": scenario.scenario_id,
        }
        if person.mobile:
            item["mobile"] = person.mobile
        if person.resident_id:
            item["resident_id"] = person.resident_id
        item["start_time"] = begin.isoformat()
        item["end_time"] = end.isoformat()
        if rng.random() < 0.7:
            item["region"] = rng.choice(scenario.regions)
        recognised_without_activity = scenario.unit == "kWh" and rng.random() < 0.2
        if not recognised_without_activity:
            item["activity_quantity"] = quantity
            item["activity_unit"] = scenario.unit
        item.update(
            {
                "methodology_code": scenario.methodology_code,
                "methodology_version": scenario.methodology_version,
                "reduction_kgco2e": round(quantity * scenario.origin_factor, 4),
                "status": "active",
                "consent_id": f"{prefix}-{person.consent}",
                "updated_at": updated.isoformat(),
            }
        )
        return item, updated

    def catalog(self, platform: str | None = None) -> list[dict[str, Any]]:
        """The catalog entries (of one platform, or all)."""
        return [s.catalog_entry() for s in SCENARIOS if platform is None or s.platform == platform]

    def expected(self) -> dict[str, int]:
        """What a correct pull of the whole feed (with :func:`sandbox_recognition`) ends with.

        ``records``: forwarded records (of them ``recognised`` and ``requantified``); ``schema_invalid`` and
        ``rejected``: quarantined by the schema and by the adapter; ``credited``/``cancelled``: withdrawn items
        counted, not forwarded (``cancelled`` includes the later appearance of each cancelled-after-active one);
        ``catalog_gaps``: catalog scenarios the sandbox tables do not cover.
        """
        k = {kind: len(ids) for kind, ids in self.kinds.items()}
        return {
            "items": len(self.items),
            "records": self.treatments["recognised"] + self.treatments["requantified"],
            "recognised": self.treatments["recognised"],
            "requantified": self.treatments["requantified"],
            "schema_invalid": k["no_offset"],
            "rejected": k["bad_resident_id"] + k["unrecognised_no_activity"],
            "quarantined": k["no_offset"] + k["bad_resident_id"] + k["unrecognised_no_activity"],
            "credited": k["credited"],
            "cancelled": k["cancelled"] + k["cancelled_after_active"],
            "catalog_gaps": sum(1 for s in SCENARIOS if not _covered(s)),
        }


def _covered(s: Scenario) -> bool:
    tables = sandbox_recognition()
    return (
        lookup_recognition(tables["recognition"], s.methodology_code, s.methodology_version) is not None
        or f"{s.platform}:{s.scenario_id}" in tables["scenario_methodologies"]
    )
