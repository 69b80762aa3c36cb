"""`freshtoken report`: "latest attempt" by timestamp whatever the file order; format hints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from freshtoken.logs import console_renderer
from freshtoken.ops_report import collect, report


def _refresh(ts: str, connection_id: str, outcome: str, **fields: Any) -> str:
    line: dict[str, Any] = {
        "connection_id": connection_id,
        "connection_pk": 1,
        "provider_config_key": "hubspot-prod",
        "provider": "hubspot",
        "trigger": "scheduled",
        "outcome": outcome,
        "error_code": "invalid_grant" if outcome == "failed" else None,
        "error_class": "permanent" if outcome == "failed" else None,
        "http_status": 400 if outcome == "failed" else None,
        "duration_ms": 10.0,
        "seconds_to_expiry": 600.0,
        "attempt": 1,
        "log_id": f"log-{connection_id}-{ts[14:19]}",
        "event": "token.refresh",
        "level": "info",
        "logger": "freshtoken.refresh",
        "timestamp": ts,
    }
    line.update(fields)
    return json.dumps(line)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    """An older run (a fails, b succeeds) and a newer one (a succeeds, b fails twice)."""
    older = tmp_path / "run.jsonl"
    newer = tmp_path / "demo2.jsonl"
    older.write_text(
        "\n".join(
            [
                _refresh("2026-03-01T10:00:01.000000Z", "a", "failed"),
                _refresh("2026-03-01T10:00:02.000000Z", "b", "success"),
                _refresh("2026-03-01T10:00:03.000000Z", "c", "failed"),
            ]
        )
        + "\n"
    )
    newer.write_text(
        "\n".join(
            [
                _refresh("2026-03-01T11:00:01.000000Z", "a", "success"),
                _refresh("2026-03-01T11:00:02.000000Z", "b", "failed"),
                _refresh("2026-03-01T11:00:05.000000Z", "b", "failed"),
                _refresh("2026-03-01T11:00:03.000000Z", "c", "skipped_fresh"),
            ]
        )
        + "\n"
    )
    return older, newer


@pytest.mark.parametrize("newest_first", [False, True])
def test_latest_attempt_is_decided_by_timestamp_not_file_order(
    tmp_path: Path, newest_first: bool
) -> None:
    """Both orders of the same files give the same failing connections and latest errors."""
    older, newer = _files(tmp_path)
    paths = (newer, older) if newest_first else (older, newer)
    failing = collect(paths).failing_connections()
    assert [f.connection_id for f in failing] == ["b"]
    assert failing[0].last_failure == "2026-03-01T11:00:05.000000Z"
    assert failing[0].log_id == "log-b-00:05"
    assert failing[0].failures == 2


def test_report_command_output_is_the_same_in_both_orders(tmp_path: Path) -> None:
    """`report run.log demo2.log` and `report demo2.log run.log` print the same summary."""
    older, newer = _files(tmp_path)
    runner = CliRunner()
    one = runner.invoke(report, [str(older), str(newer)])
    two = runner.invoke(report, [str(newer), str(older)])
    assert one.exit_code == 0 and two.exit_code == 0
    assert one.stdout == two.stdout
    assert "Failing connections (latest attempt failed): 1;" in one.stdout


def test_console_format_logs_get_a_hint_naming_the_json_format(tmp_path: Path) -> None:
    """Console-format lines are not silently "malformed": the report says which format it reads."""
    rendered = [
        console_renderer(
            None, "info", json.loads(_refresh(f"2026-03-01T10:00:0{i}.0Z", "a", "success"))
        )
        for i in range(3)
    ]
    log = tmp_path / "console.txt"
    log.write_text("\n".join(rendered) + "\n")
    result = CliRunner().invoke(report, [str(log)])
    assert result.exit_code == 0
    assert "events 0, malformed 3" in result.stdout
    assert "3 lines are in freshtoken's console format" in result.stdout
    assert "FRESHTOKEN_LOG_FORMAT=json" in result.stdout


def test_other_unreadable_logs_say_which_format_is_expected(tmp_path: Path) -> None:
    """Text that is neither JSON nor console lines: the report names the JSON format."""
    log = tmp_path / "other.txt"
    log.write_text("hello\nworld\n")
    result = CliRunner().invoke(report, [str(log)])
    assert "no freshtoken JSON line found" in result.stdout
