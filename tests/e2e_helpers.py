"""Helpers for end-to-end tests that run real ``freshtoken`` processes.

Processes are started with ``python -m freshtoken.cli ...`` in their own session (so a whole
Celery worker, prefork children included, is one process group), configured only through
``FRESHTOKEN_*`` environment variables, and write their JSON log lines to a file each. A
:class:`Fleet` remembers every process it started and kills every group on exit, whatever
happened; ``wait_until`` polls with a hard deadline and fails fast if a process died.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso

T = TypeVar("T")

CLI = [sys.executable, "-m", "freshtoken.cli"]
LOCK_PATTERN = "freshtoken:lock:*"

_LIVE_GROUPS: set[int] = set()


def _kill_leftovers() -> None:
    """Last resort if a fixture never ran its teardown: no process outlives the test run."""
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


atexit.register(_kill_leftovers)


# -- logs -----------------------------------------------------------------------------------------


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every JSON object line of a log file (banners and other text lines are skipped)."""
    if not path.exists():
        return []
    events: list[dict[str, Any]] = []
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"{"):
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


def parse_timestamp(value: str) -> dt.datetime:
    """A log line's ISO ``timestamp`` as an aware datetime."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The largest number of instants inside any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One started process (the leader of its own process group) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The leader's pid, which is also the process group id."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the group leader runs."""
        return self.popen.poll() is None

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        return read_json_lines(self.log_path)

    def events(self, event: str) -> list[dict[str, Any]]:
        """The log lines of one event name."""
        return [e for e in self.logs() if e.get("event") == event]

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log, for failure messages."""
        if not self.log_path.exists():
            return "<no log>"
        text_lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text_lines[-lines:])

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole group (prefork children included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group and reap the leader."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        _LIVE_GROUPS.discard(self.pid)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL whatever is left of it."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Children may outlive their leader: the group is killed either way.
        self.kill()


@dataclass
class Fleet:
    """Starts freshtoken processes with a shared environment and always cleans them up."""

    log_dir: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()

    def start(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Proc:
        """Start ``python -m freshtoken.cli ARGS`` in a new session, logging to ``<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [*CLI, *args],
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE_GROUPS.add(popen.pid)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def worker(
        self,
        name: str,
        *,
        concurrency: int = 4,
        pool: str = "prefork",
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 60.0,
    ) -> Proc:
        """Start ``freshtoken worker`` and wait until Celery reports it ready."""
        proc = self.start(
            name,
            [
                "worker",
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                f"--hostname={name}@%h",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            env,
        )
        wait_until(
            lambda: any(str(e.get("event", "")).endswith(" ready.") for e in proc.logs()),
            ready_timeout,
            f"worker {name} ready",
            procs=[proc],
        )
        return proc

    def beat(self, name: str, *, env: Mapping[str, str] | None = None) -> Proc:
        """Start ``freshtoken beat`` (own data dir, so two beats never share a schedule file)."""
        data_dir = self.log_dir / f"{name}-data"
        proc = self.start(name, ["beat"], {"FRESHTOKEN_DATA_DIR": str(data_dir), **(env or {})})
        wait_until(
            lambda: any(e.get("event") == "beat: Starting..." for e in proc.logs()),
            60.0,
            f"beat {name} started",
            procs=[proc],
        )
        return proc

    def mock_provider(self, name: str, *options: str) -> tuple[Proc, str]:
        """Start ``freshtoken mock-provider`` on a free port; returns the process and its URL."""
        port = free_port()
        proc = self.start(name, ["mock-provider", "--port", str(port), *options])
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(url + "/health"), 30.0, f"{name} listening", procs=[proc])
        return proc, url

    def check_alive(self, procs: Iterable[Proc] | None = None) -> None:
        """Fail with the log tail of any process that died unexpectedly."""
        for proc in procs if procs is not None else self.procs:
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}"
                )

    def stop_all(self) -> None:
        """Stop every process this fleet started (in reverse start order)."""
        for proc in reversed(self.procs):
            proc.stop(timeout=3.0)


def freshtoken_env(
    *,
    database_url: str,
    redis_url: str,
    data_dir: Path,
    secret_key: str,
    encryption_key: str,
    **settings: object,
) -> dict[str, str]:
    """The environment of a freshtoken process: this one's, minus any FRESHTOKEN_*, plus ours.

    Extra keyword arguments become ``FRESHTOKEN_<NAME>`` variables.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHTOKEN_", "CELERY_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "FRESHTOKEN_DATABASE_URL": database_url,
            "FRESHTOKEN_REDIS_URL": redis_url,
            "FRESHTOKEN_DATA_DIR": str(data_dir),
            "FRESHTOKEN_SECRET_KEY": secret_key,
            "FRESHTOKEN_ENCRYPTION_KEY": encryption_key,
            "FRESHTOKEN_LOG_FORMAT": "json",
            "FRESHTOKEN_LOG_LEVEL": "INFO",
        }
    )
    env.update({f"FRESHTOKEN_{k.upper()}": str(v) for k, v in settings.items()})
    return env


# -- waiting --------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.25,
    procs: Iterable[Proc] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    Fails at once, with the log tail, if one of ``procs`` exits meanwhile.
    """
    watched = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in watched:
            if not proc.alive():
                raise AssertionError(
                    f"waiting for {what}: {proc.name} exited with {proc.popen.returncode}:\n"
                    f"{proc.tail()}"
                )
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - local test URL
            return bool(response.status == 200)
    except OSError:
        return False


def http_json(url: str, payload: Mapping[str, Any] | None = None) -> Any:
    """GET (or POST ``payload`` as JSON to) a local URL and decode the JSON answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - local test URL
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


# -- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    """One imported connection and what the test needs to check it later."""

    pk: int
    connection_id: str
    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    lifetime_seconds: float


def bulk_import(
    runtime: Runtime,
    *,
    seed: Callable[[float], Mapping[str, Any]],
    token_url: str,
    tokens: Iterable[tuple[float, float | dt.datetime]],
    client_id: str = "mock-client",
    client_secret: str = "mock-secret",  # noqa: S107 - the mock provider's fake secret
    integration_key: str = "mock",
    prefix: str = "conn",
) -> list[Imported]:
    """Import many OAUTH2 connections in one transaction (as ``add_oauth2_connection`` does).

    ``tokens`` yields ``(lifetime_seconds, expiry)`` pairs, the expiry in seconds from now or as
    an instant: each token was issued ``lifetime_seconds`` before its expiry, so the refresh lead
    and read margin follow from the lifetime exactly as for a real token.
    ``seed(lifetime)`` registers the token family at the provider and returns its tokens.
    """
    imported: list[Imported] = []
    with runtime.store() as store:
        integration = store.get_integration(integration_key) or store.create_integration(
            unique_key=integration_key,
            provider="oauth2",
            client_id=client_id,
            client_secret=client_secret,
        )
        for i, (lifetime, expiry) in enumerate(tokens):
            family = seed(lifetime)
            expires_at = (
                expiry
                if isinstance(expiry, dt.datetime)
                else runtime.clock.now() + dt.timedelta(seconds=expiry)
            )
            conn, _ = store.upsert_connection(
                integration,
                connection_id=f"{prefix}-{i:05d}",
                credentials={
                    "type": "OAUTH2",
                    "access_token": family["access_token"],
                    "refresh_token": family["refresh_token"],
                    "expires_at": iso(expires_at),
                    "raw": {},
                },
                connection_config={"token_url": token_url},
            )
            conn.last_refresh_success = expires_at - dt.timedelta(seconds=lifetime)
            conn.next_refresh_at = runtime.plan_next_refresh(conn)
            imported.append(
                Imported(
                    conn.id,
                    conn.connection_id,
                    family["access_token"],
                    family["refresh_token"],
                    expires_at,
                    lifetime,
                )
            )
    return imported


def local_seed(provider: MockProvider) -> Callable[[float], Mapping[str, Any]]:
    """``seed`` for :func:`bulk_import` against an in-process mock provider."""
    return lambda lifetime: provider.seed(lifetime_seconds=lifetime)


def http_seed(base_url: str) -> Callable[[float], Mapping[str, Any]]:
    """``seed`` for :func:`bulk_import` against a ``freshtoken mock-provider`` process."""
    return lambda lifetime: http_json(base_url + "/_mock/seed", {"lifetime_seconds": lifetime})


class RecordingMockProvider(MockProvider):
    """The mock provider, also recording when each token-endpoint call arrived.

    ``arrivals`` holds ``(time.time(), presented refresh token)`` of every call to
    ``/oauth/token``, taken as the request is handled (before any latency), so rates seen by "the
    provider" are measured where a real provider would measure them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple[float, str | None]] = []

    def _handle_token(self, params: dict[str, Any], authorization: str | None) -> Any:
        presented = params.get("refresh_token")
        self.arrivals.append((time.time(), presented if isinstance(presented, str) else None))
        return super()._handle_token(params, authorization)


# -- database and redis ---------------------------------------------------------------------------


def schema_of(url: str) -> str:
    """The schema named in a ``pg_schema_url()`` URL (``options=-csearch_path=<schema>``)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    (options,) = query["options"]
    return options.split("=", 1)[1]


def drop_schema(url: str) -> None:
    """Drop the per-test schema of ``url`` (and everything in it)."""
    schema = schema_of(url)
    base = url.split("?", 1)[0]
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


LEASE_KEY = "freshtoken:e2e:lease"


@dataclass
class RedisLease:
    """A Redis database number this test holds alone (see :func:`lease_redis_db`)."""

    url: str
    client: Any
    token: str

    def release(self) -> None:
        """Empty the database and give it back, unless the lease was lost to someone else."""
        if self.client.get(LEASE_KEY) == self.token.encode():
            self.client.flushdb()
        self.client.close()


def lease_redis_db(
    base_url: str, candidates: Iterable[int] = range(8, 15), wait: float = 120.0
) -> RedisLease:
    """Take an empty Redis database for this test, so parallel test sessions never share one.

    The broker queue, the locks and the rate-limit keys have fixed names, so two test sessions on
    one database consume each other's tasks. A database is taken only when it is empty and the
    lease key could be set (``SET NX``, expiring after 15 minutes); this waits up to ``wait``
    seconds for one to be free.
    """
    import redis

    token = os.urandom(8).hex()
    deadline = time.monotonic() + wait
    root = base_url.rsplit("/", 1)[0]
    while True:
        for db in candidates:
            url = f"{root}/{db}"
            client = redis.Redis.from_url(url)
            if client.dbsize() == 0 and client.set(LEASE_KEY, token, nx=True, ex=900):
                return RedisLease(url, client, token)
            client.close()
        if time.monotonic() >= deadline:
            raise AssertionError(f"no empty Redis database among {list(candidates)} at {root}")
        time.sleep(1.0)


class CommandRecorder:
    """Records, through Redis ``MONITOR``, when commands with a given prefix ran in one database.

    Commands run by Lua scripts are reported too, with the server's own microsecond timestamp:
    the ``SET`` the GCRA script issues for each granted slot therefore times every grant exactly,
    whatever the workers' scheduling delays.
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._url = url
        self._client = redis.Redis.from_url(url)
        self._db = int(self._client.connection_pool.connection_kwargs.get("db", 0))
        self._prefix = prefix
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.times: list[float] = []
        self._thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                command = monitor.next_command()
                if command["db"] == self._db and command["command"].startswith(self._prefix):
                    self.times.append(float(command["time"]))

    def __enter__(self) -> CommandRecorder:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("redis MONITOR did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._client.ping()  # wake the monitor with one more command
        self._thread.join(10)
        self._client.close()


def lock_keys(client: Any) -> dict[str, bytes]:
    """The refresh locks currently held in Redis: key -> owner token."""
    keys = [k.decode() for k in client.keys(LOCK_PATTERN)]
    values = client.mget(keys) if keys else []
    return {k: v for k, v in zip(keys, values, strict=True) if v is not None}
