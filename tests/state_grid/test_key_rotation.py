"""A pseudonym key rotation between two runs does not restart a household's reading chain or its trailing baseline:
the state kept under the pseudonym by the earlier key is found and moved to the current one."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tanpuhui.hub.hub import Hub
from tanpuhui.sdk import Pseudonymiser

from .conftest import Household, HubFactory, feed
from .test_no_double_credit import ROTATED, WEEK

V2 = "v2:" + base64.b64encode(bytes(range(101, 133))).decode()
"""The rotated key alone: the earlier one dropped, as an operator does once no state needs it."""


def savings(hub: Hub) -> list[dict[str, Any]]:
    return [
        d
        for d in (orjson.loads(r.body) for r in hub.store.read_outbox(0, 1000))
        if d["scenario"] == "peak_electricity_saving"
    ]


def test_the_day_after_a_key_rotation_is_credited_against_the_trailing_week_kept_before_it(
    make_hub: HubFactory,
) -> None:
    home = Household()
    week, day = home.week(WEEK), home.use(3.0, total=9.5).reading()
    feed(make_hub(), week)  # the week's readings, pseudonymised under v1
    after = make_hub(keys=ROTATED)  # the next run: v2 current, v1 kept
    feed(after, [day])
    (credited,) = savings(after)
    assert credited["subject"]["key_version"] == "v2"
    assert credited["quantification"]["baseline"]["quantity"] == 4.0  # the week's trailing average, kept
    assert credited["activity"]["quantity"] == 3.0
    state = after.store.load_checkpoint("state_grid", "readings").state
    assert list(state["households"]) == [credited["subject"]["pseudonym"]]  # moved to the v2 pseudonym


def test_without_the_earlier_key_the_household_starts_over(make_hub: HubFactory) -> None:
    home = Household()
    week, day = home.week(WEEK), home.use(3.0, total=9.5).reading()
    feed(make_hub(), week)
    only_v2 = make_hub(keys=Pseudonymiser.parse(V2))
    feed(only_v2, [day])
    assert savings(only_v2) == []  # a new anchor: the household cannot be recognised (as after dropping a key)
