"""Refresh policy: margins, leads, cooldown and once-a-day failure counting (pure functions)."""

from __future__ import annotations

import datetime as dt

from freshtoken.providers.catalog import load_catalog
from freshtoken.refresh import policy
from freshtoken.settings import Settings
from freshtoken.store.models import Connection

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SETTINGS = Settings(secret_key="x" * 20)  # type: ignore[arg-type]


def _conn(lifetime_s: float | None = 3600, left_s: float | None = 3600, **kw: object) -> Connection:
    expires = NOW + dt.timedelta(seconds=left_s) if left_s is not None else None
    issued = (
        expires - dt.timedelta(seconds=lifetime_s) if expires and lifetime_s is not None else None
    )
    conn = Connection(
        credentials_type="OAUTH2",
        has_refresh_token=True,
        expires_at=expires,
        last_refresh_success=issued,
        refresh_attempts=None,
        last_refresh_failure=None,
    )
    for key, value in kw.items():
        setattr(conn, key, value)
    return conn


def test_read_margin_is_15_minutes_for_hour_tokens() -> None:
    """An hour-long token is refreshed on read within 15 minutes of expiry."""
    assert policy.read_margin(_conn(3600), None, SETTINGS) == 900


def test_read_margin_is_capped_for_short_tokens() -> None:
    """A two-minute token's read margin is a quarter of its lifetime, not 15 minutes."""
    assert policy.read_margin(_conn(120), None, SETTINGS) == 30


def test_provider_buffer_overrides_margin() -> None:
    """A provider's token_expiration_buffer replaces the computed margin (Exact Online: 30 s)."""
    spec = load_catalog().get("exact-online")
    assert spec is not None
    assert policy.read_margin(_conn(600), spec, SETTINGS) == 30


def test_refresh_lead_beats_read_margin() -> None:
    """The proactive lead is min(20 min, half the lifetime) and always beyond the read margin."""
    assert policy.refresh_lead(_conn(3600), None, SETTINGS) == 1350  # 1.5 x 900 > 1200
    assert policy.refresh_lead(_conn(7200), None, SETTINGS) == 1350
    assert policy.refresh_lead(_conn(120), None, SETTINGS) == 60
    for lifetime in (60, 120, 600, 3600, 86400):
        conn = _conn(lifetime)
        assert policy.refresh_lead(conn, None, SETTINGS) > policy.read_margin(conn, None, SETTINGS)


def test_needs_refresh() -> None:
    """Due when expired, inside the margin, or without a known expiry; never without a grant."""
    assert not policy.needs_refresh(_conn(3600, 3000), NOW, 900)
    assert policy.needs_refresh(_conn(3600, 800), NOW, 900)
    assert policy.needs_refresh(_conn(3600, -5), NOW, 900)
    assert policy.needs_refresh(_conn(None, None), NOW, 900)
    assert not policy.needs_refresh(_conn(3600, -5, has_refresh_token=False), NOW, 900)
    assert policy.needs_refresh(_conn(3600, -5, credentials_type="OAUTH2_CC"), NOW, 900)
    assert not policy.needs_refresh(_conn(3600, -5, credentials_type="API_KEY"), NOW, 900)


def test_cooldown_window() -> None:
    """A failure less than 30 s ago puts the connection in cooldown; 30 s later it is over."""
    conn = _conn(last_refresh_failure=NOW - dt.timedelta(seconds=10))
    assert policy.in_cooldown(conn, NOW, SETTINGS)
    assert not policy.in_cooldown(conn, NOW + dt.timedelta(seconds=21), SETTINGS)
    assert not policy.in_cooldown(_conn(), NOW, SETTINGS)


def test_failures_count_once_per_day() -> None:
    """Many failures on one day count once; a failure on a later day counts again."""
    first = _conn()
    assert policy.failure_attempts(first, NOW) == 1
    same_day = _conn(refresh_attempts=1, last_refresh_failure=NOW - dt.timedelta(hours=2))
    assert policy.failure_attempts(same_day, NOW) == 1
    next_day = _conn(refresh_attempts=1, last_refresh_failure=NOW - dt.timedelta(days=1))
    assert policy.failure_attempts(next_day, NOW) == 2


def test_settings_are_frozen() -> None:
    """Settings cannot be mutated after construction (built once, passed in)."""
    try:
        SETTINGS.read_margin_seconds = 1  # type: ignore[misc]
    except Exception as exc:
        assert "frozen" in str(exc).lower()
    else:  # pragma: no cover
        raise AssertionError("settings were mutable")
