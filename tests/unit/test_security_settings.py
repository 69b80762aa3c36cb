"""Weak keys, redaction of short secrets, and file permissions (issue 10, rows 7 and 10)."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshtoken import logs, migrate
from freshtoken.errors import ConfigError
from freshtoken.runtime import build_runtime
from freshtoken.settings import (
    Settings,
    generate_key,
    generate_secret_key,
    load_settings,
    resolve_dev_keys,
)

STRONG = generate_secret_key()
ZERO_KEY = base64.b64encode(bytes(32)).decode()


def _production(tmp_path: Path, **values: str) -> Settings:
    base = {"secret_key": STRONG, "encryption_key": generate_key(), **values}
    return Settings(env="production", data_dir=tmp_path, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"secret_key": "a"}, "FRESHTOKEN_SECRET_KEY"),
        ({"secret_key": "a" * 64}, "FRESHTOKEN_SECRET_KEY"),
        ({"secret_key": "password" * 4}, "FRESHTOKEN_SECRET_KEY"),
        ({"encryption_key": ZERO_KEY}, "FRESHTOKEN_ENCRYPTION_KEY"),
        ({"encryption_old_keys": base64.b64encode(b"\xff" * 32).decode()}, "OLD_KEYS"),
    ],
    ids=["one-char", "repeated-char", "repeated-word", "all-zero-key", "all-ff-old-key"],
)
def test_production_refuses_weak_keys(
    tmp_path: Path, values: dict[str, str], variable: str
) -> None:
    """FRESHTOKEN_SECRET_KEY=a, a repeated word or an all-zero encryption key stop start-up."""
    with pytest.raises(ConfigError) as info:
        resolve_dev_keys(_production(tmp_path, **values))
    assert variable in str(info.value)
    assert "\n" not in str(info.value)


def test_production_accepts_generated_and_hex_keys(tmp_path: Path) -> None:
    """Keys from `freshtoken keys generate` and a random 32-char hex key are accepted."""
    resolve_dev_keys(_production(tmp_path))
    resolve_dev_keys(_production(tmp_path, secret_key=os.urandom(16).hex()))


def test_development_still_accepts_a_short_key(tmp_path: Path) -> None:
    """Development keeps working with whatever key the developer set."""
    settings = Settings(data_dir=tmp_path, secret_key="a", encryption_key=generate_key())  # type: ignore[arg-type]
    assert resolve_dev_keys(settings)[0].secret_key_value() == "a"


@pytest.fixture
def _restore_registered() -> Iterator[None]:
    saved = set(logs._registered)
    yield
    logs._registered.clear()
    logs._registered.update(saved)


@pytest.mark.usefixtures("_restore_registered")
def test_short_registered_secret_is_redacted() -> None:
    """A registered secret is scrubbed whatever its length (was: only 8 characters and up)."""
    logs.register_secret("k3y9")
    assert logs.scrub_text("auth with k3y9 failed") == "auth with [REDACTED] failed"


# -- row 10: file permissions ----------------------------------------------------------------


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Run under the common 022 umask (what makes files 0644 unless freshtoken says otherwise)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
def test_keys_file_is_0600_even_over_a_leftover_0644_tmp(tmp_path: Path) -> None:
    """A pre-existing 0644 keys.tmp does not make keys.json 0644; the data dir ends 0700."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 - the lax mode an older version left behind
    leftover = data / "keys.tmp"
    leftover.write_text("{}")
    os.chmod(leftover, 0o644)
    load_settings(data_dir=data)
    assert _mode(data / "keys.json") == 0o600
    assert _mode(data) == 0o700


@pytest.mark.usefixtures("usual_umask")
def test_sqlite_files_and_data_dir_are_private(tmp_path: Path) -> None:
    """The SQLite database and its -wal/-shm files are 0600, the data dir 0700 (were 0644/0755)."""
    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    runtime = build_runtime(settings, with_refresher=False)
    try:
        migrate.upgrade(runtime.engine)
        with runtime.store() as store:
            store.create_integration(unique_key="k", provider="oauth2", client_id="c")
        files = sorted(p.name for p in data.iterdir() if p.name.startswith("freshtoken.db"))
        assert "freshtoken.db" in files
        for name in files:
            assert _mode(data / name) == 0o600, name
        assert _mode(data) == 0o700
    finally:
        runtime.close()


@pytest.mark.usefixtures("usual_umask")
def test_existing_0644_database_is_tightened(tmp_path: Path) -> None:
    """A database file left 0644 by an older version is made 0600 at start-up."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "freshtoken.db"
    db.touch()
    os.chmod(db, 0o644)
    runtime = build_runtime(load_settings(data_dir=data), with_refresher=False)
    runtime.close()
    assert _mode(db) == 0o600
