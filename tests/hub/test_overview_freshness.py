"""The overview's freshness: a pull stream's is the time since its last successful run, a push stream's the time
since its last accepted webhook request — not since the sidecar started, nor since a quarantine replay touched its
checkpoint."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tanpuhui.hub.console.overview import overview
from tanpuhui.hub.store.base import Checkpoint, NewReceipt, PageWrite
from tanpuhui.hub.store.sqlite import SQLiteStore


def test_push_freshness_counts_from_the_newest_accepted_webhook_request(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "hub.db")
    try:
        receipt = NewReceipt("msg_2024_0001", "ab" * 32, 200, b'{"accepted":1}')
        store.commit_pages([PageWrite("bike_share", "rides", [], [], Checkpoint(None), receipt=receipt)])
        store.commit_pages([PageWrite("transit_card", "trips", [], [], Checkpoint("c-1"))])
        [newest] = store.recent_receipts("bike_share", "rides", 1)
        received = newest.created_at
        # Later, a quarantine replay (no webhook request) commits to the push stream's checkpoint.
        store.commit_pages([PageWrite("bike_share", "rides", [], [], Checkpoint(None, {"replayed": 1}))])
        later = datetime.fromisoformat(received) + timedelta(minutes=10)
        data = overview(
            store,
            {("bike_share", "rides"): "push", ("transit_card", "trips"): "pull", ("bike_share", "quiet"): "push"},
            schedules={},
            sinks=[],
            stale_after=3600,
            now=later,
        )
    finally:
        store.close()
    rows = {(s.adapter, s.stream): s for s in data.streams}
    push = rows[("bike_share", "rides")]
    assert push.last_success == received
    assert push.freshness_seconds is not None and abs(push.freshness_seconds - 600) < 0.01
    assert not push.stale  # the threshold is for pull streams
    assert rows[("bike_share", "quiet")].freshness_seconds is None  # never received anything
    pull = rows[("transit_card", "trips")]
    assert pull.freshness_seconds is not None and 590 < pull.freshness_seconds < 610
