"""What the command-line tests share: ``tanpuhui`` run in-process, and a hub.toml for the transit sandbox with a
JSON Lines archive and an HTTP platform sink (secrets from the environment it returns)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
from tanpuhui.hub.cli import main
from tanpuhui.hub.demo import to_toml

KEYS = "v1:" + base64.b64encode(bytes(range(32))).decode()
WHSEC = "whsec_" + base64.b64encode(b"consumer-secret-for-cli-tests!!").decode()


TANPUHUI = str(Path(sys.executable).parent / "tanpuhui")


def tanpuhui(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``tanpuhui ARGS --config CONFIG`` as a real process (a command that forks, or that a test kills), with
    ``env`` added to this environment."""
    return subprocess.run(
        [TANPUHUI, *args, "--config", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def invoke(*args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``tanpuhui ARGS``: exit code, stdout, stderr (an unexpected exception fails the test with its traceback)."""
    result = CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def transit_config(
    tmp_path: Path, sandbox: TransitSandbox, consumer_url: str, *, hub: dict[str, Any] | None = None, **adapter: Any
) -> tuple[Path, dict[str, str]]:
    """``tmp_path/hub.toml`` (store ``hub.db`` beside it; one delivery attempt per sink, no retries) and the
    environment holding its secrets. ``hub``: more ``[hub]`` keys; ``adapter``: more ``[adapters.transit_card]``
    keys."""
    document = {
        "hub": {"store": "hub.db", "pseudonym_keys": {"env": "T_KEYS"}, **(hub or {})},
        "forwarder": {"attempts": 1, "give_up_after": 0},
        "adapters": {
            "transit_card": {
                "base_url": sandbox.url,
                "client_id": sandbox.client_id,
                "client_secret": {"env": "T_TRANSIT_SECRET"},
                **adapter,
            }
        },
        "sinks": {
            "archive": {"type": "jsonl", "path": "out/records.jsonl"},
            "platform": {"type": "http", "url": consumer_url, "secret": {"env": "T_CONSUMER_SECRET"}},
        },
    }
    config = tmp_path / "hub.toml"
    config.write_text(to_toml(document), encoding="utf-8")
    return config, {"T_KEYS": KEYS, "T_TRANSIT_SECRET": sandbox.client_secret, "T_CONSUMER_SECRET": WHSEC}
