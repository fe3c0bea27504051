"""The YRD scenario platforms adapter's records pull passes the conformance suite (cassettes from YrdSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_yrd_scenarios.py --tanpuhui-record``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tanpuhui.adapters.yrd_scenarios import YrdScenariosAdapter
from tanpuhui.adapters.yrd_scenarios import plugin as yrd_plugin
from tanpuhui.adapters.yrd_scenarios.sandbox import YrdSandbox, sandbox_recognition
from tanpuhui.testing.conformance import AdapterConformance, LivePartner

CASSETTES = Path(__file__).parent / "cassettes"


class TestYrdRecordsConformance(AdapterConformance):
    plugin = yrd_plugin
    adapter = YrdScenariosAdapter
    stream = "records"
    page_path = "/v1/records"
    base_url = "https://yrd-exchange.sandbox.example"
    cassette_dir = CASSETTES / "yrd_scenarios"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        sandbox = partner.handle if partner is not None else None
        endpoint = {
            "base_url": base_url,
            "client_id": sandbox.client_id if sandbox else "anhui-tanpuhui-sandbox",
            "client_secret": sandbox.client_secret if sandbox else "replayed-secret",
            "platforms": ["shanghai", "zhejiang", "jiangsu"],
        }
        return {
            "endpoints": {"exchange": endpoint},
            **sandbox_recognition(),
            "page_size": 5,
            "retry_attempts": 3,
            "retry_initial_backoff": 0.5,
            "retry_max_backoff": 4.0,
        }

    @contextmanager
    def sandbox(self) -> Iterator[LivePartner]:
        # Twelve records of Anhui residents (mobiles and resident IDs), in three pages of five.
        with YrdSandbox(records=12, seed=7, bad={}, withdrawn={}) as sandbox:
            yield LivePartner(sandbox.url, handle=sandbox)
