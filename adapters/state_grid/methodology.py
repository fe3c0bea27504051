"""The demand-response methodology this adapter registers (``tph.electricity.demand-response``).

A demand-response (需求响应) result is quantified against the partner's own event baseline, not against the
household's trailing daily average that ``tph.electricity.peak-saving`` uses, so it gets a scenario and a
methodology of its own: reporting can tell the two apart, and hub.toml can pin or override each separately. Both
value the kWh with the SDK's Anhui grid factor series ``GRID_ANHUI``, the vintage of the event's date (1.1.0;
1.0.0 applied data year 2022 to every date).
"""

from __future__ import annotations

from tanpuhui.sdk import GRID_ANHUI, Formula, Methodology

__all__ = ["DEMAND_RESPONSE"]

DEMAND_RESPONSE = Methodology(
    id="tph.electricity.demand-response",
    version="1.1.0",
    scenario="demand_response",
    title="Household demand-response event: consumption in the event window below the partner's event baseline",
    formula=Formula("max(baseline - activity, 0) * ef_grid"),
    factors=GRID_ANHUI,
    activity_unit="kWh",
    needs_baseline=True,
    references=(
        "Electricity saving: ER = saved kWh x grid emission factor, the CDM/CCER shape ER = BE - PE of the published"
        " schemes (SHCER02010022024II, Shanghai time-of-use households; docs/methodologies.md)",
        "Grid emission factor: MEE/NBS announcements of the electricity CO2 emission factors, Anhui, the vintage of"
        " the activity's date",
        "Baseline: the partner's settled demand-response baseline for the event window, carried in the record",
    ),
)
