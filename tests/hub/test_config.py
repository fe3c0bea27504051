"""hub.toml: secrets only by reference to environment variables, every setting overridable by env, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tanpuhui.hub.config import load_config
from tanpuhui.sdk import ConfigError

HUB_TOML = """
[hub]
store = "var/hub.db"
pseudonym_keys = { env = "TANPUHUI_PSEUDONYM_KEYS" }

[adapters.transit_card]
base_url = "https://transit.hf.example.cn"
client_id = "anhui-hub"
client_secret = { env = "TRANSIT_CLIENT_SECRET" }
page_size = 50

[methodologies."tph.water.peak-saving"]
factors = { kwh_per_m3 = 0.42 }

[sinks.platform]
type = "http"
url = "https://carbon-account.ah.example.cn/hub/events"
secret = { env = "PLATFORM_WEBHOOK_SECRET" }
"""

ENV = {
    "TANPUHUI_PSEUDONYM_KEYS": "v1:Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyMTIzNDU2",
    "TRANSIT_CLIENT_SECRET": "hf-transit-2024",
    "PLATFORM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def write(folder: Path, text: str) -> Path:
    path = folder / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_env_references_are_resolved(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HUB_TOML), ENV)
    assert config.hub.pseudonym_keys == ENV["TANPUHUI_PSEUDONYM_KEYS"]
    assert config.adapters["transit_card"]["client_secret"] == "hf-transit-2024"
    assert config.sinks["platform"]["secret"] == ENV["PLATFORM_WEBHOOK_SECRET"]


def test_plain_settings_are_read_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HUB_TOML), ENV)
    assert config.adapters["transit_card"]["base_url"] == "https://transit.hf.example.cn"
    assert config.adapters["transit_card"]["page_size"] == 50
    assert config.methodologies["tph.water.peak-saving"].factors == {"kwh_per_m3": 0.42}


def test_env_references_default_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(write(tmp_path, HUB_TOML))
    assert config.adapters["transit_card"]["client_secret"] == "hf-transit-2024"


def test_literal_secret_is_rejected_naming_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, HUB_TOML.replace('{ env = "TRANSIT_CLIENT_SECRET" }', '"hf-transit-2024"'))
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    message = str(info.value)
    assert str(path) in message
    assert "adapters.transit_card.client_secret" in message
    assert "env" in message


@pytest.mark.parametrize(
    "text, named",
    [
        ('[hub]\npseudonym_keys = "v1:Zm9vYmFyZm9vYmFyZm9vYmFy"\n', r"hub\.pseudonym_keys"),
        (
            '[adapters.yrd_scenarios]\nwebhook_secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]\n',
            r"adapters\.yrd_scenarios\.webhook_secrets",
        ),
        (HUB_TOML + '\n[adaptors.state_grid]\nbase_url = "https://sgcc.example.cn"\n', r"unknown table\(s\) adaptors"),
        ('[hub]\nstroe = "var/hub.db"\n', r"hub\.stroe"),
        ('[hub]\nsynchronous = "OFF"\n', r"hub\.synchronous"),
        (
            HUB_TOML + '\n[forwarder]\ngive_up_after = "three days"\n',
            r"forwarder\.give_up_after: .*'three days' is not a duration",
        ),
    ],
    ids=[
        "literal pseudonym keys",
        "literal secret inside a list",
        "unknown top-level table",
        "unknown key in the hub table",
        "bad value",
        "forwarder duration that is not one",
    ],
)
def test_a_bad_setting_is_rejected_naming_its_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(write(tmp_path, text), ENV)


def test_missing_env_var_is_named(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "TRANSIT_CLIENT_SECRET"}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, HUB_TOML), env)
    assert "TRANSIT_CLIENT_SECRET" in str(info.value)
    assert "adapters.transit_card.client_secret" in str(info.value)


def test_env_override_scalar_stays_a_string_for_the_settings_model_to_coerce(tmp_path: Path) -> None:
    env = {
        **ENV,
        "TANPUHUI__ADAPTERS__TRANSIT_CARD__PAGE_SIZE": "200",
        "TANPUHUI__ADAPTERS__TRANSIT_CARD__REGION": "340100",
    }
    config = load_config(write(tmp_path, HUB_TOML), env)
    assert config.adapters["transit_card"]["page_size"] == "200"
    assert config.adapters["transit_card"]["region"] == "340100"


def test_env_override_array_is_parsed_as_toml(tmp_path: Path) -> None:
    env = {**ENV, "TANPUHUI__ADAPTERS__TRANSIT_CARD__PEAK_REGISTERS": '["PAP_R1", "PAP_R2"]'}
    config = load_config(write(tmp_path, HUB_TOML), env)
    assert config.adapters["transit_card"]["peak_registers"] == ["PAP_R1", "PAP_R2"]


def test_env_override_that_is_not_toml_is_a_string(tmp_path: Path) -> None:
    env = {**ENV, "TANPUHUI__ADAPTERS__TRANSIT_CARD__BASE_URL": "https://transit-backup.hf.example.cn"}
    config = load_config(write(tmp_path, HUB_TOML), env)
    assert config.adapters["transit_card"]["base_url"] == "https://transit-backup.hf.example.cn"


def test_env_override_can_add_a_setting_the_file_lacks(tmp_path: Path) -> None:
    env = {**ENV, "TANPUHUI__FORWARDER__BATCH_SIZE": "500"}
    assert load_config(write(tmp_path, HUB_TOML), env).forwarder.batch_size == 500


def test_secret_override_through_env_is_allowed(tmp_path: Path) -> None:
    env = {**ENV, "TANPUHUI__ADAPTERS__TRANSIT_CARD__CLIENT_SECRET": "rotated-2024-06"}
    config = load_config(write(tmp_path, HUB_TOML), env)
    assert config.adapters["transit_card"]["client_secret"] == "rotated-2024-06"


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[adapters.transit_card\nbase_url = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml", {})


def test_relative_store_path_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "tanpuhui"
    folder.mkdir(parents=True)
    config = load_config(write(folder, HUB_TOML), ENV)
    assert Path(config.store_path()) == folder.resolve() / "var" / "hub.db"


def test_absolute_store_path_is_kept(tmp_path: Path) -> None:
    store = tmp_path / "data" / "hub.db"
    config = load_config(write(tmp_path, f'[hub]\nstore = "{store.as_posix()}"\n'), {})
    assert Path(config.store_path()) == store


def test_sqlite_url_store_is_a_path(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[hub]\nstore = "sqlite:///var/hub.db"\n'), {})
    assert Path(config.store_path()) == tmp_path.resolve() / "var" / "hub.db"


def test_postgresql_url_is_a_dsn_not_a_path(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[hub]\nstore = "postgresql://hub@db/tanpuhui"\n'), {})
    assert config.store_dsn() == "postgresql://hub@db/tanpuhui"
    with pytest.raises(ConfigError, match="PostgreSQL URL, not a SQLite path"):
        config.store_path()


def test_other_database_urls_are_rejected(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[hub]\nstore = "mysql://hub@db/tanpuhui"\n'), {})
    assert config.store_dsn() is None
    with pytest.raises(ConfigError, match="unknown scheme 'mysql'"):
        config.store_path()


def test_forwarder_outage_settings_default_to_days_and_read_durations(tmp_path: Path) -> None:
    defaults = load_config(write(tmp_path, HUB_TOML), ENV).forwarder
    assert (defaults.give_up_after, defaults.max_backoff, defaults.attempts) == (3 * 86400.0, 300.0, 8)

    path = write(tmp_path, HUB_TOML + '\n[forwarder]\ngive_up_after = "12h"\nmax_backoff = "2m"\n')
    env = {**ENV, "TANPUHUI__FORWARDER__INITIAL_BACKOFF": "250ms"}
    forwarder = load_config(path, env).forwarder
    assert (forwarder.give_up_after, forwarder.max_backoff, forwarder.initial_backoff) == (43200.0, 120.0, 0.25)
