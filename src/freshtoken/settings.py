"""One settings object, read from ``FRESHTOKEN_*`` environment variables, built once and passed in.

Nothing in the package reads the environment on its own: entry points call :func:`load_settings`
and hand the result to ``create_app``, ``create_celery`` or the CLI commands.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import secrets
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from freshtoken.errors import ConfigError

DEFAULT_DATA_DIR = Path(".freshtoken")


class Settings(BaseSettings):
    """Every knob freshtoken has. Defaults are the zero-setup embedded mode (SQLite, no Redis)."""

    model_config = SettingsConfigDict(env_prefix="FRESHTOKEN_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # empty = the SQLite file under data_dir
    redis_url: str | None = None  # unset = embedded mode: in-process locks and broker
    secret_key: SecretStr | None = None
    encryption_key: SecretStr | None = None
    encryption_old_keys: SecretStr = SecretStr("")
    providers_file: Path | None = None

    # auto: a short console line per event on a terminal, JSON lines anywhere else (files, pipes,
    # containers, log shippers).
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 3003
    db_pool_size: int = 10
    # Where browsers reach the API (the OAuth redirect URI is <public_url>/oauth/callback and
    # connect links start here). Empty: http://<api_host>:<api_port>. Checked below.
    public_url: str = ""
    connect_session_ttl_seconds: int = Field(default=1800, gt=0)  # Nango's 30 minutes
    oauth_state_ttl_seconds: int = Field(default=900, gt=0)

    # Refresh engine (issue 3). Seconds unless named otherwise.
    read_margin_seconds: int = (
        900  # Nango's REFRESH_MARGIN_MS: refresh on read within 15 min of expiry
    )
    read_margin_lifetime_fraction: float = Field(default=0.25, gt=0, lt=1)
    default_token_lifetime_seconds: int = 3600
    refresh_failure_cooldown_seconds: int = 30
    refresh_max_failure_days: int = 4
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 15.0
    lock_ttl_seconds: float = 30.0  # must exceed the provider deadline + margin: checked below
    lock_wait_seconds: float = 25.0
    # One overall deadline per provider call (connect + send + the whole body); unset means
    # connect + read timeout. It must end a safety margin before the lock's TTL (checked below).
    provider_deadline_seconds: float | None = Field(default=None, gt=0)

    # Proactive refresh (issue 4).
    scan_interval_seconds: float = 30.0
    scan_batch_size: int = 500
    refresh_lead_seconds: int = 1200  # default lead: min(20 min, half the token lifetime)
    keepalive_hours: float = 24.0
    # The scan's claim covers a task's wait in the queue and its usual run: a task lost with a
    # worker or the broker (never started, or killed) gives its row back to the scan within
    # seconds. A task that outlives it (a slow provider, a long queue) can be enqueued once more
    # by the next scan; that second task waits for the lock and finds the row fresh. Raise it
    # if tasks routinely wait longer in the queue.
    claim_ttl_seconds: int = 15
    # After a transient failure the scan takes the row back after 2, 4, 8 ... seconds, at most
    # this long, and before the token expires (the task's own retries run first).
    scan_retry_after_failure_seconds: int = 30
    provider_rate_limit_per_second: float = 50.0
    task_max_retries: int = 5

    # Outbound policy (issue 10, see freshtoken.outbound). Development always allows private
    # addresses (the mock provider listens on 127.0.0.1); production needs one of these.
    outbound_allow_private: bool = False
    outbound_allow_hosts: str = ""  # comma-separated host names or IP addresses
    provider_max_response_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Without Redis, locks are OS file locks on this machine: declare that no other host runs
    # freshtoken against the same server database (production refuses otherwise).
    single_host: bool = False
    # /docs and /openapi.json without a key; unset = on in development, off in production.
    public_docs: bool | None = None
    # Auth webhooks (issue 14), Nango's names: nothing is sent unless a URL is set.
    webhook_url: str | None = None
    webhook_secondary_url: str | None = None
    webhook_on_auth_creation: bool = True
    webhook_on_auth_override: bool = True
    webhook_on_auth_refresh_error: bool = True
    webhook_on_auth_refresh_recovery: bool = True
    webhook_environment: str = "prod"  # the body's ``environment`` (Nango's environment name)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_seconds: float = Field(default=3.0, gt=0)
    webhook_deadline_seconds: float = Field(default=3600.0, gt=0)
    webhook_max_response_bytes: int = Field(default=65536, ge=0)
    webhook_retention_days: float = Field(default=7.0, gt=0)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_redis_is_unset(cls, value: object) -> object:
        # An empty FRESHTOKEN_REDIS_URL (as compose files often pass) means embedded mode.
        return None if value == "" else value

    @field_validator("webhook_url", "webhook_secondary_url", mode="before")
    @classmethod
    def _empty_webhook_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _lock_outlives_http(self) -> Settings:
        # A lock that can expire while its holder still waits on the provider lets a second
        # refresher spend the same rotating refresh token.
        if self.lock_ttl_seconds <= self.http_connect_timeout + self.http_read_timeout:
            raise ValueError(
                "FRESHTOKEN_LOCK_TTL_SECONDS must exceed "
                "FRESHTOKEN_HTTP_CONNECT_TIMEOUT + FRESHTOKEN_HTTP_READ_TIMEOUT"
            )
        if self.provider_deadline + self.lock_safety_margin > self.lock_ttl_seconds:
            raise ValueError(
                "FRESHTOKEN_PROVIDER_DEADLINE_SECONDS (default: connect + read timeout) must end "
                f"at least {self.lock_safety_margin:g}s before FRESHTOKEN_LOCK_TTL_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _public_url_is_safe(self) -> Settings:
        # Authorization codes travel to this URL: production needs https, except on a loopback
        # host, where the flow can be tested on one machine (as RFC 8252 allows).
        check_public_url(self.public_url, production=self.env == "production")
        return self

    @property
    def resolved_public_url(self) -> str:
        """The public base URL without a trailing slash (default: where the API listens)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"http://{host}:{self.api_port}"

    @property
    def provider_deadline(self) -> float:
        """The overall deadline of one provider call, in seconds."""
        if self.provider_deadline_seconds is not None:
            return self.provider_deadline_seconds
        return self.http_connect_timeout + self.http_read_timeout

    @property
    def lock_safety_margin(self) -> float:
        """Time kept free at the end of a lock's TTL: a holder gives up before its lock expires.

        A fifth of the TTL, at most 2 s: enough for the write after the provider answered (the
        compare-and-set makes a later write harmless anyway).
        """
        return min(2.0, 0.2 * self.lock_ttl_seconds)

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/freshtoken.db``.

        ``postgres://`` and ``postgresql://`` (as hosting providers and libpq write them) name
        the psycopg 3 driver freshtoken installs.
        """
        if self.database_url:
            return postgres_driver_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'freshtoken.db').as_posix()}"

    @property
    def docs_public(self) -> bool:
        """Whether /docs and /openapi.json are served (to anyone: the docs page has no key)."""
        if self.public_docs is not None:
            return self.public_docs
        return self.env == "development"

    @property
    def embedded(self) -> bool:
        """True without Redis: locks are in-process and Celery runs on an in-memory broker."""
        return not self.redis_url

    def secret_key_value(self) -> str:
        """The API bearer key (raises ConfigError if unresolved)."""
        if self.secret_key is None:
            raise ConfigError("FRESHTOKEN_SECRET_KEY is not set")
        return self.secret_key.get_secret_value()

    def encryption_keys(self) -> tuple[bytes, list[bytes]]:
        """Decode the current key and the old keys (each base64 of 32 bytes)."""
        if self.encryption_key is None:
            raise ConfigError("FRESHTOKEN_ENCRYPTION_KEY is not set")
        current = decode_key(self.encryption_key.get_secret_value(), "FRESHTOKEN_ENCRYPTION_KEY")
        old = [
            decode_key(part.strip(), "FRESHTOKEN_ENCRYPTION_OLD_KEYS")
            for part in self.encryption_old_keys.get_secret_value().split(",")
            if part.strip()
        ]
        return current, old


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_public_url(url: str, *, production: bool) -> None:
    """Refuse a FRESHTOKEN_PUBLIC_URL that is not an absolute http(s) URL without query/fragment.

    In production it must be https unless its host is loopback (127.0.0.1, localhost, [::1]).
    """
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("FRESHTOKEN_PUBLIC_URL must be an absolute http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("FRESHTOKEN_PUBLIC_URL must not have credentials, a query or a fragment")
    if production and parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError(
            "FRESHTOKEN_PUBLIC_URL must use https in production (http only for loopback hosts)"
        )


def postgres_driver_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` to ``postgresql+psycopg://``; others unchanged."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def decode_key(value: str, variable: str) -> bytes:
    """Decode a base64 key of exactly 32 bytes, or raise ConfigError naming the variable."""
    try:
        raw = base64.b64decode(value.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{variable} must be base64 of 32 bytes (it is not valid base64)"
        ) from None
    if len(raw) != 32:
        raise ConfigError(f"{variable} must be base64 of 32 bytes (got {len(raw)} bytes)")
    return raw


MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_BITS = 96.0


def _estimated_bits(value: str) -> float:
    """Shannon estimate of a string's entropy in bits (its length times bits per character)."""
    counts = Counter(value)
    total = len(value)
    per_char = -sum(n / total * math.log2(n / total) for n in counts.values())
    return per_char * total


def check_key_strength(settings: Settings) -> None:
    """Refuse keys an attacker could guess (production only; one-line ConfigError).

    The API key must be at least 32 characters with an estimated 96 bits of entropy (a random
    hex or base64 string passes; ``aaaa...`` or a word repeated does not). An encryption key
    that is one byte repeated (all zeros, the usual placeholder) is refused too.
    """
    secret = settings.secret_key_value()
    if len(secret) < MIN_SECRET_KEY_LENGTH or _estimated_bits(secret) < MIN_SECRET_KEY_BITS:
        raise ConfigError(
            "FRESHTOKEN_SECRET_KEY is too weak for FRESHTOKEN_ENV=production: use at least "
            f"{MIN_SECRET_KEY_LENGTH} random characters (freshtoken keys generate)"
        )
    current, old = settings.encryption_keys()
    for variable, key in [
        ("FRESHTOKEN_ENCRYPTION_KEY", current),
        *(("FRESHTOKEN_ENCRYPTION_OLD_KEYS", k) for k in old),
    ]:
        if len(set(key)) <= 1:
            raise ConfigError(
                f"{variable} is one byte repeated, not a random key (freshtoken keys generate)"
            )


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700: it holds keys and the SQLite database."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def generate_key() -> str:
    """A new random encryption key, base64 of 32 bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def generate_secret_key() -> str:
    """A new random API secret key."""
    return "ft_sk_" + secrets.token_urlsafe(32)


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, resolving development keys.

    In production a missing secret or encryption key is a ConfigError naming the variable. In
    development both are generated once and kept in ``<data_dir>/keys.json`` (mode 0600) so that
    restarts keep working (:func:`resolve_dev_keys` also says which ones were generated).
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings, _ = resolve_dev_keys(settings)
    return settings


def resolve_dev_keys(settings: Settings) -> tuple[Settings, list[str]]:
    """Fill in missing keys in development; refuse to start without them in production.

    Returns the settings and the names of the variables whose keys were generated by this call
    (empty when every key was set or already kept in the keys file: only a new key is news).
    """
    missing = [
        name
        for name, value in (
            ("FRESHTOKEN_SECRET_KEY", settings.secret_key),
            ("FRESHTOKEN_ENCRYPTION_KEY", settings.encryption_key),
        )
        if value is None or not value.get_secret_value()
    ]
    if not missing:
        settings.encryption_keys()  # validate early, with a one-line error naming the variable
        if settings.env == "production":
            check_key_strength(settings)
        return settings, []
    if settings.env == "production":
        raise ConfigError(f"{missing[0]} is required when FRESHTOKEN_ENV=production")
    keys_file = settings.data_dir / "keys.json"
    stored: dict[str, str] = {}
    make_private_dir(settings.data_dir)
    if keys_file.exists():
        os.chmod(keys_file, 0o600)  # a keys file left readable by an older version
        stored = orjson.loads(keys_file.read_bytes())
    generated: list[str] = []
    if "FRESHTOKEN_SECRET_KEY" in missing and "secret_key" not in stored:
        stored["secret_key"] = generate_secret_key()
        generated.append("FRESHTOKEN_SECRET_KEY")
    if "FRESHTOKEN_ENCRYPTION_KEY" in missing and "encryption_key" not in stored:
        stored["encryption_key"] = generate_key()
        generated.append("FRESHTOKEN_ENCRYPTION_KEY")
    if generated:
        tmp = keys_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # O_CREAT's mode only applies to a new file: a left-over keys.tmp keeps its own mode,
        # and the rename would carry it onto keys.json.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(stored, option=orjson.OPT_INDENT_2))
        tmp.replace(keys_file)
    update: dict[str, object] = {}
    if "FRESHTOKEN_SECRET_KEY" in missing:
        update["secret_key"] = SecretStr(stored["secret_key"])
    if "FRESHTOKEN_ENCRYPTION_KEY" in missing:
        update["encryption_key"] = SecretStr(stored["encryption_key"])
    resolved = settings.model_copy(update=update)
    resolved.encryption_keys()
    return resolved, generated
