"""Private PostgreSQL and Redis servers that fault-injection tests may stop, restart and freeze.

The shared services (PostgreSQL on 5432, Redis on 6379) belong to other test runs and CI and are
never touched here. Each test that injects faults gets its own throwaway servers instead:

* :func:`private_redis` runs ``redis-server`` on a free port, without persistence, as a child
  process that can be stopped, started again on the same port, or frozen with SIGSTOP.
* :func:`private_postgres` runs ``initdb`` into a temporary directory owned by the ``postgres``
  OS user (PostgreSQL refuses to run as root) and controls the cluster with ``pg_ctl``.

Both are context managers whose ``finally`` stops the server, kills any process of it that is
left (by the pids they recorded, never by name) and removes its directory; an ``atexit`` hook does
the same if a test run is interrupted before teardown. Everything listens on 127.0.0.1 only.

When a binary is missing the test is skipped, or fails when ``FRESHTOKEN_REQUIRE_SERVICES=1``.
:class:`LoadGenerator` drives a bounded stream of reads through the HTTP API and records every
answer with its timing, so a test can tell what happened before, during and after a fault.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

REQUIRE_SERVICES = os.environ.get("FRESHTOKEN_REQUIRE_SERVICES") == "1"

# pids of server processes started here (Redis servers and postmasters): killed at exit if a
# fixture never got to its teardown.
_LIVE_PIDS: set[int] = set()
_LIVE_DIRS: set[str] = set()


def _cleanup_leftovers() -> None:
    for pid in list(_LIVE_PIDS):
        _kill_tree(pid)
    for path in list(_LIVE_DIRS):
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup_leftovers)


def unavailable(what: str) -> NoReturn:
    """Skip the test, or fail it when FRESHTOKEN_REQUIRE_SERVICES=1 (as CI sets)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} (required: FRESHTOKEN_REQUIRE_SERVICES=1)")
    pytest.skip(what)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout):
        return True
    return False


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found: list[int] = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(stat).read_text()
            # The command name is in parentheses and may contain spaces: split after it.
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[1]) == pid:
                found.append(int(stat.split("/")[2]))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant of it (collected before the kill)."""
    tree = [pid]
    index = 0
    while index < len(tree):
        tree.extend(_children(tree[index]))
        index += 1
    for victim in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGCONT)  # a frozen process still dies, but be explicit
            os.kill(victim, signal.SIGKILL)
    _LIVE_PIDS.discard(pid)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


# -- Redis ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 that the test may stop, restart and freeze."""

    binary: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (database 0: the server is ours alone)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        """A client with short timeouts (for the test's own checks)."""
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2
        )

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("redis-server already running")
        log = (self.workdir / "redis.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE_PIDS.add(self.proc.pid)
        wait_for(self._pings, 10, f"redis-server on port {self.port}")

    def _pings(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(
                f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}"
            )
        import redis

        try:
            client = self.client()
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM: no persistence configured, so it exits at once)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _kill_tree(proc.pid)
                proc.wait(5)
        _LIVE_PIDS.discard(proc.pid)
        self.proc = None
        wait_for(lambda: not port_open(self.port), 5, f"port {self.port} closed")

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop, kill whatever is left, and remove the working directory."""
        try:
            self.stop()
        finally:
            if self.proc is not None:
                _kill_tree(self.proc.pid)
            shutil.rmtree(self.workdir, ignore_errors=True)
            _LIVE_DIRS.discard(str(self.workdir))


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    """A started private Redis server, always stopped and removed afterwards."""
    binary = os.environ.get("FRESHTOKEN_REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        unavailable("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="freshtoken-redis-"))
    _LIVE_DIRS.add(str(workdir))
    server = RedisServer(binary, free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.close()


# -- PostgreSQL -----------------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``: FRESHTOKEN_PG_BINDIR, the newest Debian one, PATH."""
    candidates: list[Path] = []
    if os.environ.get("FRESHTOKEN_PG_BINDIR"):
        candidates.append(Path(os.environ["FRESHTOKEN_PG_BINDIR"]))

    def version(path: str) -> int:
        with contextlib.suppress(ValueError, IndexError):
            return int(Path(path).parts[-2])
        return 0

    candidates.extend(
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


@dataclasses.dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1, run as the ``postgres`` OS user when root."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None  # "postgres" when we are root, else None (run as ourselves)

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """Where the server puts its Unix socket (not the shared /var/run/postgresql)."""
        return self.root / "sock"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            self._cmd(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stdout.decode(errors='replace')[-1500:]}"
                f"{result.stderr.decode(errors='replace')[-1500:]}"
            )

    def init(self) -> None:
        """``initdb`` with trust auth and superuser ``postgres``."""
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )

    def start(self) -> None:
        """``pg_ctl start`` and wait until connections are accepted."""
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=100",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )
        pid = self.postmaster_pid()
        if pid is not None:
            _LIVE_PIDS.add(pid)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE`` (fast: disconnect clients, clean shutdown) and wait."""
        pid = self.postmaster_pid()
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"
        )
        if pid is not None:
            _LIVE_PIDS.discard(pid)
        wait_for(lambda: not port_open(self.port), 10, f"port {self.port} closed")

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (first line of postmaster.pid), if any."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return None

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for ``database`` over TCP."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a database and return its SQLAlchemy URL."""
        import psycopg

        name = name or f"ft_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop (immediate), kill any process left of the cluster, remove its directory."""
        try:
            pid = self.postmaster_pid()
            if pid is not None and _alive(pid):
                with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                    self._run(
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "10",
                        "stop",
                        timeout=20,
                    )
                if _alive(pid):
                    _kill_tree(pid)
                _LIVE_PIDS.discard(pid)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            _LIVE_DIRS.discard(str(self.root))


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    """A started throwaway PostgreSQL cluster, always stopped and removed afterwards."""
    bindir = find_pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as: str | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the postgres OS user.
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' OS user to run PostgreSQL")
        if shutil.which("runuser") is None:
            unavailable("running as root and runuser is not installed")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="freshtoken-pg-"))
    _LIVE_DIRS.add(str(root))
    cluster = PostgresCluster(bindir, root, free_port(), run_as)
    try:
        cluster.socket_dir.mkdir()
        if run_as is not None:
            for path in (root, cluster.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- load -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    """One request of the load: when it started and ended (monotonic), and what came back."""

    started: float
    ended: float
    target: str
    status: int  # 0: no HTTP answer (connection error or client timeout)
    code: str | None  # the error envelope's ``error.code``, if any
    error: str | None = None  # exception name when there was no answer


def envelope_code(response: httpx.Response) -> str | None:
    """``error.code`` of an error envelope, or None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


class LoadGenerator:
    """``threads`` readers issuing GETs on ``paths`` (round robin with jitter) until stopped.

    Each thread has its own client (keep-alive) and sleeps ``pause`` seconds between requests so
    that load stays bounded on small machines. Every answer is kept as a :class:`Sample`.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        paths: Sequence[str],
        *,
        threads: int = 20,
        pause: float = 0.02,
        timeout: float = 15.0,
    ) -> None:
        self._base_url = base_url
        self._headers = headers
        self._paths = list(paths)
        self._threads_n = threads
        self._pause = pause
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.samples: list[Sample] = []

    def __enter__(self) -> LoadGenerator:
        for i in range(self._threads_n):
            thread = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every reader and wait for it (bounded by the client timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout + 5)

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(
            base_url=self._base_url, headers=self._headers, timeout=self._timeout
        ) as client:
            while not self._stop.is_set():
                path = self._paths[rng.randrange(len(self._paths))]
                started = time.monotonic()
                try:
                    response = client.get(path)
                    sample = Sample(
                        started,
                        time.monotonic(),
                        path,
                        response.status_code,
                        envelope_code(response) if response.status_code >= 400 else None,
                    )
                except httpx.HTTPError as exc:
                    sample = Sample(started, time.monotonic(), path, 0, None, type(exc).__name__)
                with self._lock:
                    self.samples.append(sample)
                self._stop.wait(self._pause * (0.5 + rng.random()))

    def between(self, start: float, end: float) -> list[Sample]:
        """Samples whose request started and ended inside ``[start, end]``."""
        with self._lock:
            return [s for s in self.samples if s.started >= start and s.ended <= end]

    def after(self, start: float) -> list[Sample]:
        """Samples whose request started at or after ``start``."""
        with self._lock:
            return [s for s in self.samples if s.started >= start]
