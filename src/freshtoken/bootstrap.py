"""Process start-up shared by every entry point: settings, logging, runtime."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import pydantic

from freshtoken.errors import ConfigError
from freshtoken.logs import configure_logging, get_logger
from freshtoken.providers.catalog import ProviderCatalogError
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings, resolve_dev_keys


def plain_settings(**overrides: Any) -> Settings:
    """The settings as the environment gives them (no keys resolved, logging untouched).

    Validation errors become one-line ConfigErrors naming the variable.
    """
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        variable = f"FRESHTOKEN_{field.upper()}" if first.get("loc") else field
        raise ConfigError(f"{variable}: {first.get('msg', 'invalid value')}") from None


def settings_from_env(**overrides: Any) -> Settings:
    """Read settings from the environment, turning validation errors into one-line ConfigErrors."""
    settings, generated = resolve_dev_keys(plain_settings(**overrides))
    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=_secret_values(settings),
    )
    if generated:
        get_logger("freshtoken.settings").warning(
            "settings.keys_generated",
            variables=generated,
            keys_file=str((settings.data_dir / "keys.json").resolve()),
            detail="development mode: generated once and kept in the keys file",
        )
    return settings


def _secret_values(settings: Settings) -> list[str]:
    values: list[str] = []
    if settings.secret_key:
        values.append(settings.secret_key.get_secret_value())
    if settings.encryption_key:
        values.append(settings.encryption_key.get_secret_value())
    values.extend(
        v.strip() for v in settings.encryption_old_keys.get_secret_value().split(",") if v.strip()
    )
    return values


def runtime_from_env(*, require_schema: bool = False, **overrides: Any) -> Runtime:
    """Settings, logging and the runtime, or exit with a one-line error.

    ``require_schema``: first check that the database has freshtoken's schema (raising
    :class:`~freshtoken.preflight.CliError` before any key or file is created when it has not).
    """
    try:
        if require_schema:
            from freshtoken.preflight import check_schema

            check_schema(plain_settings(**overrides))
        settings = settings_from_env(**overrides)
    except (ConfigError, ProviderCatalogError) as exc:
        _exit_on_config_error(exc)
    return runtime_from_settings(settings)


def runtime_from_settings(settings: Settings) -> Runtime:
    """The runtime for settings already read (logging configured), or exit with a one-line error.

    A Celery worker process builds its runtime with this from its app's settings.
    """
    try:
        return build_runtime(settings)
    except (ConfigError, ProviderCatalogError) as exc:
        _exit_on_config_error(exc)


def _exit_on_config_error(exc: Exception) -> NoReturn:
    sys.stderr.write(f"freshtoken: configuration error: {exc}\n")
    raise SystemExit(2) from None


def asgi_app() -> Any:
    """ASGI factory for ``uvicorn --factory freshtoken.bootstrap:asgi_app`` (one per worker)."""
    from freshtoken.api.app import create_app

    return create_app(runtime_from_env())
