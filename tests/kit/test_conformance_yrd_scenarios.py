"""The YRD scenario platforms adapter's records pull passes the conformance suite (cassettes from YrdSandbox).

Re-record: ``.venv/bin/pytest tests/kit/test_conformance_yrd_scenarios.py --tanpuhui-record``.
"""

from __future__ import annotations

from typing import Any

from tanpuhui.adapters.yrd_scenarios import YrdScenariosAdapter
from tanpuhui.adapters.yrd_scenarios import plugin as yrd_plugin
from tanpuhui.adapters.yrd_scenarios.sandbox import YrdSandbox, sandbox_recognition
from tanpuhui.testing.conformance import LivePartner

from .sandbox_conformance import CASSETTES, FAST_RETRIES, SandboxConformance


class TestYrdRecordsConformance(SandboxConformance):
    plugin = yrd_plugin
    adapter = YrdScenariosAdapter
    stream = "records"
    page_path = "/v1/records"
    base_url = "https://yrd-exchange.sandbox.example"
    cassette_dir = CASSETTES / "yrd_scenarios"

    replay_client_id = "anhui-tanpuhui-sandbox"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        endpoint = {**self.oauth(base_url, partner), "platforms": ["shanghai", "zhejiang", "jiangsu"]}
        return {"endpoints": {"exchange": endpoint}, **sandbox_recognition(), "page_size": 5, **FAST_RETRIES}

    def open_sandbox(self) -> YrdSandbox:
        # Twelve records of Anhui residents (mobiles and resident IDs), in three pages of five.
        return YrdSandbox(records=12, seed=7, bad={}, withdrawn={})
