"""``benchmarks/`` is a top-level folder of the repository, not an installed package: its root goes on ``sys.path``
before the tests here import from it."""

from __future__ import annotations

import sys

from bench_kit import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
