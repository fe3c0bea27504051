"""The SDK's conformance suite, run for the YRD records stream (replayed from tests/cassettes/yrd_scenarios/conformance).

Re-record from the sandbox exchange with ``.venv/bin/pytest tests/yrd_scenarios/test_conformance.py --tanpuhui-record``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from tanpuhui.adapters.yrd_scenarios import YrdScenariosAdapter, plugin
from tanpuhui.adapters.yrd_scenarios.sandbox import YrdSandbox, sandbox_recognition
from tanpuhui.testing.conformance import AdapterConformance, LivePartner

from .conftest import CASSETTES


class TestRecordsConformance(AdapterConformance):
    plugin = plugin
    adapter = YrdScenariosAdapter
    stream = "records"
    page_path = "/v1/records"
    cassette_dir = CASSETTES / "conformance"
    base_url = "https://yrd-exchange.sandbox.example"
    min_pages = 3

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        secret = partner.handle.client_secret if partner is not None else "replayed-secret"
        return {
            "endpoints": {
                "exchange": {
                    "base_url": base_url,
                    "client_id": "anhui-tanpuhui-sandbox",
                    "client_secret": secret,
                    "platforms": ["shanghai", "zhejiang", "jiangsu"],
                }
            },
            "page_size": 4,
            "retry_attempts": 3,
            **sandbox_recognition(),
        }

    def sandbox(self) -> AbstractContextManager[LivePartner | None]:
        return _sandbox()


@contextmanager
def _sandbox() -> Iterator[LivePartner | None]:
    with YrdSandbox(records=10, seed=41, bad={"bad_resident_id": 1}, withdrawn={"credited": 1}) as sandbox:
        yield LivePartner(sandbox.url, None, sandbox)
