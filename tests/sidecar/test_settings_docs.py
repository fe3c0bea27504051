"""Every ``[server]`` key is in the operator guide's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tanpuhui.hub.server.settings import ServerSettings

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operator-guide.md"


@pytest.mark.parametrize("key", sorted(set(ServerSettings.model_fields) - {"schedules"}))
def test_every_server_key_is_documented(key: str) -> None:
    rows = [line for line in GUIDE.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    assert any(f"`{key}`" in row.split(" | ")[0] for row in rows), f"docs/operator-guide.md: no row for [server] {key}"
