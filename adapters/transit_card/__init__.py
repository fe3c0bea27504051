"""Transit card operator adapter: metro tap-in/tap-out pairs and bus taps.

The sandbox partner simulator lives in :mod:`tanpuhui.adapters.transit_card.sandbox` (imported on demand: it pulls
in Starlette and uvicorn).
"""

from .adapter import TransactionsStream, TransitCardAdapter, TransitCardSettings
from .network import MetroStop, Network

__all__ = ["MetroStop", "Network", "TransactionsStream", "TransitCardAdapter", "TransitCardSettings"]
