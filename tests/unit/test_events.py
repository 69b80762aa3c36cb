"""The events module is the log contract: emitters, ops/README.md and real lines agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.ops_scenario import scenario_events

from freshtoken import events
from freshtoken.refresh import grants, service

README = Path(__file__).resolve().parents[2] / "ops" / "README.md"


def _readme_fields(event: str) -> set[str]:
    """The field names of the ``### `event` — ...`` table in ops/README.md."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### `{event}`")
    end = text.find("\n### ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    names: set[str] = set()
    for row in re.findall(r"^\| (`[^|]+) \|", section, flags=re.MULTILINE):
        names.update(re.findall(r"`([a-z_]+)`", row))
    return names


def test_the_refresh_service_uses_the_same_triggers_outcomes_and_error_classes() -> None:
    """The refresh service re-exports the event contract (one definition, in events.py)."""
    assert service.TRIGGERS == events.TRIGGERS
    assert service.OUTCOMES == events.OUTCOMES
    assert {grants.PERMANENT, grants.TRANSIENT} == set(events.ERROR_CLASSES)


def test_field_sets_are_the_ones_ops_readme_documents() -> None:
    """Each event with a table in ops/README.md has exactly the fields that table lists."""
    for event in (events.TOKEN_REFRESH, events.REFRESH_SCAN, events.WEBHOOK_DELIVERY):
        assert _readme_fields(event) == events.FIELDS[event], event


def test_real_lines_carry_only_contract_fields_and_values() -> None:
    """A real run's lines of each contracted event use only its fields and enumerated values."""
    seen: set[str] = set()
    for line in scenario_events():
        event = line.get("event")
        if event not in events.FIELDS:
            continue
        seen.add(event)
        assert set(line) - events.COMMON_FIELDS <= events.FIELDS[event], (event, sorted(line))
        if event == events.TOKEN_REFRESH:
            assert line["trigger"] in events.TRIGGERS
            assert line["outcome"] in events.OUTCOMES
            assert line["error_class"] in (None, *events.ERROR_CLASSES)
        if event == events.WEBHOOK_DELIVERY:
            assert line["outcome"] in events.WEBHOOK_OUTCOMES
    assert seen == set(events.FIELDS)
