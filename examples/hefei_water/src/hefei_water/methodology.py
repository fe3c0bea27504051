"""Household tap-water saving against the same month a year earlier.

Saved water is valued by the electricity its supply and treatment take (``kwh_per_m3``) at Anhui's grid factor
(the SDK's published series ``GRID_ANHUI``, the vintage of the activity's date). No official tap-water factor
was found for Anhui: ``kwh_per_m3`` is a labelled default; a utility sets its own figure in hub.toml
(``[methodologies."hefei_water.household-saving".factors]``).
"""

from __future__ import annotations

from tanpuhui.sdk import GRID_ANHUI, Factor, Formula, Methodology

__all__ = ["HOUSEHOLD_SAVING"]

HOUSEHOLD_SAVING = Methodology(
    id="hefei_water.household-saving",
    version="1.1.0",
    scenario="water_saving",
    title="Household tap water saved against the same month of the previous year",
    formula=Formula("max(baseline - activity, 0) * kwh_per_m3 * ef_grid"),
    factors=(
        Factor(
            "kwh_per_m3",
            0.30,
            "kWh/m3",
            "typical urban water supply and treatment energy intensity; no official figure found - labelled default",
            default=True,
        ),
        *GRID_ANHUI,
    ),
    activity_unit="m3",
    needs_baseline=True,
)
