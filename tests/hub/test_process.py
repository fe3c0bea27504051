"""Process settings of the long-running commands."""

from __future__ import annotations

import gc

from tanpuhui.hub.process import tune_gc


def test_tune_gc_moves_what_start_up_built_out_of_the_collectors_reach() -> None:
    before = gc.get_freeze_count()
    survivor = [[i] for i in range(1000)]  # start-up state (tracked containers) that lives as long as the process
    try:
        tune_gc()
        assert gc.get_freeze_count() >= before + len(survivor)
        assert gc.isenabled()  # collections go on, over what is allocated from now on
    finally:
        gc.unfreeze()
