"""The webhook settings: off by default, Nango's switches on, empty URLs mean unset."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshtoken.settings import Settings
from freshtoken.store.models import Connection
from freshtoken.webhooks.outbox import WebhookConfig


def test_webhooks_are_off_by_default_and_every_switch_is_on(tmp_path: Path) -> None:
    """No URL: nothing is sent; the four switches default to on, as new Nango environments."""
    config = WebhookConfig.from_settings(Settings(data_dir=tmp_path))
    assert not config.enabled
    assert config.targets(Connection(webhook_url_override="http://x/override")) == []
    assert all(
        config.wants(op, ok)
        for op, ok in (
            ("creation", True),
            ("override", True),
            ("refresh", False),
            ("refresh", True),
        )
    )


def test_variables_configure_urls_and_switches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """FRESHTOKEN_WEBHOOK_* variables; an empty secondary URL (as compose passes) is unset."""
    monkeypatch.setenv("FRESHTOKEN_WEBHOOK_URL", "https://hooks.example.com/nango")
    monkeypatch.setenv("FRESHTOKEN_WEBHOOK_SECONDARY_URL", "")
    monkeypatch.setenv("FRESHTOKEN_WEBHOOK_ON_AUTH_REFRESH_RECOVERY", "false")
    monkeypatch.setenv("FRESHTOKEN_WEBHOOK_ON_AUTH_CREATION", "0")
    config = WebhookConfig.from_settings(Settings(data_dir=tmp_path))
    assert config.enabled and config.secondary_url is None
    assert not config.wants("refresh", True) and config.wants("refresh", False)
    assert not config.wants("creation", True) and config.wants("override", True)
    assert config.targets(Connection()) == [("primary", "https://hooks.example.com/nango")]
    assert config.targets(Connection(webhook_url_override="https://o.example.com/")) == [
        ("override", "https://o.example.com/")
    ]
