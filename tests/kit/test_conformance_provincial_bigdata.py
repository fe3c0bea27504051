"""The provincial big-data adapter passes the conformance suite for each of its four datasets.

Cassettes recorded from ProvincialSandbox (signed gateway requests; water usage SM4-sealed). Re-record:
``.venv/bin/pytest tests/kit/test_conformance_provincial_bigdata.py --tanpuhui-record``.
"""

from __future__ import annotations

from typing import Any

from tanpuhui.adapters.provincial_bigdata import plugin as provincial_plugin
from tanpuhui.adapters.provincial_bigdata.adapter import ProvincialBigDataAdapter
from tanpuhui.adapters.provincial_bigdata.sandbox import ProvincialSandbox
from tanpuhui.testing.conformance import LivePartner

from .sandbox_conformance import CASSETTES, FAST_RETRIES, SandboxConformance

# Fixed keys: replaying a sealed dataset needs the keys it was sealed with (test keys, nobody's real ones).
SM4_KEY = "0123456789abcdeffedcba9876543210"
MAC_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


class ProvincialConformance(SandboxConformance):
    """One subclass per dataset: its ``stream`` names the gateway path of its pages and its cassette folder."""

    plugin = provincial_plugin
    adapter = ProvincialBigDataAdapter
    base_url = "https://data-ah.sandbox.example"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        sandbox = partner.handle if partner is not None else None
        return {
            "base_url": base_url,
            "app_key": "ak-sandbox-340000",
            "app_secret": sandbox.app_secret if sandbox else "replayed-secret",
            "sm4_key_secret": SM4_KEY,
            "mac_key_secret": MAC_KEY,
            "page_size": 10,
            **FAST_RETRIES,
        }

    def open_sandbox(self) -> ProvincialSandbox:
        options: dict[str, Any] = {"sm4_key": SM4_KEY, "mac_key": MAC_KEY, "bad": {}}
        return ProvincialSandbox(7, days=8, purchases=24, households=3, installations=3, **options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.page_path = f"/{cls.stream}/records"
        cls.cassette_dir = CASSETTES / "provincial_bigdata" / cls.stream


class TestGreenAppliancesConformance(ProvincialConformance):
    stream = "green_appliances"


class TestWaterUsageConformance(ProvincialConformance):
    stream = "water_usage"


class TestGasUsageConformance(ProvincialConformance):
    stream = "gas_usage"


class TestRooftopPVConformance(ProvincialConformance):
    stream = "rooftop_pv"
