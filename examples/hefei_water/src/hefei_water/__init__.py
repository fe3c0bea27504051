"""Example third-party tanpuhui adapter for a municipal water utility (Hefei)."""

from .adapter import BillsStream, HefeiWaterAdapter, HefeiWaterSettings
from .methodology import HOUSEHOLD_SAVING

__all__ = ["HOUSEHOLD_SAVING", "BillsStream", "HefeiWaterAdapter", "HefeiWaterSettings"]
