# ruff: noqa: S603 - starts local tools and freshtoken processes with fixed argv
"""Shared plumbing: PostgreSQL schemas, a leased Redis database, processes, logs, statistics.

Everything a benchmark starts or creates is registered on the :class:`Context` and torn down by
:meth:`Context.close` (also at interpreter exit): processes are killed by process group (each one
is started in its own session), schemas are dropped, and the Redis database is emptied and given
back. Nothing touches another engineer's schema or Redis database.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, text

from freshtoken import migrate
from freshtoken.logs import configure_logging
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings, generate_key, generate_secret_key

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_BASE_URL = os.environ.get(
    "FRESHTOKEN_BENCH_DATABASE_URL",
    os.environ.get(
        "FRESHTOKEN_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
)
REDIS_BASE_URL = os.environ.get("FRESHTOKEN_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# Redis databases tried in order. The e2e tests lease 8-14 with the same protocol (empty + SET NX
# of LEASE_KEY), so a database held here is skipped by them and the other way round.
REDIS_DB_CANDIDATES = (13, 12, 11, 10, 7, 6, 5, 4)
LEASE_KEY = "freshtoken:e2e:lease"
LEASE_SECONDS = 1800

CLI = [sys.executable, "-m", "freshtoken.cli"]


def log(message: str) -> None:
    """Progress on stderr (the report is the product; this is for the person waiting)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- statistics -----------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    """The median (NaN for no values)."""
    data = list(values)
    return statistics.median(data) if data else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank on sorted data (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A started process (leader of its own process group) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The leader's pid (also its process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the leader runs."""
        return self.popen.poll() is None

    def json_lines(self) -> list[dict[str, Any]]:
        """Every JSON object line of the log so far."""
        return read_json_lines(self.log_path)

    def tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        if not self.log_path.exists():
            return "<no log>"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """JSON object lines of a log file (other lines skipped)."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"{"):
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def parse_ts(value: str) -> float:
    """A log line's ISO timestamp as epoch seconds."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    procs: Iterable[Proc] = (),
) -> T:
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` or if a watched process dies."""
    watched = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in watched:
            if not proc.alive():
                raise RuntimeError(f"waiting for {what}: {proc.name} exited:\n{proc.tail()}")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    """True when GET ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - local URL
            return bool(response.status == 200)
    except OSError:
        return False


def http_json(url: str, payload: Mapping[str, Any] | None = None) -> Any:
    """GET (or POST ``payload`` as JSON to) a local URL and decode the JSON answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - local URL
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


# -- memory ---------------------------------------------------------------------------------------


def proc_status_kb(pid: int | str, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` field in kB (VmRSS, VmHWM), or None if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_rss_kb(pid: int) -> int:
    """VmRSS of a process and all its descendants (kB), e.g. a prefork Celery worker."""
    total = 0
    for child in [pid, *descendants(pid)]:
        total += proc_status_kb(child, "VmRSS") or 0
    return total


def descendants(pid: int) -> list[int]:
    """Pids of every descendant of ``pid`` (via /proc/<pid>/task/*/children)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    kids = [int(p) for p in fh.read().split()]
            except OSError:
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


# -- the context ----------------------------------------------------------------------------------


@dataclass
class RedisLease:
    """A Redis database this run holds alone (empty when taken, emptied when given back)."""

    url: str
    client: Any
    token: str

    def still_mine(self) -> bool:
        """True while the lease key is ours."""
        return bool(self.client.get(LEASE_KEY) == self.token.encode())

    def renew(self) -> None:
        """Push the lease's expiry out again (long phases)."""
        if self.still_mine():
            self.client.expire(LEASE_KEY, LEASE_SECONDS)

    def clear(self) -> None:
        """Delete every key but the lease (between phases: broker queue, locks, rate limits)."""
        if not self.still_mine():
            raise RuntimeError(f"lost the Redis lease on {self.url}")
        keys = [k for k in self.client.scan_iter(count=1000) if k != LEASE_KEY.encode()]
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start : start + 500])
        self.renew()

    def release(self) -> None:
        """Empty the database and give it back (unless someone else holds it by now)."""
        with contextlib.suppress(Exception):
            if self.still_mine():
                self.client.flushdb()
        with contextlib.suppress(Exception):
            self.client.close()


def lease_redis_db(base_url: str = REDIS_BASE_URL, wait: float = 120.0) -> RedisLease:
    """Take an empty Redis database (preferring /13) with the e2e tests' lease protocol."""
    import redis

    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    root = base_url.rstrip("/")
    # A URL that already names a database (redis://host:6379/13) keeps only its host part.
    parsed = urllib.parse.urlsplit(root)
    if parsed.path.strip("/").isdigit():
        root = urllib.parse.urlunsplit(parsed._replace(path=""))
    while True:
        for db in REDIS_DB_CANDIDATES:
            url = f"{root}/{db}"
            client = redis.Redis.from_url(url)
            if client.dbsize() == 0 and client.set(LEASE_KEY, token, nx=True, ex=LEASE_SECONDS):
                return RedisLease(url, client, token)
            client.close()
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no empty Redis database among {REDIS_DB_CANDIDATES} at {root}")
        time.sleep(1.0)


def schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with ``search_path`` set to ``schema`` (the tests' pg_schema_url pattern)."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


@dataclass
class Context:
    """One benchmark run: keys, a work directory, the leased Redis DB, schemas and processes."""

    workdir: Path
    pg_base_url: str = PG_BASE_URL
    redis_base_url: str = REDIS_BASE_URL
    secret_key: str = field(default_factory=generate_secret_key)
    encryption_key: str = field(default_factory=generate_key)
    keep_workdir: bool = False
    procs: list[Proc] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    runtimes: list[Runtime] = field(default_factory=list)
    _redis: RedisLease | None = None
    _closed: bool = False

    @classmethod
    def create(cls, *, keep_workdir: bool = False, configure_logs: bool = True) -> Context:
        """A context with a fresh work directory; cleaned up at exit whatever happens.

        ``configure_logs`` sends this process's freshtoken log lines to a file in the work
        directory (the benchmark driver); a test suite keeps its own logging instead.
        """
        workdir = Path(tempfile.mkdtemp(prefix="freshtoken-bench-"))
        ctx = cls(workdir=workdir, keep_workdir=keep_workdir)
        if configure_logs:
            configure_logging(
                "INFO", "json", stream=(workdir / "bench-process.log").open("a", encoding="utf-8")
            )
        atexit.register(ctx.close)
        return ctx

    # -- services ---------------------------------------------------------------------------

    @property
    def redis(self) -> RedisLease:
        """The leased Redis database (taken on first use)."""
        if self._redis is not None and not self._redis.still_mine():
            # Someone else's test run flushed or took the database between two benchmarks (the
            # lease protocol is only a convention): take another one for what follows.
            log(f"redis: lost the lease on {self._redis.url}; leasing another database")
            self._redis = None
        if self._redis is None:
            self._redis = lease_redis_db(self.redis_base_url)
            log(f"redis: leased {self._redis.url}")
        return self._redis

    def new_schema(self, prefix: str = "bench") -> str:
        """Create an empty schema of our own; returns its database URL."""
        schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.pg_base_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            engine.dispose()
        self.schemas.append(schema)
        return schema_url(self.pg_base_url, schema)

    def drop_schema(self, url: str) -> None:
        """Drop one schema created by :meth:`new_schema`."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        schema = query["options"][0].split("=", 1)[1]
        engine = create_engine(self.pg_base_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            engine.dispose()
        if schema in self.schemas:
            self.schemas.remove(schema)

    def settings(self, database_url: str, *, redis: bool = True, **overrides: Any) -> Settings:
        """Settings for an in-process runtime on ``database_url`` (our keys, our Redis DB)."""
        values: dict[str, Any] = {
            "data_dir": self.workdir / "data",
            "database_url": database_url,
            "redis_url": self.redis.url if redis else None,
            "secret_key": self.secret_key,
            "encryption_key": self.encryption_key,
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)

    def runtime(
        self, database_url: str, *, migrate_schema: bool = True, **overrides: Any
    ) -> Runtime:
        """A runtime on ``database_url``, migrated, closed with the context."""
        runtime = build_runtime(self.settings(database_url, **overrides))
        if migrate_schema:
            migrate.upgrade(runtime.engine)
        self.runtimes.append(runtime)
        return runtime

    def env(self, database_url: str, **settings: object) -> dict[str, str]:
        """A freshtoken process's environment: ours minus FRESHTOKEN_*/CELERY_*, plus these."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHTOKEN_", "CELERY_"))}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "FRESHTOKEN_DATABASE_URL": database_url,
                "FRESHTOKEN_REDIS_URL": self.redis.url,
                "FRESHTOKEN_DATA_DIR": str(self.workdir / "data"),
                "FRESHTOKEN_SECRET_KEY": self.secret_key,
                "FRESHTOKEN_ENCRYPTION_KEY": self.encryption_key,
                "FRESHTOKEN_LOG_FORMAT": "json",
                "FRESHTOKEN_LOG_LEVEL": "INFO",
                # Token endpoints here are on 127.0.0.1: allowed explicitly wherever freshtoken
                # has an outbound-address policy (an unknown FRESHTOKEN_* variable is ignored).
                "FRESHTOKEN_OUTBOUND_ALLOW_PRIVATE": "true",
            }
        )
        env.update({f"FRESHTOKEN_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    # -- processes --------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Proc:
        """Start ``argv`` in its own session from the repository root, logging to a file."""
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as fh:
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        """Stop one process (and its group)."""
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def mock_provider(self, name: str, *, latency: float, lifetime: float) -> tuple[Proc, str]:
        """``freshtoken mock-provider`` (rotation and reuse detection on) on a free port."""
        port = free_port()
        proc = self.start(
            name,
            [
                *CLI,
                "mock-provider",
                "--port",
                str(port),
                "--latency",
                str(latency),
                "--lifetime",
                str(lifetime),
            ],
            self.env("sqlite://"),
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/health"), 30, f"{name} listening", procs=[proc])
        return proc, url

    def bench_provider(
        self, name: str, *, latency: float = 0.0, lifetime: float = 3600.0
    ) -> tuple[Proc, str]:
        """:mod:`benchmarks.provider` (rotation, reuse detection, issue timeline) on a free port."""
        port = free_port()
        argv = [sys.executable, "-m", "benchmarks.provider", "--port", str(port)]
        argv += ["--latency", str(latency), "--lifetime", str(lifetime)]
        proc = self.start(name, argv, self.env("sqlite://"))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/health"), 30, f"{name} listening", procs=[proc])
        return proc, url

    def worker(
        self, name: str, env: Mapping[str, str], *, concurrency: int, pool: str = "prefork"
    ) -> Proc:
        """``freshtoken worker``, waited for until Celery says it is ready."""
        proc = self.start(
            name,
            [
                *CLI,
                "worker",
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            env,
        )
        wait_until(
            lambda: any(str(e.get("event", "")).endswith(" ready.") for e in proc.json_lines()),
            90,
            f"{name} ready",
            interval=0.3,
            procs=[proc],
        )
        return proc

    def beat(self, name: str, env: Mapping[str, str]) -> Proc:
        """``freshtoken beat`` with a data dir of its own."""
        data_dir = self.workdir / f"{name}-data"
        proc = self.start(name, [*CLI, "beat"], {**env, "FRESHTOKEN_DATA_DIR": str(data_dir)})
        wait_until(
            lambda: any(e.get("event") == "beat: Starting..." for e in proc.json_lines()),
            60,
            f"{name} started",
            interval=0.3,
            procs=[proc],
        )
        return proc

    def api(
        self, name: str, env: Mapping[str, str], *, module: str | None = None, workers: int = 1
    ) -> tuple[Proc, str]:
        """An API server on a free port (``freshtoken api``, or ``python -m <module> --port``)."""
        port = free_port()
        if module is None:
            argv = [*CLI, "api", "--host", "127.0.0.1", "--port", str(port)]
            if workers != 1:
                argv += ["--workers", str(workers)]
        else:
            argv = [sys.executable, "-m", module, "--port", str(port)]
        proc = self.start(name, argv, env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/health"), 60, f"{name} healthy", procs=[proc])
        return proc, url

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process, dispose runtimes, drop schemas, give the Redis DB back."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout=3)
        self.procs.clear()
        for runtime in self.runtimes:
            with contextlib.suppress(Exception):
                runtime.close()
        for schema in list(self.schemas):
            with contextlib.suppress(Exception):
                engine = create_engine(self.pg_base_url, isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                engine.dispose()
        self.schemas.clear()
        if self._redis is not None:
            self._redis.release()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def autocommit_engine(url: str) -> Engine:
    """An AUTOCOMMIT engine (VACUUM cannot run inside a transaction)."""
    return create_engine(url, isolation_level="AUTOCOMMIT")
