"""Pieces of a chaos run shared by the chaos test and the ``heal`` benchmark (issue #16).

``tests/integration/test_chaos.py`` (CI-sized, asserting) and ``benchmarks/heal.py`` (the issue's
timeline, measuring) inject the same faults into the same kind of stack (real freshtoken
processes on the private PostgreSQL and Redis of ``tests/fault_helpers.py``, the in-process mock
provider); what they record and how they measure healing lives here, once:

* :class:`Readers`: steady reads of random connections through one or more APIs, every answer
  kept (:class:`Read`), optionally with the provider's verdict on the token handed out;
* :class:`Fault`: one fault on the timeline (wall clock);
* :class:`Supervisor`: restarts a worker or beat that exits, as compose's ``restart:`` or
  systemd's ``Restart=on-failure`` would, and records the exit codes;
* :func:`refresh_successes` and :func:`median_next_refresh`: the issue's time-to-heal figure;
* :func:`end_injected_failures`: end a provider outage made of queued injections.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

import httpx

from freshtoken.mockprovider import MockProvider


def epoch(value: str) -> float:
    """An ISO-8601 timestamp (``Z`` or offset) as epoch seconds."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclasses.dataclass(frozen=True)
class Read:
    """One read: when (wall clock), through which API, the answer, and the served token."""

    started: float
    ended: float
    connection_id: str
    status: int  # 0: no HTTP answer (connection error or client timeout)
    expires_at: float | None
    api: int = 0
    # The provider's verdict on the access token when the answer arrived (None: not checked).
    token_valid: bool | None = None

    @property
    def expired(self) -> bool:
        """A 200 whose token had already expired when the answer arrived."""
        return self.status == 200 and self.expires_at is not None and self.expires_at <= self.ended


@dataclasses.dataclass
class Fault:
    """One fault on the timeline (wall clock); ``ended`` is when the system was whole again."""

    name: str
    began: float
    ended: float = 0.0


class Readers:
    """Threads reading random connections until stopped, round robin over ``bases``.

    Closed loop with a jittered pause: a read that waits (on a lock, on a database that is
    down) holds up one thread, not the others, so reads keep arriving during a fault.
    """

    def __init__(
        self,
        bases: Sequence[str],
        names: Sequence[str],
        *,
        headers: Mapping[str, str],
        key: str,
        threads: int = 4,
        pause: float = 0.15,
        timeout: float = 20.0,
        token_valid: Callable[[str], bool] | None = None,
    ) -> None:
        self.reads: list[Read] = []
        self._bases = list(bases)
        self._names = list(names)
        self._headers = dict(headers)
        self._key = key
        self._pause = pause
        self._timeout = timeout
        self._token_valid = token_valid
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"reader-{i}", daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Readers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread and wait for it (bounded by the client timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(self._timeout + 10)

    def snapshot(self) -> list[Read]:
        """The reads so far."""
        with self._lock:
            return list(self.reads)

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        api = index % len(self._bases)
        with httpx.Client(
            base_url=self._bases[api], headers=self._headers, timeout=self._timeout
        ) as client:
            while not self._stop.is_set():
                name = self._names[rng.randrange(len(self._names))]
                started = time.time()
                expires: float | None = None
                valid: bool | None = None
                try:
                    response = client.get(
                        f"/connections/{name}", params={"provider_config_key": self._key}
                    )
                    status = response.status_code
                    if status == 200:
                        credentials = response.json()["credentials"]
                        expires = epoch(credentials["expires_at"])
                        if self._token_valid is not None:
                            valid = self._token_valid(credentials["access_token"])
                except httpx.HTTPError:
                    status = 0
                read = Read(started, time.time(), name, status, expires, api, valid)
                with self._lock:
                    self.reads.append(read)
                self._stop.wait(self._pause * (0.5 + rng.random()))


class SupervisedProcess(Protocol):
    """What the supervisor needs of a process (``tests.e2e_helpers.Proc``, ``benchmarks``')."""

    @property
    def popen(self) -> Any:
        """The ``subprocess.Popen`` (its ``returncode`` once it exited)."""

    def alive(self) -> bool:
        """True while it runs."""


class Supervisor:
    """Restart a process that exits (compose's ``restart:``, systemd's ``Restart=on-failure``).

    ``live`` maps a role ("worker-1", "beat") to its current process; ``restart(role, n)`` starts
    the ``n``-th replacement and returns it. :meth:`paused` lets a test replace a process by
    hand (a SIGKILL followed by a later start) without the supervisor racing it.
    """

    def __init__(
        self,
        live: MutableMapping[str, Any],
        restart: Callable[[str, int], Any],
        interval: float = 0.5,
    ) -> None:
        self.live = live
        self.restarts: list[tuple[str, int | None, float]] = []  # role, exit code, when
        self._restart = restart
        self._interval = interval
        self._done = threading.Event()
        self._active = threading.Event()
        self._active.set()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self) -> Supervisor:
        """Start supervising; returns self."""
        self._thread.start()
        return self

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 120.0) -> None:
        """Stop supervising (a restart under way finishes first)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def pause(self) -> None:
        """Stop restarting until :meth:`resume` (the caller replaces a process itself)."""
        self._active.clear()

    def resume(self) -> None:
        """Restart exited processes again."""
        self._active.set()

    def failure_exits_only(self) -> bool:
        """True when every exit the supervisor saw was a failure exit (a restart policy's cue)."""
        return all(code not in (0, None) for _role, code, _when in self.restarts)

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            for role, proc in list(self.live.items()):
                if self._active.is_set() and not self._done.is_set() and not proc.alive():
                    self.restarts.append((role, proc.popen.returncode, time.time()))
                    self.live[role] = self._restart(role, len(self.restarts))


def refresh_successes(lines: Iterable[Mapping[str, Any]]) -> list[tuple[float, int]]:
    """(wall time, connection pk) of every successful refresh among JSON log lines, in order."""
    return sorted(
        (epoch(str(e["timestamp"])), int(e["connection_pk"]))
        for e in lines
        if e.get("event") == "token.refresh" and e.get("outcome") == "success"
    )


def median_next_refresh(
    since: float, pks: Iterable[int], successes: Sequence[tuple[float, int]]
) -> float:
    """The issue's time to heal: median over connections of ``since`` to its next success.

    Connections with no success after ``since`` are left out (NaN when none has one).
    """
    first: dict[int, float] = {}
    for when, pk in successes:
        if when >= since and pk not in first:
            first[pk] = when
    waits = [first[pk] - since for pk in pks if pk in first]
    return statistics.median(waits) if waits else float("nan")


def end_injected_failures(provider: MockProvider) -> None:
    """End an outage made of queued injections now, whatever is left of the queue.

    The mock provider has no public call for this; this is the one place that reaches in.
    """
    with provider._lock:
        provider._injections.clear()
