"""Anhui provincial big-data (data-sharing) platform adapter: green appliances, peak water and gas, rooftop PV.

The gateway conventions (signatures, tokens, envelopes, codes, SM4-sealed payloads) live in
:mod:`tanpuhui.sdk.gateway`; the sandbox gateway in :mod:`.sandbox` (imported on demand, it needs uvicorn).
"""

from .adapter import (
    DATASETS,
    GasUsageStream,
    GreenAppliancesStream,
    ProvincialBigDataAdapter,
    ProvincialBigDataSettings,
    RooftopPVStream,
    WaterUsageStream,
)
from .methodologies import APPLIANCE_METHODOLOGIES

__all__ = [
    "APPLIANCE_METHODOLOGIES",
    "DATASETS",
    "GasUsageStream",
    "GreenAppliancesStream",
    "ProvincialBigDataAdapter",
    "ProvincialBigDataSettings",
    "RooftopPVStream",
    "WaterUsageStream",
]
