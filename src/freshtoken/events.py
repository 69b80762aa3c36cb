"""The log-event contract: event names, their fields, and the values of enumerated fields.

``ops/README.md`` documents these lines for people; this module is the same contract for code.
``freshtoken report`` and the dashboard tests read it; the emitters (the refresh service, the
scanner, the API middleware, the webhook sender) still spell their literals themselves until the
refresh core is restructured, and tests/unit/test_events.py checks that they agree with it.
"""

from __future__ import annotations

from typing import Final

# -- event names ---------------------------------------------------------------------------------

TOKEN_REFRESH: Final = "token.refresh"  # noqa: S105 - an event name, not a secret
REFRESH_SCAN: Final = "refresh.scan"
API_REQUEST: Final = "api.request"
WEBHOOK_DELIVERY: Final = "webhook.delivery"

# -- enumerated values ---------------------------------------------------------------------------

#: ``token.refresh`` ``trigger``: what started the attempt.
TRIGGERS: Final = ("scheduled", "on_read", "forced", "keepalive", "manual")
#: ``token.refresh`` ``outcome``.
OUTCOMES: Final = ("success", "failed", "skipped_fresh", "lock_timeout", "fenced")
#: ``token.refresh`` ``error_class``.
ERROR_CLASSES: Final = ("permanent", "transient")
#: ``webhook.delivery`` ``outcome``.
WEBHOOK_OUTCOMES: Final = ("delivered", "retry", "failed", "refused")

# -- fields --------------------------------------------------------------------------------------

#: On every line (``request_id``/``task_id``/``task_name`` only in a request or a task).
COMMON_FIELDS: Final = frozenset(
    {"timestamp", "level", "event", "logger", "request_id", "task_id", "task_name"}
)

#: The fields of each event, besides :data:`COMMON_FIELDS`.
FIELDS: Final[dict[str, frozenset[str]]] = {
    TOKEN_REFRESH: frozenset(
        {
            "connection_id",
            "connection_pk",
            "provider_config_key",
            "provider",
            "trigger",
            "outcome",
            "error_code",
            "error_class",
            "http_status",
            "duration_ms",
            "lock_wait_ms",
            "seconds_to_expiry",
            "new_expires_at",
            "rotated_refresh_token",
            "attempt",
            "log_id",
        }
    ),
    REFRESH_SCAN: frozenset(
        {"due", "claimed", "enqueued", "skipped", "oldest_overdue_seconds", "duration_ms", "pages"}
    ),
    API_REQUEST: frozenset({"method", "route", "status", "duration_ms"}),
    WEBHOOK_DELIVERY: frozenset(
        {
            "event_id",
            "outbox_id",
            "type",
            "operation",
            "success",
            "connection_id",
            "provider_config_key",
            "target",
            "url_host",
            "http_status",
            "error_class",
            "attempt",
            "duration_ms",
            "outcome",
            "retry_in_seconds",
        }
    ),
}
