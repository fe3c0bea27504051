"""State Grid electricity adapter: daily frozen readings (pull) and demand-response results (push).

The sandbox partner simulator lives in :mod:`tanpuhui.adapters.state_grid.sandbox` (imported on demand: it pulls in
Starlette and uvicorn).
"""

from .adapter import DemandResponseStream, ReadingsStream, StateGridAdapter, StateGridSettings
from .methodology import DEMAND_RESPONSE

__all__ = ["DEMAND_RESPONSE", "DemandResponseStream", "ReadingsStream", "StateGridAdapter", "StateGridSettings"]
