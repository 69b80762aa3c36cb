"""Pure refresh policy: when a token is due, how failures are counted. No I/O here.

Margins, in one place:
- **read margin** (refresh-on-read): a read refreshes when the token expires within
  ``min(read_margin_seconds, read_margin_lifetime_fraction * lifetime)`` — 15 minutes for normal
  tokens, a quarter of the lifetime for short-lived ones — unless the provider sets
  ``token_expiration_buffer``, which wins (Nango's rule).
- **refresh lead** (proactive scan): ``min(refresh_lead_seconds, lifetime / 2)`` by default, and
  always larger than the read margin so the scheduler refreshes before any read has to; a provider's
  ``refresh_lead_seconds`` narrows it (Exact Online only accepts the last 30 s).
"""

from __future__ import annotations

import datetime as dt

from freshtoken.providers.catalog import ProviderSpec
from freshtoken.settings import Settings
from freshtoken.store.models import Connection

# RFC 6749 §5.2 token-endpoint errors that no retry can fix.
PERMANENT_ERROR_CODES = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)

REFRESHABLE_TYPES = frozenset(
    {"OAUTH2", "OAUTH2_CC", "APP", "CUSTOM", "JWT", "TWO_STEP", "BILL", "SIGNATURE"}
)


def is_refreshable(conn: Connection) -> bool:
    """True when freshtoken can mint new credentials for this connection without the user."""
    if conn.credentials_type in REFRESHABLE_TYPES and conn.credentials_type != "OAUTH2":
        # Client credentials and auth-mode grants mint from stored secrets alone.
        return True
    return conn.credentials_type == "OAUTH2" and conn.has_refresh_token


def token_lifetime(conn: Connection) -> float | None:
    """Seconds between the last issue (import or refresh) and expiry, when both are known."""
    if conn.expires_at is None or conn.last_refresh_success is None:
        return None
    lifetime = (conn.expires_at - conn.last_refresh_success).total_seconds()
    return lifetime if lifetime > 0 else None


def read_margin(conn: Connection, spec: ProviderSpec | None, settings: Settings) -> float:
    """Seconds before expiry at which a read refreshes synchronously."""
    if spec is not None and spec.token_expiration_buffer is not None:
        return float(spec.token_expiration_buffer)
    margin = float(settings.read_margin_seconds)
    lifetime = token_lifetime(conn)
    if lifetime is not None:
        margin = min(margin, lifetime * settings.read_margin_lifetime_fraction)
    return margin


def refresh_lead(conn: Connection, spec: ProviderSpec | None, settings: Settings) -> float:
    """Seconds before expiry at which the proactive scan refreshes."""
    if spec is not None and spec.refresh_lead_seconds is not None:
        return float(spec.refresh_lead_seconds)
    lead = float(settings.refresh_lead_seconds)
    lifetime = token_lifetime(conn)
    if lifetime is not None:
        lead = min(lead, lifetime / 2)
    # Proactive refresh must win the race against refresh-on-read.
    return max(lead, read_margin(conn, spec, settings) * 1.5)


def needs_refresh(conn: Connection, now: dt.datetime, margin: float) -> bool:
    """True when a refreshable connection's token is expired, within ``margin``, or has no expiry.

    A refreshable connection without an expiry is due: Nango never refreshes those and their
    refresh tokens die silently (nango#6775); freshtoken refreshes them to learn the expiry.
    """
    if not is_refreshable(conn):
        return False
    if conn.expires_at is None:
        return True
    return (conn.expires_at - now).total_seconds() < margin


def keepalive_interval(spec: ProviderSpec | None, settings: Settings) -> float:
    """Longest a refresh token may go unused before the scan refreshes it anyway.

    ``keepalive_hours`` (24 h by default), shortened to half the provider's
    ``refresh_token_idle_days`` when that is tighter.
    """
    interval = settings.keepalive_hours * 3600
    if spec is not None and spec.refresh_token_idle_days:
        interval = min(interval, spec.refresh_token_idle_days * 86400 / 2)
    return interval


def plan_next_refresh(
    conn: Connection, spec: ProviderSpec | None, settings: Settings, now: dt.datetime
) -> dt.datetime | None:
    """When the proactive scan should next look at this connection (None: never).

    The earlier of ``expires_at - refresh_lead`` and, for refresh-token grants, the keep-alive
    time. A refreshable connection with no known expiry is due now, to learn its expiry.
    """
    if (
        conn.deleted_at is not None
        or conn.needs_reauth
        or conn.refresh_exhausted
        or not is_refreshable(conn)
    ):
        return None
    if conn.expires_at is None:
        return now
    due = conn.expires_at - dt.timedelta(seconds=refresh_lead(conn, spec, settings))
    if conn.credentials_type == "OAUTH2":
        last = conn.last_refresh_success or now
        due = min(due, last + dt.timedelta(seconds=keepalive_interval(spec, settings)))
    return due


def refresh_rate(spec: ProviderSpec | None, settings: Settings) -> float:
    """Refreshes per second allowed for one provider across all workers (the catalog entry's
    ``refresh_rate_limit_per_second``, else the settings' default)."""
    override = spec.raw.get("refresh_rate_limit_per_second") if spec is not None else None
    if isinstance(override, int | float) and override > 0:
        return float(override)
    return settings.provider_rate_limit_per_second


def is_expired(conn: Connection, now: dt.datetime) -> bool:
    """True when the stored token's expiry has passed (unknown expiry counts as not expired)."""
    return conn.expires_at is not None and conn.expires_at <= now


def in_cooldown(conn: Connection, now: dt.datetime, settings: Settings) -> bool:
    """True within the cooldown after a failed refresh (non-forced callers must not retry yet)."""
    if conn.last_refresh_failure is None:
        return False
    elapsed = (now - conn.last_refresh_failure).total_seconds()
    return 0 <= elapsed < settings.refresh_failure_cooldown_seconds


def in_read_backoff(conn: Connection, now: dt.datetime, settings: Settings) -> bool:
    """True within the short backoff after a transient failure, when a read must not retry yet.

    The backoff is the scan's first retry delay (:func:`retry_after_failure`), seconds rather
    than the whole cooldown: a healed provider is asked again within seconds, and a failing one
    is asked at most once per backoff however many reads arrive.
    """
    last = conn.last_refresh_failure
    if last is None:
        return False
    backoff = min(float(settings.scan_retry_after_failure_seconds), 2.0)
    return 0 <= (now - last).total_seconds() < backoff


def retry_after_failure(
    conn: Connection, now: dt.datetime, settings: Settings, attempt: int
) -> dt.datetime:
    """When the scan takes a row back after a transient failure: a backoff of seconds.

    2, 4, 8, ... seconds by attempt, capped at ``scan_retry_after_failure_seconds``, and never
    later than shortly before the token expires (a token that is still valid gets its retry in
    time; one that has expired is retried after the backoff).
    """
    backoff = min(float(settings.scan_retry_after_failure_seconds), 2.0 * 2 ** max(0, attempt - 1))
    at = now + dt.timedelta(seconds=backoff)
    if conn.expires_at is not None and conn.expires_at > now:
        before_expiry = conn.expires_at - dt.timedelta(seconds=2)
        at = min(at, max(now + dt.timedelta(seconds=1), before_expiry))
    return at


def failure_attempts(conn: Connection, now: dt.datetime) -> int:
    """The failure counter after one more failure, counting at most one per UTC day.

    A provider outage that makes every attempt fail for an afternoon costs one day, not hundreds
    of attempts, so it cannot exhaust a connection by itself (nango PR #3736).
    """
    previous = conn.refresh_attempts or 0
    last = conn.last_refresh_failure
    if previous == 0 or last is None:
        return max(previous, 1)
    return previous + 1 if last.date() < now.date() else previous
