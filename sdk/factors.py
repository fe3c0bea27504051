"""Published emission factors, cited: defined once here, used by the hub's methodologies and by adapters.

Only official figures belong here, each with its source and validity. A value for which no official figure was
found is a labelled default (``Factor(..., default=True)``) in the methodology that needs it. Operators override any
factor per methodology in hub.toml (``[methodologies."<id>".factors]``) or add a vintage
(``[[methodologies."<id>".vintages.<factor>]]``).

**Grid factors come in vintages** (one value per data year of the MEE/NBS location-based series, kgCO2/kWh). The
rule that gives each vintage its validity (``valid_from``..``valid_to``, dates of the *activity*, inclusive): the
series for data year Y is published about two years later (data years 2021 and 2022 were both announced in 2024), so
**an activity in calendar year A is valued with data year A - 2**, and the data year is recorded with the value. An
activity whose year has no shipped or configured vintage is quarantined (never given another year's value). The
figures:

============  ========  ==========================  =======  ===========================================
data year     national  East China grid (华东)       Anhui    status
============  ========  ==========================  =======  ===========================================
2021          0.5568    not found                   not found confirmed: MEE/NBS announcement 2024 No.12
2022          0.5366    0.5617                      0.6782   confirmed: MEE/NBS announcement of 2024-12
2023          0.5306    0.5500                      0.6553   national/East China confirmed; Anhui single or
                                                             secondary source (``single_source=True``)
============  ========  ==========================  =======  ===========================================

Not to be mixed with 0.5703 tCO2/MWh (the power sector's compliance-reporting factor for 2022, another series) nor
with the old popular "0.997 kg/kWh".
"""

from __future__ import annotations

from datetime import date

from .methodology import Factor

__all__ = [
    "GRID_ANHUI",
    "GRID_ANHUI_2022",
    "GRID_ANHUI_2023",
    "GRID_EAST_CHINA",
    "GRID_NATIONAL",
    "NATURAL_GAS",
    "VINTAGE_LAG_YEARS",
    "grid_vintage",
]

VINTAGE_LAG_YEARS = 2
"""An activity in year A is valued with the grid factor of data year A - ``VINTAGE_LAG_YEARS``."""

_MEE_2021 = "MEE/NBS announcement 2024 No.12"
_MEE_2022 = "MEE/NBS announcement (2024-12)"
_MEE_2023 = "MEE/NBS announcement (data year 2023 factors)"


def grid_vintage(
    region: str, data_year: int, value: float, announcement: str, *, single_source: bool = False
) -> Factor:
    """One vintage of a grid factor (``ef_grid``), valid for the activities of ``data_year + VINTAGE_LAG_YEARS``."""
    year = data_year + VINTAGE_LAG_YEARS
    note = " - single or secondary source, not confirmed from the announcement itself" if single_source else ""
    return Factor(
        name="ef_grid",
        value=value,
        unit="kgCO2/kWh",
        source=f"{announcement}: {data_year} electricity CO2 emission factor, {region}, location-based{note}",
        valid_from=date(year, 1, 1),
        valid_to=date(year, 12, 31),
        data_year=data_year,
        single_source=single_source,
    )


GRID_ANHUI_2022 = grid_vintage("Anhui province", 2022, 0.6782, _MEE_2022)
"""Anhui's grid factor for data year 2022: valid for activities in 2024."""

GRID_ANHUI_2023 = grid_vintage("Anhui province", 2023, 0.6553, _MEE_2023, single_source=True)
"""Anhui's grid factor for data year 2023 (single or secondary source, labelled): valid for activities in 2025."""

GRID_ANHUI: tuple[Factor, ...] = (GRID_ANHUI_2022, GRID_ANHUI_2023)
"""Anhui's grid factor series (``ef_grid``); no Anhui figure for data year 2021 was found, so activities in 2023
have no Anhui vintage. Use as ``factors=(*GRID_ANHUI, ...)``."""

GRID_EAST_CHINA: tuple[Factor, ...] = (
    grid_vintage("East China regional grid (Shanghai, Jiangsu, Zhejiang, Anhui, Fujian)", 2022, 0.5617, _MEE_2022),
    grid_vintage("East China regional grid (Shanghai, Jiangsu, Zhejiang, Anhui, Fujian)", 2023, 0.5500, _MEE_2023),
)
"""The East China regional grid series (no 2021 figure found)."""

GRID_NATIONAL: tuple[Factor, ...] = (
    grid_vintage("national average", 2021, 0.5568, _MEE_2021),
    grid_vintage("national average", 2022, 0.5366, _MEE_2022),
    grid_vintage("national average", 2023, 0.5306, _MEE_2023),
)
"""The national average series."""

NATURAL_GAS = Factor(
    name="ef_gas",
    value=2.1622,
    unit="kgCO2/m3",
    source="Natural gas: 38,931 kJ/m3 x 15.3 tC/TJ x 0.99 oxidation x 44/12 "
    "(GB/T 32151 / provincial GHG guidelines defaults)",
    valid_from=date(2016, 6, 1),
)
"""Natural gas burnt (``ef_gas``): m3 of gas saved x this. A physical constant, so one value for every date from the
day its cited source took effect (GB/T 32151.1-10-2015, in force 2016-06-01), open-ended."""
