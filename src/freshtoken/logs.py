"""One structlog configuration for every process (API, worker, beat, CLI).

Log lines go to stderr (stdout is for a command's results). Every line is one JSON object, or, on
a terminal (``FRESHTOKEN_LOG_FORMAT=auto``, the default) or with ``console``, one short line that a
person reads (:func:`console_renderer`). Library records (uvicorn, httpx, celery, SQLAlchemy) go
through the same processors via :class:`structlog.stdlib.ProcessorFormatter`, so they are JSON too
and pass the same redaction. Redaction runs last before rendering: nothing that reaches a line —
event fields, messages, exception tracebacks — keeps a token, secret, authorization header or key.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor

REDACTED = "[REDACTED]"

# Field names whose values are secrets wherever they appear (compared lower-case, no separators).
_SECRET_KEYS = frozenset(
    {
        "accesstoken",
        "refreshtoken",
        "token",
        "idtoken",
        "clientsecret",
        "secret",
        "secretkey",
        "password",
        "apikey",
        "authorization",
        "encryptionkey",
        "encryptionoldkeys",
        "oauthtoken",
        "oauthtokensecret",
        "privatekey",
        "code",
        "assertion",
        "clientassertion",
        "cookie",
        "setcookie",
    }
)

# Secrets embedded in free text: "access_token=...", '"refresh_token": "..."', "Bearer ...".
_INLINE_PATTERNS = (
    re.compile(
        r"(?i)(\b(?:access|refresh|id)[_-]?token|client[_-]?secret|api[_-]?key|apikey|password"
        r"|secret[_-]?key|encryption[_-]?key|oauth[_-]?token(?:[_-]?secret)?|\btoken)"
        r"""(\\?["']?\s*[:=]\s*\\?["']?)([^"'&\s,;}\]\\]+)"""
    ),
    re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9\-._~+/]+=*)"),
)

_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Scrub this exact value from every log line (for process-wide keys such as the API key).

    Whatever its length: a short key is a weak key (production refuses one), but while it is in
    use it must not appear in a line either, even if that redacts an ordinary word or two.
    """
    if value:
        with _registered_lock:
            _registered.add(value)


# Every match of _INLINE_PATTERNS contains one of these (lower-case): a string holding none of
# them skips the regular expressions. Every log line runs each of its strings through
# scrub_text, and most (routes, ids, outcomes) hold none.
_INLINE_MARKERS = re.compile("token|secret|key|password|bearer|basic")
_NON_LETTERS = re.compile(r"[^a-z]")


@functools.lru_cache(maxsize=1024)
def _normalise(key: str) -> str:
    # Field names repeat on every line: cached.
    return _NON_LETTERS.sub("", key.lower())


def scrub_text(text: str) -> str:
    """Redact secrets inside a string (inline ``key=value`` forms, auth schemes, known keys)."""
    # Only for ASCII: case-insensitive matching also folds a few other letters (the Kelvin
    # sign matches "k"), which a lower-cased substring test would miss.
    lowered = text.lower()
    if not text.isascii() or _INLINE_MARKERS.search(lowered):
        for pattern in _INLINE_PATTERNS:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, key: str | None = None) -> Any:
    """Redact a value recursively: secret-named keys are replaced, strings are scrubbed."""
    if key is not None and _normalise(key) in _SECRET_KEYS and value not in (None, "", {}, []):
        # Whatever its shape: a list of old keys or a {"value": ...} token is still a secret.
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_processor(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every field of the event, including tracebacks."""
    for key in list(event_dict):
        event_dict[key] = redact_value(event_dict[key], key if key != "event" else None)
    return event_dict


def _drop_color_message(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours under this key.
    event_dict.pop("color_message", None)
    return event_dict


def shared_processors() -> list[Processor]:
    """Processors applied to both structlog events and stdlib records."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        structlog.processors.format_exc_info,
        redact_processor,
    ]


def _orjson_dumps(obj: MutableMapping[str, Any], **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


# Context that makes JSON lines joinable; on a terminal it only pushes the message off screen.
_CONSOLE_DROP = frozenset(
    {"timestamp", "level", "logger", "event", "exception", "stack", "task_id", "task_name"}
)


def _console_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if text and " " not in text else repr(text)


def _console_ms(value: Any) -> str:
    return f"{value:.0f}ms" if isinstance(value, int | float) else "-"


def _console_body(event: str, ed: EventDict) -> tuple[str, set[str]]:
    """The event-specific part of a console line and the fields it used."""
    if event == "token.refresh":
        parts = [
            str(ed.get("outcome")),
            f"{ed.get('provider_config_key')}/{ed.get('connection_id')}",
            f"trigger={ed.get('trigger')}",
            _console_ms(ed.get("duration_ms")),
        ]
        if ed.get("error_code"):
            parts.append(f"error={ed.get('error_code')} ({ed.get('error_class')})")
        if ed.get("new_expires_at"):
            parts.append(f"new token expires {ed.get('new_expires_at')}")
        used = {
            "outcome", "provider_config_key", "connection_id", "trigger", "duration_ms",
            "error_code", "error_class", "new_expires_at",
        }  # fmt: skip
        # The rest of token.refresh's fields are for dashboards; the JSON format keeps them.
        used |= {
            "connection_pk", "provider", "http_status", "lock_wait_ms", "seconds_to_expiry",
            "rotated_refresh_token", "attempt", "log_id",
        }  # fmt: skip
        return " ".join(parts), used
    if event == "refresh.scan":
        body = (
            f"due={ed.get('due')} enqueued={ed.get('enqueued')} "
            f"{_console_ms(ed.get('duration_ms'))}"
        )
        return body, {
            "due", "claimed", "enqueued", "skipped", "oldest_overdue_seconds", "duration_ms",
            "pages",
        }  # fmt: skip
    if event == "api.request":
        body = (
            f"{ed.get('method')} {ed.get('route')} {ed.get('status')} "
            f"{_console_ms(ed.get('duration_ms'))}"
        )
        return body, {"method", "route", "status", "duration_ms", "request_id"}
    return "", set()


def console_renderer(_logger: Any, _method: str, event_dict: EventDict) -> str:
    """Render one event as a short line: ``HH:MM:SS level event details``.

    Known events (``token.refresh``, ``refresh.scan``, ``api.request``) get a fixed, compact
    shape; any other event lists its fields as ``key=value``. A traceback follows on its own
    lines. Runs after redaction, like the JSON renderer.
    """
    ed = event_dict
    ts = str(ed.get("timestamp", ""))
    clock = ts[11:19] if len(ts) >= 19 else ts
    event = str(ed.get("event", ""))
    body, used = _console_body(event, ed)
    rest = " ".join(
        f"{k}={_console_value(v)}"
        for k, v in ed.items()
        if k not in _CONSOLE_DROP and k not in used and v is not None
    )
    line = " ".join(
        part for part in (clock, f"{ed.get('level', '')!s:<7}", event, body, rest) if part
    )
    for extra in ("exception", "stack"):
        if ed.get(extra):
            line += "\n" + str(ed[extra]).rstrip()
    return line


class _AlembicChatter(logging.Filter):
    """Drops Alembic's "Context impl ..." / "Will assume ... DDL" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but the two set-up messages."""
        message = str(record.msg)
        return not (message.startswith("Context impl") or message.startswith("Will assume"))


def resolve_format(fmt: str, stream: Any) -> str:
    """``json`` or ``console``: ``auto`` means console on a terminal, JSON anywhere else."""
    if fmt in ("json", "console"):
        return fmt
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # closed or fake streams are not terminals
        return "json"


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    *,
    stream: Any = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog and the stdlib root logger; safe to call more than once.

    Lines go to ``stream`` (default: stderr, so a command's stdout carries only its result).
    ``fmt`` is ``json``, ``console`` or ``auto`` (console when the stream is a terminal).
    """
    for secret in secrets:
        register_secret(secret)
    stream = stream or sys.stderr
    renderer: Processor = (
        console_renderer
        if resolve_format(fmt, stream) == "console"
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Handlers marked ``freshtoken_keep`` (the test suite's leak check) survive reconfiguration
    # and see exactly what the real handler writes.
    kept = [h for h in root.handlers if getattr(h, "freshtoken_keep", False)]
    for extra in kept:
        extra.setFormatter(formatter)
    root.handlers[:] = [handler, *kept]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # httpx logs every request URL at INFO; token URLs can carry templated values, so keep it
    # at WARNING (our own token.refresh event records the attempt instead).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Celery's per-task "received"/"succeeded" lines duplicate token.refresh and refresh.scan.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    # Alembic narrates its context set-up before every command; the upgrades themselves stay.
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _AlembicChatter) for f in migration.filters):
        migration.addFilter(_AlembicChatter())
    # uvicorn's access log is replaced by our own api.request event.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def json_formatter() -> logging.Formatter:
    """A stdlib formatter that renders records as freshtoken's redacted JSON lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
    )


def get_logger(name: str) -> Any:
    """A structlog logger named after the module (stdlib-backed)."""
    return structlog.stdlib.get_logger(name)
