"""Green appliance purchase methodologies: one per appliance category, registered by this adapter's plugin.

Why one per category: a methodology's formula picks factors by name, not by an item's category, and an operator
must be able to override one category's factor in hub.toml without touching the others::

    [methodologies."tph.appliance.green.refrigerator"]
    factors = { kwh_saved_per_unit = 120 }

Each is ``activity * kwh_saved_per_unit * ef_grid``: ``activity`` is the number of units bought,
``kwh_saved_per_unit`` the electricity a unit of the credited grade saves in its first year of use against a
market-average unit (credited once, at purchase), and ``ef_grid`` the Anhui grid factor vintage of the purchase date.

**The per-unit savings are labelled defaults** (``default=True``): no official per-unit figure was found, so each is
an estimate from the category's China Energy Label standard (the grade-1 vs grade-3 threshold, grade 3 taken as the
market average) and typical household use, with the assumptions in its ``source``; the grade thresholds quoted are
as recalled from the standards, not checked against their texts. Override them with figures from your methodology
filing. Each is valid from the day its standard took effect (implementation date), open-ended: a purchase before it
was graded by an earlier standard and is quarantined (``factor_vintage``) rather than valued with these grades. The grid factor is the SDK's ``GRID_ANHUI`` series of MEE/NBS figures (version 1.1.0 picks the vintage of
the purchase date; 1.0.0 applied data year 2022 to every date).
"""

from __future__ import annotations

from datetime import date

from tanpuhui.sdk import GRID_ANHUI, Factor, Formula, Methodology

__all__ = ["APPLIANCE_CATEGORIES", "APPLIANCE_METHODOLOGIES", "APPLIANCE_PREFIX", "appliance_methodology_id"]

APPLIANCE_PREFIX = "tph.appliance.green"
SCENARIO = "green_appliance"

_DEFAULT = "labelled default, no official per-unit figure found - override in hub.toml. Estimate: "

# category -> (energy label standard, the date it took effect, title, kWh saved per unit in the first year, how the
# estimate was made). The estimate rests on the standard's grades, so it values purchases from that date on
# (``valid_from``; open-ended until a successor standard is configured).
_CATEGORIES: dict[str, tuple[str, date, str, float, str]] = {
    "air_conditioner": (
        "GB 21455-2019",
        date(2020, 7, 1),  # published 2019-12-31
        "room air conditioner",
        180.0,
        "GB 21455-2019 variable-speed split unit <= 4.5 kW, APF grade 1 >= 5.00 vs grade 3 >= 4.00; a 3.5 kW unit "
        "using about 900 kWh/year at APF 4.0 (hot-summer/cold-winter zone) uses about 720 kWh at APF 5.0",
    ),
    "refrigerator": (
        "GB 12021.2-2015",
        date(2016, 10, 1),  # published 2015-09-18
        "household refrigerator",
        110.0,
        "GB 12021.2-2015 energy efficiency index grade 1 <= 40% vs grade 3 <= 60%; a 300 L frost-free "
        "refrigerator-freezer using about 0.95 vs 0.65 kWh/day",
    ),
    "washing_machine": (
        "GB 12021.4-2013",
        date(2013, 10, 1),  # published 2013-06-09
        "washing machine",
        40.0,
        "GB 12021.4-2013 drum machine, about 0.150 vs 0.110 kWh per cycle and kg between grade 3 and grade 1, "
        "4 kg average load, 250 cycles/year",
    ),
    "electric_water_heater": (
        "GB 21519-2008",
        date(2008, 11, 1),  # published 2008-04-01
        "storage electric water heater",
        90.0,
        "GB 21519-2008 24-h standing loss coefficient grade 1 <= 0.6 vs grade 3 <= 0.8 of the reference loss; "
        "a 60 L heater losing about 1.2 kWh/day at the reference",
    ),
    "television": (
        "GB 24850-2020",
        date(2021, 8, 1),  # published 2020-07-23
        "flat-panel television",
        55.0,
        "GB 24850-2020 energy efficiency index, a 55-inch panel at about 70 W (grade 1) vs 105 W (grade 3), 4.5 h/day",
    ),
}

APPLIANCE_CATEGORIES: tuple[str, ...] = tuple(_CATEGORIES)
"""The categories credited (the ``category`` enum of the ``provincial-green-appliance`` schema)."""


def appliance_methodology_id(category: str, prefix: str = APPLIANCE_PREFIX) -> str:
    """``tph.appliance.green.air-conditioner`` for ``air_conditioner``."""
    return f"{prefix}.{category.replace('_', '-')}"


def _methodology(category: str) -> Methodology:
    standard, in_force, title, kwh, how = _CATEGORIES[category]
    return Methodology(
        id=appliance_methodology_id(category),
        version="1.1.0",
        scenario=SCENARIO,
        title=f"Green appliance purchase: {title}, credited energy grade vs market average (first year)",
        formula=Formula("activity * kwh_saved_per_unit * ef_grid"),
        factors=(
            Factor("kwh_saved_per_unit", kwh, "kWh/unit", _DEFAULT + how, default=True, valid_from=in_force),
            *GRID_ANHUI,
        ),
        activity_unit="unit",
        references=(
            f"{standard} (China Energy Label grades)",
            "Anhui carbon-inclusion work plan (draft, 2023): green appliance purchase scenario",
        ),
    )


APPLIANCE_METHODOLOGIES: tuple[Methodology, ...] = tuple(_methodology(c) for c in _CATEGORIES)
