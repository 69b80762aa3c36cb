"""The command line: thin shells over the runtime (refresh, db, keys, config errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support import (
    ENCRYPTION_KEY,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
)

from freshtoken.cli import main
from freshtoken.mockprovider import MockProvider


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a CLI run on a SQLite file in tmp_path."""
    values = {
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_DATABASE_URL": f"sqlite:///{tmp_path.as_posix()}/test.db",
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_refresh_command_forces_one_refresh(env: dict[str, str], tmp_path: Path) -> None:
    """`freshtoken refresh PCK CID` refreshes, prints the outcome as JSON, and never the token."""
    rt = make_runtime(make_settings(tmp_path))
    with MockProvider() as provider:
        _, family = add_oauth2_connection(rt, provider, connection_id="c1")
        result = CliRunner().invoke(main, ["refresh", "mock", "c1"], env=env)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output.strip().splitlines()[-1])
        assert report["outcome"] == "success"
        assert provider.stats()["refresh_calls"] == 1
        assert family["access_token"] not in result.output
        provider.inject("invalid_grant")
        failed = CliRunner().invoke(main, ["refresh", "mock", "c1"], env=env)
        assert failed.exit_code == 1
        assert json.loads(failed.output.strip().splitlines()[-1])["error_code"] == "invalid_grant"
    missing = CliRunner().invoke(main, ["refresh", "mock", "nope"], env=env)
    assert missing.exit_code == 2


def test_db_upgrade_and_check(env: dict[str, str]) -> None:
    """`db upgrade` migrates an empty database and `db check` then finds no drift."""
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    check = CliRunner().invoke(main, ["db", "check"], env=env)
    assert check.exit_code == 0 and "matches" in check.output


def test_keys_generate_prints_usable_keys() -> None:
    """`keys generate` prints a 32-byte base64 encryption key and a secret key."""
    import base64

    result = CliRunner().invoke(main, ["keys", "generate"])
    lines = dict(line.split("=", 1) for line in result.output.strip().splitlines())
    assert len(base64.b64decode(lines["FRESHTOKEN_ENCRYPTION_KEY"])) == 32
    assert lines["FRESHTOKEN_SECRET_KEY"].startswith("ft_sk_")


def test_bad_providers_entry_is_skipped_not_fatal(env: dict[str, str], tmp_path: Path) -> None:
    """One entry with an unknown auth_mode is skipped: start-up goes on (issue #12)."""
    bad = tmp_path / "providers.yaml"
    bad.write_text("acme:\n  auth_mode: MAGIC\n  token_url: https://acme.test/token\n")
    result = CliRunner().invoke(
        main, ["db", "upgrade"], env={**env, "FRESHTOKEN_PROVIDERS_FILE": str(bad)}
    )
    assert result.exit_code == 0, result.output


def test_providers_file_that_is_not_a_catalog_stops_start_up(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A providers file that is not a mapping of entries stops start-up naming the file."""
    bad = tmp_path / "providers.yaml"
    bad.write_text("- acme\n- other\n")
    result = CliRunner().invoke(
        main, ["db", "upgrade"], env={**env, "FRESHTOKEN_PROVIDERS_FILE": str(bad)}
    )
    assert result.exit_code == 2
    message = result.output.strip()
    assert "providers.yaml" in message and "top level must be a mapping" in message


def test_providers_check_lists_loaded_and_skipped_by_auth_mode(tmp_path: Path) -> None:
    """`freshtoken providers check FILE` counts by auth mode and names each skip with why."""
    path = tmp_path / "providers.yaml"
    path.write_text(
        "good:\n  auth_mode: OAUTH2\n  token_url: https://good.test/token\n"
        "alias-of-good:\n  alias: good\n  display_name: Alias\n"
        "mcp:\n  auth_mode: MCP_OAUTH2\n"
        "broken:\n  auth_mode: OAUTH2\n"
    )
    result = CliRunner().invoke(main, ["providers", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: 2 loaded (1 through alias), 2 skipped" in result.output
    assert "mcp (MCP_OAUTH2): auth_mode MCP_OAUTH2 is not served by freshtoken" in result.output
    assert "broken (OAUTH2): auth_mode OAUTH2 requires a token_url" in result.output
    not_a_catalog = tmp_path / "list.yaml"
    not_a_catalog.write_text("- a\n")
    failed = CliRunner().invoke(main, ["providers", "check", str(not_a_catalog)])
    assert failed.exit_code == 2


def test_production_without_keys_is_one_line_error(env: dict[str, str]) -> None:
    """In production a missing key is a one-line error naming the variable, exit code 2."""
    result = CliRunner().invoke(
        main,
        ["db", "upgrade"],
        env={**env, "FRESHTOKEN_ENV": "production", "FRESHTOKEN_SECRET_KEY": ""},
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "FRESHTOKEN_SECRET_KEY" in result.output
