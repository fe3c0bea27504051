"""The pull path with hostile items: each fails alone (quarantined, showable) and the run commits the rest.

Pages reach the pipeline as Python objects, so a stream can hand over what no JSON text holds: NaN and infinities,
lone surrogates, integers past 64 bits, nesting deeper than orjson writes, objects that are not JSON at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from one_stream import OnePage, closing_hub

from tanpuhui.hub.hub import Hub
from tanpuhui.hub.privacy_view import masked
from tanpuhui.hub.store.base import Checkpoint
from tanpuhui.sdk import PullStream, StreamContext

OneStreamHub = Callable[[str, type[PullStream]], Hub]


def trip(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"T{n:05d}", "card": f"9900{n:08d}", "start": "2024-11-05T08:00:00+08:00", "km": 4.2, **extra}


def nested(depth: int) -> Any:
    return wrapped(1, depth)


def wrapped(value: Any, depth: int) -> Any:
    """``value`` inside ``depth`` lists."""
    for _ in range(depth):
        value = [value]
    return value


class Hostile(OnePage):
    """One page: good trips around the hostile ones in ``items``."""

    name = "trips"
    schema = "hostile-trip"
    id_field = "id"

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[dict[str, Any]]:
        yield ctx.record(
            raw=item,
            partner_record_id=str(item["id"]),
            subject=ctx.subject("card", str(item["card"])),
            scenario="bus",
            start=datetime.fromisoformat(item["start"]),
            region="340100",
            activity=float(item["km"]),
            methodology="tph.transit.bus",
        )


def pull(hub: Hub) -> Any:
    (summary,) = asyncio.run(hub.pull("hostile_partner", "trips"))
    return summary


HOSTILE = {
    "a lone surrogate": trip(2, note=json.loads('"\\udc80 in the middle"')),
    "a surrogate in a key": trip(2, **{json.loads('"\\ud83d"'): 1}),
    "an integer past 64 bits": trip(2, extra=2**100),
    "nesting 300 deep": trip(2, extra=nested(300)),
    "nesting 3000 deep": trip(2, extra=nested(3000)),
    "an object that is not JSON": trip(2, extra=object()),
    "a surrogate in the partner id": {**trip(2), "id": json.loads('"T\\ud800"')},
    "a surrogate in the card": {**trip(2), "card": json.loads('"99\\ud800"')},
}
"""Items no record can be written for: each is quarantined."""
HARMLESS = {"NaN": trip(4, extra=float("nan")), "infinity": trip(5, extra=float("-inf"))}
"""Written as null (orjson's way): the items are taken."""


def test_each_hostile_item_is_quarantined_alone_and_the_run_commits_the_rest(one_stream_hub: OneStreamHub) -> None:
    Hostile.items = [trip(1), *HOSTILE.values(), *HARMLESS.values(), trip(3)]
    with closing_hub(one_stream_hub("hostile_partner", Hostile)) as hub:
        summary = pull(hub)
        assert summary.error is None
        assert summary.pulled == len(Hostile.items)
        assert (summary.inserted, summary.quarantined) == (2 + len(HARMLESS), len(HOSTILE))
        entries = hub.store.quarantine_list(None, "open", 100)
        assert len(entries) == len(HOSTILE)
        for entry in entries:
            assert entry.problems and entry.partner_record_id.startswith("T")
            masked(hub.quarantine_raw(entry), {})  # sealed as JSON that reads back (lossy where it had to be)
        assert hub.store.load_checkpoint("hostile_partner", "trips").cursor == "end"


hostile_leaves = st.one_of(
    st.floats(),  # NaN and infinities included
    st.integers(min_value=-(2**300), max_value=2**300),
    st.text(st.characters(codec=None), max_size=12),  # lone surrogates included
    st.none(),
    st.booleans(),
)
hostile_values = st.recursive(
    hostile_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(st.characters(codec=None), max_size=4), inner, max_size=3)
    ),
    max_leaves=20,
)


def test_fuzzed_items_never_stop_a_pull(one_stream_hub: OneStreamHub) -> None:
    hub = one_stream_hub("hostile_partner", Hostile)

    @settings(max_examples=80, deadline=None)
    @given(value=hostile_values, depth=st.integers(min_value=0, max_value=600), n=st.integers(10, 10**6))
    def check(value: Any, depth: int, n: int) -> None:
        Hostile.items = [trip(n, extra=wrapped(value, depth))]
        hub.store.commit_page("hostile_partner", "trips", [], [], Checkpoint())  # forget the cursor: pull again
        summary = pull(hub)
        assert summary.error is None
        # Each item has exactly one outcome; hypothesis may build the same bad item twice (wrapped([], 565) ==
        # wrapped([[]], 564)), and the second time it is a repeat of its quarantine entry, not a new one.
        assert summary.inserted + summary.duplicates + summary.quarantined + summary.quarantine_repeats == 1

    with closing_hub(hub):
        check()


def test_the_same_bad_item_pulled_again_is_one_quarantine_entry_seen_twice(one_stream_hub: OneStreamHub) -> None:
    Hostile.items = [trip(1), trip(2, extra=2**100), trip(3)]
    with closing_hub(one_stream_hub("hostile_partner", Hostile)) as hub:
        first = pull(hub)
        hub.store.commit_page("hostile_partner", "trips", [], [], Checkpoint())  # the partner's feed again
        second = pull(hub)
        assert (first.quarantined, first.quarantine_repeats) == (1, 0)
        assert (second.quarantined, second.quarantine_repeats, second.duplicates) == (0, 1, 2)
        (entry,) = hub.store.quarantine_list(None, "open", 100)
        assert (entry.partner_record_id, entry.repeats) == ("T00002", 1)
