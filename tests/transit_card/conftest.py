"""Shared fixtures for the transit card adapter tests: a stream context, a small network, a mini pull loop."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tanpuhui.adapters.transit_card import TransactionsStream, TransitCardAdapter, TransitCardSettings
from tanpuhui.hub.config import HubConfig
from tanpuhui.hub.hub import Hub
from tanpuhui.hub.methodologies import BUILTIN_METHODOLOGIES
from tanpuhui.schemas import load_builtin
from tanpuhui.sdk import HttpOptions, ItemRejected, Problem, Pseudonymiser, Rejection, StreamContext
from tanpuhui.testing import SleepRecorder as FakeSleep

CASSETTES = Path(__file__).parent.parent / "cassettes" / "transit_card"
BASE_URL = "https://transit.sandbox.example"
KEYS = Pseudonymiser.parse("v1:" + base64.b64encode(bytes(range(1, 33))).decode())
METHODOLOGIES = {m.id: m for m in BUILTIN_METHODOLOGIES}
TRIP = Draft202012Validator(load_builtin("transit-card-trip"), format_checker=Draft202012Validator.FORMAT_CHECKER)
RECORD = Draft202012Validator(load_builtin("reduction-record"), format_checker=Draft202012Validator.FORMAT_CHECKER)


def metro_line(line_id: str, *stops: tuple[str, float] | tuple[str, str, float]) -> dict[str, Any]:
    """A metro line of a network document: its stops, ``(station, km)`` or ``(station, name, km)`` in order along
    the line, get the stop ids ``<line_id>-01``, ``<line_id>-02``..."""
    return {
        "line_id": line_id,
        "mode": "metro",
        "stops": [
            {"stop_id": f"{line_id}-{number:02d}", "station": station, **({"name": name[0]} if name else {}), "km": km}
            for number, (station, *name, km) in enumerate(stops, 1)
        ],
    }


# A slice of a Hefei-like network: M1 and M2 cross at Dadongmen (大东门), B126 is a bus line.
NETWORK: dict[str, Any] = {
    "version": "hf-test-1",
    "lines": [
        metro_line(
            "M1",
            ("hfhcz", "合肥火车站", 0),
            ("mgl", "明光路", 1.4),
            ("ddm", "大东门", 2.6),
            ("bgy", "包公园", 3.9),
            ("hgdnq", "合工大南区", 5.3),
        ),
        metro_line(
            "M2",
            ("wld", "五里墩", 0),
            ("sxk", "三孝口", 1.7),
            ("spl", "四牌楼", 2.9),
            ("ddm", "大东门", 4.0),
            ("yhgy", "瑶海公园", 5.8),
        ),
        {
            "line_id": "B126",
            "mode": "bus",
            "avg_trip_km": 4.2,
            "stops": [
                {"stop_id": "B126-01", "km": 0},
                {"stop_id": "B126-07", "km": 3.1},
                {"stop_id": "B126-12", "km": 6.4},
            ],
        },
    ],
}

CARD = "9900000123456789"
OTHER_CARD = "9900000987654321"


def make_settings(**overrides: Any) -> TransitCardSettings:
    values: dict[str, Any] = {
        "base_url": BASE_URL,
        "client_id": "tanpuhui-sandbox",
        "client_secret": "s3cr3t-for-tests",
    }
    return TransitCardSettings(**{**values, **overrides})


def make_ctx(state: dict[str, Any] | None = None) -> StreamContext:
    return StreamContext(
        adapter="transit_card",
        adapter_version=TransitCardAdapter.version,
        stream="transactions",
        pseudonymiser=KEYS,
        methodologies=METHODOLOGIES.__getitem__,
        state=state,
    )


def tap(
    deal_type: str,
    deal_time: str,
    stop_id: str,
    *,
    txn_id: str,
    card_no: str = CARD,
    line_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A transaction as the operator sends it."""
    item: dict[str, Any] = {
        "txn_id": txn_id,
        "card_no": card_no,
        "deal_time": deal_time,
        "deal_type": deal_type,
        "line_id": line_id or stop_id.split("-")[0],
        "stop_id": stop_id,
        "deal_value_fen": 0 if deal_type == "metro_in" else 200,
        "deal_money_fen": 0 if deal_type == "metro_in" else 180,
        "transfer": False,
        "region": "340100",
    }
    item.update(extra)
    return item


@pytest.fixture
def stream() -> Iterator[TransactionsStream]:
    adapter = TransitCardAdapter(make_settings())
    stream = adapter.stream("transactions")
    assert isinstance(stream, TransactionsStream)
    stream.use_network(NETWORK)
    yield stream


@pytest.fixture
def ctx() -> StreamContext:
    return make_ctx()


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def adapter_factory(fake_sleep: FakeSleep) -> Callable[..., TransitCardAdapter]:
    def build(**overrides: Any) -> TransitCardAdapter:
        return TransitCardAdapter(make_settings(**overrides), HttpOptions(sleep=fake_sleep))

    return build


@dataclass
class Pulled:
    """What the mini pull loop saw: the hub's view of one run, without a store."""

    records: list[dict[str, Any]] = field(default_factory=list)
    schema_invalid: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], list[Problem]]] = field(default_factory=list)
    given_up: list[Rejection] = field(default_factory=list)
    cursors: list[Any] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    items: int = 0


async def pull(stream: TransactionsStream, ctx: StreamContext, cursor: Any = None) -> Pulled:
    """Drive ``pages`` like the hub does: validate each raw item, normalize, flush after each page."""
    out = Pulled()
    async for page in stream.pages(ctx, cursor):
        out.requests.append(page.request)
        for item in page.items:
            out.items += 1
            if not TRIP.is_valid(item):
                out.schema_invalid.append(item)
                continue
            try:
                out.records.extend(dict(r) for r in stream.normalize(item, ctx))
            except ItemRejected as exc:
                out.rejected.append((item, exc.problems))
        out.records.extend(dict(r) for r in stream.flush(ctx, final=False))
        out.cursors.append(page.cursor)
    out.records.extend(dict(r) for r in stream.flush(ctx, final=True))
    out.given_up.extend(ctx.rejections)
    ctx.rejections.clear()
    return out


HUB_KEYS = "v1:" + base64.b64encode(bytes(range(100, 132))).decode()
HubFactory = Callable[..., Hub]


@pytest.fixture
def make_hub(tmp_path: Path, fake_sleep: FakeSleep) -> HubFactory:
    def make(
        base_url: str, client_id: str, client_secret: str, *, hub: dict[str, Any] | None = None, **settings: Any
    ) -> Hub:
        config = HubConfig.from_dict(
            {
                "hub": {
                    "store": str(tmp_path / "hub.db"),
                    "pseudonym_keys": {"env": "TEST_PSEUDONYM_KEYS"},
                    **(hub or {}),
                },
                "adapters": {
                    "transit_card": {
                        "base_url": base_url,
                        "client_id": client_id,
                        "client_secret": {"env": "TEST_TRANSIT_SECRET"},
                        "page_size": 250,
                        **settings,
                    }
                },
            },
            source="test hub.toml",
            environ={"TEST_PSEUDONYM_KEYS": HUB_KEYS, "TEST_TRANSIT_SECRET": client_secret},
        )
        return Hub(config, http=HttpOptions(sleep=fake_sleep))

    return make
