"""The suite records its scenario cassettes from a loopback sandbox, and replays what it recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tanpuhui.testing.conformance import SCENARIOS, Harness

from . import test_conformance_oauth_partners as partners


def test_recording_writes_every_scenario_and_the_replay_passes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = partners.TestTransitCardConformance()
    suite.cassette_dir = tmp_path / "cassettes"  # type: ignore[misc]  # this instance records elsewhere
    monkeypatch.setenv("TANPUHUI_RECORD", "1")
    harness = Harness(suite, tmp_path / "record", request.config)
    try:
        assert harness.recording and harness.live
        suite.test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(harness)
        suite.test_429_is_retried_after_retry_after(harness)
        suite.test_a_5xx_is_retried_and_loses_nothing(harness)
        suite.test_a_401_reauthenticates_once_and_loses_nothing(harness)
        suite.test_an_empty_page_adds_nothing_and_keeps_the_cursor(harness)
    finally:
        harness.close()
    assert sorted(p.stem for p in (tmp_path / "cassettes").iterdir()) == sorted(SCENARIOS)
    for cassette in (tmp_path / "cassettes").iterdir():
        # recorded against 127.0.0.1:<port>, written under the stable base URL
        assert "127.0.0.1" not in cassette.read_text(encoding="utf-8")

    monkeypatch.delenv("TANPUHUI_RECORD")
    replay = Harness(suite, tmp_path / "replay", request.config)
    assert not replay.live
    suite.test_resume_after_a_failure_at_page_n_loses_and_duplicates_nothing(replay)
    suite.test_a_401_reauthenticates_once_and_loses_nothing(replay)
    suite.test_an_empty_page_adds_nothing_and_keeps_the_cursor(replay)
