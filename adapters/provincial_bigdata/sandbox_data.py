"""The provincial sandbox's synthetic data: four seeded datasets and what a correct pull makes of them.

:class:`GatewayData` is the same on every run for the same arguments: appliance purchases across Anhui's cities,
households' daily peak-hour water and gas usage, and rooftop PV generation, over ``days`` days from ``start``.
Identifiers are synthetic: resident IDs have valid check characters but are generated, mobiles are ``199`` + a
serial, account numbers carry the sandbox's own prefixes. A few bad items of the kinds in :data:`BAD_KINDS` are
mixed in (``bad``: count per kind, default one each), and :meth:`GatewayData.expected` says what a correct pull
makes of each dataset.

:mod:`.sandbox` serves them and re-exports these names.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tanpuhui.testing.sandbox.identities import with_check_char, with_wrong_check_char
from tanpuhui.testing.sandbox.kinds import check_kinds

from .methodologies import APPLIANCE_CATEGORIES

__all__ = ["BAD_KINDS", "CITIES", "SCHEMA_INVALID", "GatewayData"]

CST = timezone(timedelta(hours=8))

BAD_KINDS: Mapping[str, tuple[str, ...]] = {
    "green_appliances": ("unknown_category", "no_offset", "bad_resident_id"),
    "water_usage": ("negative_usage", "missing_account", "duplicate_day"),
    "gas_usage": ("bad_date", "missing_region"),
    "rooftop_pv": ("negative_generation", "implausible_generation"),
}
"""Bad items per dataset. Schema-invalid: an appliance category outside the enum, a purchase time without offset, a
negative usage, a reading without account, a date written 2024/11/05, a reading without region, a negative
generation. Rejected by the adapter: a resident ID with a wrong check character, a second reading of the same
account and day, a day's generation beyond what the installed capacity can produce."""

SCHEMA_INVALID = frozenset(
    {
        "unknown_category",
        "no_offset",
        "negative_usage",
        "missing_account",
        "bad_date",
        "missing_region",
        "negative_generation",
    }
)

CITIES: tuple[tuple[str, str], ...] = (
    ("340100", "合肥"),
    ("340200", "芜湖"),
    ("340300", "蚌埠"),
    ("340400", "淮南"),
    ("340500", "马鞍山"),
    ("340600", "淮北"),
    ("340700", "铜陵"),
    ("340800", "安庆"),
    ("341000", "黄山"),
    ("341100", "滁州"),
    ("341200", "阜阳"),
    ("341300", "宿州"),
    ("341500", "六安"),
    ("341600", "亳州"),
    ("341700", "池州"),
    ("341800", "宣城"),
)
"""Anhui's prefecture-level cities with their GB/T 2260 codes; Hefei gets the most activity."""

_STANDARDS = {
    "air_conditioner": ("GB 21455-2019", "KFR-35GW/BP"),
    "refrigerator": ("GB 12021.2-2015", "BCD-300W"),
    "washing_machine": ("GB 12021.4-2013", "XQG80-B"),
    "electric_water_heater": ("GB 21519-2008", "DSZF-60"),
    "television": ("GB 24850-2020", "55E"),
}
_CATEGORY_WEIGHTS = (0.3, 0.25, 0.2, 0.1, 0.15)


def _resident_id(rng: random.Random, region: str) -> str:
    district = region[:4] + rng.choice(("02", "03", "04"))
    born = date(1955, 1, 1) + timedelta(days=rng.randrange(45 * 365))
    body = f"{district}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return with_check_char(body)


def _city(rng: random.Random) -> tuple[str, str]:
    return CITIES[0] if rng.random() < 0.4 else rng.choice(CITIES)


class GatewayData:
    """The four datasets the sandbox serves, in serving order, and what a correct pull makes of them."""

    def __init__(
        self,
        seed: int = 7,
        *,
        start: date = date(2024, 11, 1),
        days: int = 10,
        purchases: int = 120,
        households: int = 24,
        installations: int = 12,
        bad: Mapping[str, int] | None = None,
    ) -> None:
        known = {kind for kinds in BAD_KINDS.values() for kind in kinds}
        check_kinds(bad, sorted(known))
        if days < 1 or purchases < 0 or households < 0 or installations < 0:
            raise ValueError("days must be >= 1 and the counts >= 0")
        self.seed = seed
        self.start = start
        self.days = days
        self.bad_counts: dict[str, int] = {k: 1 for k in known} if bad is None else {k: bad.get(k, 0) for k in known}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.bad: dict[str, list[str]] = {k: [] for k in known}
        """Bad kind -> ids of the bad items of that kind (``""`` when the id itself is what is missing)."""
        self.bad_positions: dict[str, set[int]] = {}
        rng = random.Random(seed)
        self.items["green_appliances"] = self._appliances(random.Random(rng.random()), purchases)
        self.items["water_usage"] = self._usage(
            random.Random(rng.random()), "water_usage", households, "W", (0.11, 0.22), "06:30-08:30,18:00-21:00", False
        )
        self.items["gas_usage"] = self._usage(
            random.Random(rng.random()), "gas_usage", households, "G", (0.25, 0.6), "17:00-20:00", True
        )
        self.items["rooftop_pv"] = self._pv(random.Random(rng.random()), installations)
        for dataset, items in self.items.items():
            self.bad_positions[dataset] = {i for i, item in enumerate(items) if item.pop("_bad", None)}

    # -- generators --------------------------------------------------------------------------------------------

    def _mark(self, rng: random.Random, items: list[dict[str, Any]], dataset: str) -> list[tuple[str, int]]:
        """Pick distinct positions for the dataset's bad kinds (never the first items, never twice)."""
        picks: list[tuple[str, int]] = []
        free = list(range(min(3, len(items)), len(items)))
        rng.shuffle(free)
        for kind in BAD_KINDS[dataset]:
            for _ in range(self.bad_counts.get(kind, 0)):
                if not free:
                    raise ValueError(f"{dataset}: too few items for the bad items asked for")
                picks.append((kind, free.pop()))
        return picks

    def _appliances(self, rng: random.Random, purchases: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for _ in range(purchases):
            region, city = _city(rng)
            day = self.start + timedelta(days=rng.randrange(self.days))
            when = datetime(day.year, day.month, day.day, 9, tzinfo=CST) + timedelta(seconds=rng.randrange(12 * 3600))
            category = rng.choices(APPLIANCE_CATEGORIES, _CATEGORY_WEIGHTS)[0]
            standard, model = _STANDARDS[category]
            grade = rng.choices((1, 2, 3), (0.55, 0.3, 0.15))[0]
            item: dict[str, Any] = {
                "category": category,
                "energyGrade": grade,
                "energyStandard": standard,
                "model": f"{model}{rng.randrange(100, 999)}",
                "quantity": 2 if rng.random() < 0.06 else 1,
                "purchaseTime": when.isoformat(),
                "regionCode": region,
                "retailer": f"{city}示例家电{rng.randint(1, 6)}号店",
            }
            if rng.random() < 0.7:
                item["buyerIdNo"] = _resident_id(rng, region)
            else:
                item["buyerMobile"] = f"199{rng.randrange(10**8):08d}"
            items.append(item)
        items.sort(key=lambda i: i["purchaseTime"])
        for n, item in enumerate(items):
            order_id = f"GA{item['purchaseTime'][:10].replace('-', '')}{n:06d}"
            invoice = f"0340024{rng.randrange(10**5):05d}-{rng.randrange(10**8):08d}"
            items[n] = {"orderId": order_id, **item, "invoiceNo": invoice}
        for kind, pos in self._mark(rng, items, "green_appliances"):
            item = items[pos]
            item["_bad"] = kind
            self.bad[kind].append(item["orderId"])
            if kind == "unknown_category":
                item["category"] = "air_purifier"
            elif kind == "no_offset":
                item["purchaseTime"] = item["purchaseTime"][:19]
            elif kind == "bad_resident_id":
                item["energyGrade"] = 1  # uncredited grades are not looked at closely enough to be rejected
                item.pop("buyerMobile", None)
                good = item.get("buyerIdNo") or _resident_id(rng, item["regionCode"])
                item["buyerIdNo"] = with_wrong_check_char(good)
        return items

    def _usage(
        self,
        rng: random.Random,
        dataset: str,
        households: int,
        prefix: str,
        mean_range: tuple[float, float],
        window: str,
        with_baseline: bool,
    ) -> list[dict[str, Any]]:
        homes = []
        for h in range(households):
            region, _ = _city(rng)
            mean = rng.uniform(*mean_range)
            baseline = round(mean * rng.uniform(0.97, 1.08), 3) if with_baseline and rng.random() < 0.65 else None
            homes.append((h, region, mean, baseline))
        items: list[dict[str, Any]] = []
        for d in range(self.days):
            day = self.start + timedelta(days=d)
            for h, region, mean, baseline in homes:
                factor = rng.lognormvariate(0, 0.15) * (rng.uniform(0.6, 0.88) if rng.random() < 0.35 else 1.0)
                item: dict[str, Any] = {
                    # Opaque ids: a partner id travels in every record, so it must not spell out the account.
                    "recordId": f"{prefix}U{day:%Y%m%d}{len(items):06d}",
                    "accountNo": f"{prefix}{region}{h:06d}",
                    "meterNo": f"{prefix}M{region[2:4]}{h:07d}",
                    "usageDate": day.isoformat(),
                    "peakWindow": window,
                    "peakUsageM3": round(mean * factor, 3),
                    "regionCode": region,
                }
                if baseline is not None:
                    item["baselineM3"] = baseline
                    item["baselineMethod"] = "utility: household peak-hour mean, same month of the previous year"
                items.append(item)
        extra: list[tuple[int, dict[str, Any]]] = []
        for kind, pos in self._mark(rng, items, dataset):
            item = items[pos]
            if kind == "duplicate_day":
                copy = {**item, "recordId": item["recordId"] + "-R", "peakUsageM3": round(item["peakUsageM3"] * 0.5, 3)}
                copy["_bad"] = kind
                self.bad[kind].append(copy["recordId"])
                extra.append((pos + 1, copy))
                continue
            item["_bad"] = kind
            self.bad[kind].append(item["recordId"])
            if kind == "negative_usage":
                item["peakUsageM3"] = -0.05
            elif kind == "missing_account":
                del item["accountNo"]
            elif kind == "bad_date":
                item["usageDate"] = item["usageDate"].replace("-", "/")
            elif kind == "missing_region":
                del item["regionCode"]
        for pos, copy in sorted(extra, key=lambda e: e[0], reverse=True):
            items.insert(pos, copy)
        return items

    def _pv(self, rng: random.Random, installations: int) -> list[dict[str, Any]]:
        sites = []
        for n in range(installations):
            region, _ = _city(rng)
            capacity = rng.choice((3.6, 4.5, 5.4, 6.0, 8.1, 10.2))
            mode = "full_export" if rng.random() < 0.3 else "self_use_surplus_export"
            sites.append((n, region, capacity, mode))
        items: list[dict[str, Any]] = []
        for d in range(self.days):
            day = self.start + timedelta(days=d)
            weather = rng.uniform(0.35, 1.0)  # one sky over the province that day
            for n, region, capacity, mode in sites:
                cons_no = f"34{n + 1:08d}"
                items.append(
                    {
                        "genId": f"PVG{day:%Y%m%d}{len(items):06d}",
                        "consNo": cons_no,
                        "installationId": f"AHPV-{region}-{n + 1:05d}",
                        "capacityKw": capacity,
                        "genDate": day.isoformat(),
                        "generationKwh": round(capacity * 4.2 * weather * rng.uniform(0.85, 1.05), 2),
                        "connectionMode": mode,
                        "regionCode": region,
                    }
                )
        for kind, pos in self._mark(rng, items, "rooftop_pv"):
            item = items[pos]
            item["_bad"] = kind
            self.bad[kind].append(item["genId"])
            if kind == "negative_generation":
                item["generationKwh"] = -1.5
            elif kind == "implausible_generation":
                item["generationKwh"] = round(item["capacityKw"] * 14, 2)
        return items

    # -- the oracle --------------------------------------------------------------------------------------------

    def expected(
        self,
        dataset: str,
        *,
        credited_grades: Iterable[int] = (1,),
        baseline_days: int = 7,
        baseline_min_days: int = 3,
        pv_max_full_load_hours: float = 10.0,
        visible: int | None = None,
    ) -> dict[str, int]:
        """What a correct pull of the first ``visible`` items (all by default) gives, with these settings.

        ``records``: records made; ``schema_invalid``: items the schema rejects; ``rejected``: items the adapter
        rejects; ``quarantined``: both; ``uncredited``: valid items that give no record (a grade not credited, a
        household still building its baseline, a day without saving).
        """
        items = self.items[dataset][:visible]
        kinds = BAD_KINDS[dataset]
        bad_ids = {i for kind in kinds for i in self.bad[kind]}
        schema_invalid = rejected = records = 0
        grades = set(credited_grades)
        history: dict[str, dict[date, float]] = {}
        for item in items:
            item_id = item.get("orderId") or item.get("recordId") or item.get("genId") or ""
            kind = next((k for k in kinds if item_id in self.bad[k]), "") if item_id in bad_ids else ""
            if kind in SCHEMA_INVALID:
                schema_invalid += 1
                continue
            if kind == "implausible_generation" or (kind == "bad_resident_id" and item["energyGrade"] in grades):
                rejected += 1
                continue
            if dataset == "green_appliances":
                records += item["energyGrade"] in grades
            elif dataset == "rooftop_pv":
                records += item["generationKwh"] <= item["capacityKw"] * pv_max_full_load_hours
            else:
                days = history.setdefault(item["accountNo"], {})
                day = date.fromisoformat(item["usageDate"])
                if day in days:
                    rejected += 1
                    continue
                earlier = [v for d, v in days.items() if 0 < (day - d).days <= baseline_days]
                days[day] = item["peakUsageM3"]
                baseline = item.get("baselineM3")
                if baseline is None and len(earlier) >= baseline_min_days:
                    baseline = round(sum(earlier) / len(earlier), 6)  # as the adapter rounds it
                records += baseline is not None and item["peakUsageM3"] < baseline
        return {
            "items": len(items),
            "records": records,
            "schema_invalid": schema_invalid,
            "rejected": rejected,
            "quarantined": schema_invalid + rejected,
            "uncredited": len(items) - records - schema_invalid - rejected,
        }
