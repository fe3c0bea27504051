"""Yangtze River Delta scenario platforms (Shanghai, Zhejiang, Jiangsu): catalog, records, mutual recognition.

The sandbox partner simulator lives in :mod:`tanpuhui.adapters.yrd_scenarios.sandbox` (imported on demand: it
pulls in Starlette and uvicorn).
"""

from .adapter import (
    CatalogStream,
    EndpointSettings,
    PlatformSettings,
    RecordsPushStream,
    RecordsStream,
    YrdScenariosAdapter,
    YrdScenariosSettings,
)
from .recognition import Platform, RecordNormalizer, lookup_recognition, recognised_quantification

__all__ = [
    "CatalogStream",
    "EndpointSettings",
    "Platform",
    "PlatformSettings",
    "RecordNormalizer",
    "RecordsPushStream",
    "RecordsStream",
    "YrdScenariosAdapter",
    "YrdScenariosSettings",
    "lookup_recognition",
    "recognised_quantification",
]
