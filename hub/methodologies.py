"""Built-in methodologies, registered through the same hook as any plugin's.

Each figure carries its primary source (a factor's ``source``, a methodology's ``references``); docs/methodologies.md
lists them. Published figures are the SDK's (``tanpuhui.sdk.factors``), shared with the adapters' methodologies.
Where no official figure exists for Anhui the factor is a labelled default (``default=True``): override it in
hub.toml under ``[methodologies."<id>".factors]``.

Versions 1.1.0 of the grid-factor methodologies value each activity with the Anhui grid factor vintage of its date
(``tanpuhui.sdk.factors``: data year = activity year - 2); 1.0.0 applied data year 2022 to every date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from tanpuhui.sdk import GRID_ANHUI, NATURAL_GAS, Factor, Formula, Methodology, hookimpl

__all__ = ["BUILTIN_METHODOLOGIES", "register_methodologies"]

_SHENZHEN = (
    "Shenzhen low-carbon public travel methodology (2021-12), reduction per passenger-km against the city's average "
    "road transport; no Anhui figure published - labelled default, override in hub.toml"
)
_SHENZHEN_PUBLISHED = date(2021, 12, 1)
"""The Shenzhen methodology's figures value trips from its publication on (cited by month: its first day), with no
end until a successor is configured."""

BUILTIN_METHODOLOGIES: tuple[Methodology, ...] = (
    Methodology(
        id="tph.transit.metro",
        version="1.0.0",
        scenario="metro",
        title="Metro trip instead of average road transport",
        formula=Formula("activity * ef_reduction"),
        factors=(
            Factor("ef_reduction", 0.0467, "kgCO2e/pkm", _SHENZHEN, default=True, valid_from=_SHENZHEN_PUBLISHED),
        ),
        activity_unit="pkm",
        references=("Shenzhen 低碳公共出行碳普惠方法学 (2021-12)", "DB11/T 3043-2024: ER = BE - PE"),
    ),
    Methodology(
        id="tph.transit.bus",
        version="1.0.0",
        scenario="bus",
        title="Bus trip instead of average road transport",
        formula=Formula("activity * ef_reduction"),
        factors=(
            Factor(
                "ef_reduction",
                0.0269,
                "kgCO2e/pkm",
                _SHENZHEN + " (electric bus)",
                default=True,
                valid_from=_SHENZHEN_PUBLISHED,
            ),
        ),
        activity_unit="pkm",
        references=("Shenzhen 低碳公共出行碳普惠方法学 (2021-12)",),
    ),
    Methodology(
        id="tph.electricity.peak-saving",
        version="1.1.0",
        scenario="peak_electricity_saving",
        title="Household peak-hour electricity saving against its own trailing average",
        formula=Formula("max(baseline - activity, 0) * ef_grid"),
        factors=GRID_ANHUI,
        activity_unit="kWh",
        needs_baseline=True,
        references=(
            "SHCER02010022024II (Shanghai, time-of-use households)",
            "Shenzhen household electricity (2022)",
        ),
    ),
    Methodology(
        id="tph.water.peak-saving",
        version="1.1.0",
        scenario="peak_water_saving",
        title="Household peak-hour tap-water saving (supply energy x grid factor)",
        formula=Formula("max(baseline - activity, 0) * kwh_per_m3 * ef_grid"),
        factors=(
            Factor(
                "kwh_per_m3",
                0.30,
                "kWh/m3",
                "No official tap-water factor found; typical urban supply energy intensity - labelled default, "
                "set your water utility's figure in hub.toml",
                default=True,
            ),
            *GRID_ANHUI,
        ),
        activity_unit="m3",
        needs_baseline=True,
    ),
    Methodology(
        id="tph.gas.peak-saving",
        version="1.0.0",
        scenario="peak_gas_saving",
        title="Household peak-hour natural gas saving",
        formula=Formula("max(baseline - activity, 0) * ef_gas"),
        factors=(NATURAL_GAS,),
        activity_unit="m3",
        needs_baseline=True,
    ),
    Methodology(
        id="tph.pv.rooftop",
        version="1.1.0",
        scenario="rooftop_pv",
        title="Rooftop PV generation displacing grid electricity",
        formula=Formula("activity * ef_grid"),
        factors=GRID_ANHUI,
        activity_unit="kWh",
        references=("SHCER distributed PV methodology (2024-03)",),
    ),
)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    for methodology in BUILTIN_METHODOLOGIES:
        register(methodology)
