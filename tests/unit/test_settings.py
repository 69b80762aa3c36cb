"""Settings: one object from FRESHTOKEN_* variables; production refuses to start without keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshtoken.bootstrap import settings_from_env
from freshtoken.errors import ConfigError
from freshtoken.settings import Settings, generate_key, load_settings, resolve_dev_keys


def test_defaults_are_embedded_sqlite(tmp_path: Path) -> None:
    """Without configuration the database is a SQLite file under the data dir and Redis is off."""
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/freshtoken.db"
    assert settings.embedded


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Variables use the FRESHTOKEN_ prefix, and an empty Redis URL means embedded mode."""
    monkeypatch.setenv("FRESHTOKEN_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("FRESHTOKEN_REDIS_URL", "")
    monkeypatch.setenv("FRESHTOKEN_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, "FRESHTOKEN_SECRET_KEY"),
        ({"secret_key": "sk-test-123456"}, "FRESHTOKEN_ENCRYPTION_KEY"),
    ],
)
def test_production_requires_keys(tmp_path: Path, present: dict[str, str], missing: str) -> None:
    """In production a missing key stops start-up with one line naming the variable."""
    settings = Settings(env="production", data_dir=tmp_path, **present)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        resolve_dev_keys(settings)
    assert missing in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "keys.json").exists()


def test_development_generates_keys_once(tmp_path: Path) -> None:
    """In development both keys are generated once, kept in a 0600 file, and reused."""
    first = load_settings(data_dir=tmp_path)
    second = load_settings(data_dir=tmp_path)
    assert first.secret_key_value() == second.secret_key_value()
    assert first.encryption_keys()[0] == second.encryption_keys()[0]
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_bad_encryption_key_names_the_variable(tmp_path: Path) -> None:
    """A key that is not base64 of 32 bytes is a one-line error naming the variable."""
    settings = Settings(data_dir=tmp_path, secret_key="k" * 20, encryption_key="c2hvcnQ=")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="FRESHTOKEN_ENCRYPTION_KEY"):
        resolve_dev_keys(settings)
    settings = Settings(
        data_dir=tmp_path,
        secret_key="k" * 20,  # type: ignore[arg-type]
        encryption_key=generate_key(),  # type: ignore[arg-type]
        encryption_old_keys="!!notbase64",  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError, match="FRESHTOKEN_ENCRYPTION_OLD_KEYS"):
        resolve_dev_keys(settings)


def test_lock_ttl_must_outlive_http_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock TTL not longer than the HTTP timeouts is rejected with the variable's name."""
    monkeypatch.setenv("FRESHTOKEN_LOCK_TTL_SECONDS", "10")
    monkeypatch.setenv("FRESHTOKEN_HTTP_READ_TIMEOUT", "15")
    with pytest.raises(ConfigError, match="FRESHTOKEN_LOCK_TTL_SECONDS"):
        settings_from_env()
