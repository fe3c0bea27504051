"""Published emission factors, cited: defined once here, used by the hub's methodologies and by adapters.

Only official figures belong here (shared/DOMAIN.md, status ✅), each with its source and validity. A value for which
no official figure was found is a labelled default (``Factor(..., default=True)``) in the methodology that needs it.
Operators override any factor per methodology in hub.toml (``[methodologies."<id>".factors]``).
"""

from __future__ import annotations

from datetime import date

from .methodology import Factor

__all__ = ["GRID_ANHUI_2022", "NATURAL_GAS"]

GRID_ANHUI_2022 = Factor(
    name="ef_grid",
    value=0.6782,
    unit="kgCO2/kWh",
    source="MEE/NBS announcement (2024-12): 2022 electricity CO2 emission factor, Anhui province, location-based",
    valid_from=date(2022, 1, 1),
)
"""Anhui's grid electricity factor for data year 2022 (``ef_grid``): electricity saved or generated x this."""

NATURAL_GAS = Factor(
    name="ef_gas",
    value=2.1622,
    unit="kgCO2/m3",
    source="Natural gas: 38,931 kJ/m3 x 15.3 tC/TJ x 0.99 oxidation x 44/12 "
    "(GB/T 32151 / provincial GHG guidelines defaults)",
)
"""Natural gas burnt (``ef_gas``): m3 of gas saved x this."""
