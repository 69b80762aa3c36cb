"""Checks and error translation for the command line: one line that says what to do.

A CLI command either prints its result on stdout or fails with exactly one line on stderr naming
the cause and the next step, and a non-zero exit code. This module holds the checks that run
before a command touches anything (is there a schema?) and turns the exceptions a command can
meet in the wild (an unreachable PostgreSQL or Redis, an unsupported URL) into such lines.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

from freshtoken.errors import FreshtokenError
from freshtoken.logs import scrub_text
from freshtoken.settings import Settings

# The table every freshtoken schema has since the first migration.
SCHEMA_TABLE = "connections"
UPGRADE_HINT = "run `freshtoken db upgrade`"
WHERE_HINT = "or set FRESHTOKEN_DATA_DIR / FRESHTOKEN_DATABASE_URL to your existing database"


class CliError(FreshtokenError):
    """A command cannot go on; str() is the one line to print, exit_code the process's status."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def display_url(url: str) -> str:
    """The database URL without its password (SQLite: the absolute file path)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"sqlite:///{Path(str(parsed.database)).resolve().as_posix()}"
    return parsed.render_as_string(hide_password=True)


def check_schema(settings: Settings) -> None:
    """Raise :class:`CliError` unless the database exists and has freshtoken's schema.

    Runs before keys are resolved, so a command started from the wrong directory creates no
    data dir, no keys file and no empty database: it says which database it looked at and what
    to do (``freshtoken db upgrade``, or point the settings at the existing data).
    """
    url = settings.resolved_database_url
    shown = display_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CliError(f"FRESHTOKEN_DATABASE_URL is not a database URL: {shown}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise CliError(
            f"FRESHTOKEN_DATABASE_URL is not supported ({shown}): use sqlite:///PATH or "
            "postgresql://user:pass@host/db"
        )
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        "",
        ":memory:",
    )
    if sqlite_file and not Path(str(parsed.database)).exists():
        raise CliError(
            f"no database at {shown} (data dir {settings.data_dir.resolve()}): "
            f"{UPGRADE_HINT} to create it, {WHERE_HINT}"
        )
    engine = create_engine(parsed, pool_pre_ping=False)
    try:
        with engine.connect() as connection:
            present = inspect(connection).has_table(SCHEMA_TABLE)
    finally:
        engine.dispose()
    if not present:
        raise CliError(f"no freshtoken schema in {shown}: {UPGRADE_HINT}, {WHERE_HINT}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return scrub_text(text.splitlines()[0] if text else type(exc).__name__)


def describe(exc: Exception, settings: Settings | None) -> CliError | None:
    """The one-line error for an exception a command can meet, or None for the unexpected.

    Messages name the setting to check and never contain a password or key (URLs are shown
    without their password and the text is scrubbed like a log line).
    """
    import redis.exceptions

    url = display_url(settings.resolved_database_url) if settings else "the database"
    if isinstance(exc, OperationalError | ProgrammingError):
        reason = _first_line(exc)
        if "no such table" in reason or ("does not exist" in reason and "relation" in reason):
            return CliError(f"no freshtoken schema in {url}: {UPGRADE_HINT}, {WHERE_HINT}")
        return CliError(
            f"cannot use the database {url}: {reason} "
            "(is it running and reachable? check FRESHTOKEN_DATABASE_URL)",
            exit_code=1,
        )
    if isinstance(exc, NoSuchModuleError | ArgumentError):
        return CliError(
            f"FRESHTOKEN_DATABASE_URL is not supported ({url}): use sqlite:///PATH or "
            "postgresql://user:pass@host/db"
        )
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return CliError(
            f"cannot reach Redis: {_first_line(exc)} (is it running? check FRESHTOKEN_REDIS_URL)",
            exit_code=1,
        )
    return None
