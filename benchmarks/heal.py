"""Benchmark 10: time to heal after faults under load (issue #16's chaos timeline).

The stack is the chaos test's (``tests/integration/test_chaos.py``), at the issue's shape: a
*private* PostgreSQL cluster and a *private* Redis server (``tests/fault_helpers.py``: started
for this benchmark, stopped and restarted by it; the machine's shared PostgreSQL and Redis are
never touched), 2 ``freshtoken api`` processes, 2 ``freshtoken worker`` processes (prefork), 1
``freshtoken beat``, and the project's mock provider (in this process) as a strict provider:
refresh-token rotation with reuse detection and no reuse grace, short tokens, ~100 ms per call.
Connections are imported with expiries spread over one refresh period, then reads of random
connections arrive steadily through both APIs (:class:`tests.chaos_helpers.Readers`), a
supervisor restarts a worker or beat that exits (as compose's ``restart:`` would), and the
faults come in turn, each followed by a window of one scan interval plus the scan's longest
retry backoff (the issue's healing target) before the next:

1. SIGKILL of a busy worker (whole process group, while a provider call is in flight), its
   replacement started ``replace_after_s`` later (the fault ends when it is ready);
2. Redis stopped for ``redis_down_s`` (no persistence: queued tasks and locks are lost);
3. PostgreSQL stopped (fast shutdown) and started again after ``pg_down_s``;
4. the provider answering 500 to every token call for ``provider_500_s``.

Measured per fault, over the fault and the window after it:

* **time to heal**: fault end until every connection is fresh again and stays so until the next
  fault (None: still not healed when the window ended). *Fresh* is sampled from the database
  every ``sample_every_s``: the stored token expires later than freshtoken's read margin for it
  (a read would not have to wait on the provider); connections that need re-authorisation are
  counted apart, since nothing but their user can heal them;
* the issue's figure: median over connections of fault end to the connection's next successful
  refresh (from every process's ``token.refresh`` lines), next to the same figure from a moment
  without a fault;
* reads refused (any answer but 200) during the fault and after it ended; expired tokens served
  (a 200 whose ``expires_at`` had passed when the answer arrived) and tokens the provider no
  longer accepted when the answer arrived; refresh tokens presented again after they were spent
  (``reuse_detected`` + ``grace_accepted`` at the provider); connections that came to need
  re-authorisation, with the ``error_code`` that said so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.chaos_helpers import (
    Fault,
    Read,
    Readers,
    Supervisor,
    end_injected_failures,
    epoch,
    median_next_refresh,
    refresh_successes,
)
from tests.fault_helpers import PostgresCluster, RedisServer, private_postgres, private_redis
from tests.support import add_oauth2_connection

from benchmarks.common import Context, Proc, log
from freshtoken import migrate
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh import policy
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.store.models import Connection

KEY = "mock"  # the integration tests.support.add_oauth2_connection creates


@dataclass(frozen=True)
class HealSizes:
    """The timeline and the load."""

    connections: int = 300
    lifetime_s: float = 90.0
    latency_s: float = 0.1
    read_rate: float = 20.0  # reads/s over both APIs (closed loop per reader thread)
    reader_threads: int = 8
    # The scan interval keeps the production proportion to the token lifetime (30 s of 10
    # minutes = 1/20; 4.5 s of 90 s): at the default 30 s a 90-s token would reach its read
    # margin between two scans even without a fault.
    scan_interval_s: float = 5.0
    # FRESHTOKEN_SCAN_RETRY_AFTER_FAILURE_SECONDS, at its production default.
    retry_backoff_max_s: int = 30
    warmup_s: float = 15.0
    replace_after_s: float = 10.0
    redis_down_s: float = 15.0
    pg_down_s: float = 10.0
    provider_500_s: float = 20.0
    tail_extra_s: float = 10.0  # the last window is this much longer (then the final check)
    worker_concurrency: int = 2
    sample_every_s: float = 1.0

    @property
    def target_s(self) -> float:
        """The issue's healing target: one scan interval plus the (longest) retry backoff."""
        return self.scan_interval_s + self.retry_backoff_max_s


def servers_available() -> str | None:
    """Why the private servers cannot be started here (None: they can)."""
    from tests.fault_helpers import find_pg_bindir

    if not (os.environ.get("FRESHTOKEN_REDIS_SERVER") or shutil.which("redis-server")):
        return "redis-server is not installed"
    if find_pg_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    return None


@dataclass(frozen=True)
class Sample:
    """The database at one moment: connections not fresh, and needing re-authorisation."""

    at: float
    stale: frozenset[int] | None  # None: the database did not answer
    reauth: frozenset[int] = frozenset()

    @property
    def clean(self) -> bool:
        """Every connection that can be fresh is."""
        return self.stale is not None and not self.stale


class FreshnessSampler:
    """A thread reading every connection's stored expiry every ``every`` seconds."""

    def __init__(self, runtime: Runtime, every: float) -> None:
        self.samples: list[Sample] = []
        self._runtime = runtime
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness", daemon=True)

    def __enter__(self) -> FreshnessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def sample(self) -> Sample:
        """One sample now (the database being down is a sample too)."""
        runtime = self._runtime
        now = runtime.clock.now()
        try:
            with runtime.session_factory() as session:
                rows = list(
                    session.scalars(select(Connection).where(Connection.deleted_at.is_(None)))
                )
        except Exception:  # down or restarting: the pool reconnects (pre-ping) next time
            return Sample(time.time(), None)
        stale, reauth = set(), set()
        for row in rows:
            if row.needs_reauth or row.refresh_exhausted:
                reauth.add(row.id)
                continue
            margin = policy.read_margin(row, runtime.catalog.get(row.provider), runtime.settings)
            if row.expires_at is None or (row.expires_at - now).total_seconds() <= margin:
                stale.add(row.id)
        return Sample(time.time(), frozenset(stale), frozenset(reauth))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, self._every - (time.monotonic() - started)))


@dataclass
class _Stack:
    """What one run started: servers, provider, runtime, processes."""

    redis: RedisServer
    pg: PostgresCluster
    provider: MockProvider
    runtime: Runtime
    env: dict[str, str]
    started: list[Proc]


@contextlib.contextmanager
def _stack(ctx: Context, sizes: HealSizes) -> Iterator[_Stack]:
    """Private servers, the provider and the import runtime; torn down in reverse order."""
    with contextlib.ExitStack() as cleanup:
        try:
            redis = cleanup.enter_context(private_redis())
            pg = cleanup.enter_context(private_postgres())
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            # fault_helpers speaks pytest (skip or fail); a benchmark section fails instead.
            raise RuntimeError(f"heal needs private PostgreSQL and Redis servers: {exc}") from None
        database_url = pg.create_database()
        provider = MockProvider(
            MockProviderConfig(
                token_lifetime_seconds=sizes.lifetime_s,
                latency_seconds=sizes.latency_s,
                rotate_refresh_tokens=True,
                reuse_detection=True,
                grace_seconds=0.0,
            )
        ).start()
        cleanup.callback(provider.stop)
        runtime = build_runtime(ctx.settings(database_url, redis=False))
        cleanup.callback(runtime.close)
        migrate.upgrade(runtime.engine)
        env = ctx.env(
            database_url,
            scan_interval_seconds=sizes.scan_interval_s,
            scan_retry_after_failure_seconds=sizes.retry_backoff_max_s,
            # Seven processes and their pools share the private server's 100 connections.
            db_pool_size=5,
        )
        env["FRESHTOKEN_REDIS_URL"] = redis.url
        started: list[Proc] = []

        def stop_all() -> None:
            for proc in reversed(started):
                ctx.stop(proc)

        cleanup.callback(stop_all)  # runs first: processes stop before the servers
        yield _Stack(redis, pg, provider, runtime, env, started)


def bench_heal(ctx: Context, sizes: HealSizes) -> dict[str, Any]:
    """Run the timeline once and measure how each fault heals."""
    missing = servers_available()
    if missing is not None:
        raise RuntimeError(f"heal needs private PostgreSQL and Redis servers: {missing}")
    with _stack(ctx, sizes) as st:
        return _run(ctx, sizes, st)


def _run(ctx: Context, sizes: HealSizes, st: _Stack) -> dict[str, Any]:
    rng = random.Random(16)
    names = [f"h{i}" for i in range(sizes.connections)]
    now = st.runtime.clock.now()
    probe = Connection(  # a token just issued for the lifetime: what the policy gives it
        provider="oauth2",
        credentials_type="OAUTH2",
        has_refresh_token=True,
        expires_at=now + dt.timedelta(seconds=sizes.lifetime_s),
        last_refresh_success=now,
    )
    lead = policy.refresh_lead(probe, None, st.runtime.settings)
    margin = policy.read_margin(probe, None, st.runtime.settings)

    def start(kind: str, name: str) -> Proc:
        if kind == "beat":
            proc = ctx.beat(name, st.env)
        else:
            proc = ctx.worker(name, st.env, concurrency=sizes.worker_concurrency, pool="prefork")
        st.started.append(proc)
        return proc

    log("heal: starting 2 APIs, 2 workers, beat")
    apis = []
    for i in (1, 2):
        proc, base = ctx.api(f"heal-api-{i}", st.env)
        st.started.append(proc)
        apis.append((proc, base))
    live: dict[str, Proc] = {
        "worker-1": start("worker", "heal-worker-1"),
        "worker-2": start("worker", "heal-worker-2"),
        "beat": start("beat", "heal-beat"),
    }

    # Imported once every process runs, so no token ages while they start. Expiries spread
    # over one refresh period (lead .. lifetime): nothing is due at the start, and
    # refreshes then arrive at a steady rate.
    pks = [
        add_oauth2_connection(
            st.runtime,
            st.provider,
            connection_id=name,
            lifetime_seconds=sizes.lifetime_s,
            expires_in=rng.uniform(lead, sizes.lifetime_s),
        )[0]
        for name in names
    ]
    log(f"heal: processes up; {len(pks)} connections imported")

    def restart(role: str, n: int) -> Proc:
        return start("beat" if role == "beat" else "worker", f"heal-{role}-r{n}")

    window = sizes.target_s
    faults: list[Fault] = []
    stats_at: list[dict[str, Any]] = []  # provider counters when each fault began, then at end
    details: dict[str, Any] = {}
    readers = Readers(
        [base for _proc, base in apis],
        names,
        headers={"Authorization": f"Bearer {ctx.secret_key}"},
        key=KEY,
        threads=sizes.reader_threads,
        pause=sizes.reader_threads / sizes.read_rate,
        timeout=30.0,
        token_valid=st.provider.is_access_token_valid,
    )
    sampler = FreshnessSampler(st.runtime, sizes.sample_every_s)
    supervisor = Supervisor(live, restart)
    with sampler, supervisor, readers:
        steady_from = time.time()
        time.sleep(sizes.warmup_s)

        # 1. SIGKILL a busy worker while a provider call is in flight, replaced later.
        victim = live["worker-1"]
        _wait(lambda: any(e.get("event") == "token.refresh" for e in victim.json_lines()), 30)
        _wait(lambda: st.provider.stats()["in_flight"] > 0, 20, interval=0.01)
        stats_at.append(st.provider.stats())
        fault = Fault("worker SIGKILL", time.time())
        details["in_flight_at_kill"] = stats_at[-1]["in_flight"]
        supervisor.pause()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(victim.pid, signal.SIGKILL)
        victim.popen.wait(10)
        time.sleep(max(0.0, fault.began + sizes.replace_after_s - time.time()))
        details["replacement_started_after_s"] = round(time.time() - fault.began, 1)
        live["worker-1"] = start("worker", "heal-worker-1b")
        supervisor.resume()
        fault.ended = time.time()
        faults.append(fault)
        log(f"heal: worker SIGKILLed, replaced after {fault.ended - fault.began:.1f}s")
        time.sleep(window)

        # 2. Redis down.
        stats_at.append(st.provider.stats())
        fault = Fault("Redis down", time.time())
        st.redis.stop()
        time.sleep(max(0.0, fault.began + sizes.redis_down_s - time.time()))
        st.redis.start()
        fault.ended = time.time()
        faults.append(fault)
        log(f"heal: Redis back after {fault.ended - fault.began:.1f}s")
        time.sleep(window)

        # 3. PostgreSQL restarted.
        stats_at.append(st.provider.stats())
        fault = Fault("PostgreSQL restart", time.time())
        st.pg.stop()
        time.sleep(max(0.0, fault.began + sizes.pg_down_s - time.time()))
        st.pg.start()
        fault.ended = time.time()
        faults.append(fault)
        log(f"heal: PostgreSQL back after {fault.ended - fault.began:.1f}s")
        time.sleep(window)

        # 4. The provider answers 500 to every token call.
        stats_at.append(st.provider.stats())
        fault = Fault("provider 500s", time.time())
        # More failures than calls in any outage here (queuing them takes the provider's lock:
        # a million would hold it for seconds); the outage ends when the queue is cleared.
        st.provider.inject("500", count=50_000)
        time.sleep(max(0.0, fault.began + sizes.provider_500_s - time.time()))
        end_injected_failures(st.provider)
        fault.ended = time.time()
        faults.append(fault)
        log(f"heal: provider healthy after {fault.ended - fault.began:.1f}s")
        time.sleep(window + sizes.tail_extra_s)
        timeline_end = time.time()
        stats_at.append(st.provider.stats())
    # Readers, sampler and supervisor stopped (in that order): the final check and the evidence.
    final = _final_check(apis[0][1], ctx.secret_key, names, st, pks, timeout=window)
    procs_alive = {p.name: p.alive() for p in [*(p for p, _ in apis), *live.values()]}
    lines = [e for proc in st.started for e in proc.json_lines()]
    return _results(
        sizes,
        faults=faults,
        stats_at=stats_at,
        steady_from=steady_from,
        timeline_end=timeline_end,
        reads=readers.reads,
        samples=sampler.samples,
        lines=lines,
        pks=pks,
        names=names,
        lead=lead,
        margin=margin,
        details=details,
        restarts=supervisor.restarts,
        final=final,
        procs_alive=procs_alive,
        provider_stats=st.provider.stats(),
    )


def _wait(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """Poll until true or ``timeout``; the timeline goes on either way (False: timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _final_check(
    base: str, secret_key: str, names: list[str], st: _Stack, pks: list[int], timeout: float
) -> dict[str, Any]:
    """Every connection that can be fresh reads 200 with a token the provider accepts."""
    with st.runtime.session_factory() as session:
        reauth = set(
            session.scalars(
                select(Connection.connection_id).where(
                    Connection.id.in_(pks),
                    Connection.needs_reauth.is_(True) | Connection.refresh_exhausted.is_(True),
                )
            )
        )
    wanted = [n for n in names if n not in reauth]
    not_fresh = list(wanted)
    deadline = time.monotonic() + timeout
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {secret_key}"}, timeout=30
    ) as client:
        while not_fresh and time.monotonic() < deadline:
            still = []
            for name in not_fresh:
                r = client.get(f"/connections/{name}", params={"provider_config_key": KEY})
                token = r.json()["credentials"]["access_token"] if r.status_code == 200 else ""
                if not token or not st.provider.is_access_token_valid(token):
                    still.append(name)
            not_fresh = still
            if not_fresh:
                time.sleep(1.0)
    return {"checked": len(wanted), "not_fresh": not_fresh, "needs_reauth": sorted(reauth)}


def _heal_time(samples: list[Sample], ended: float, until: float) -> float | None:
    """Fault end until the first clean sample after which every sample up to ``until`` is clean.

    0 when every sample from the fault's end on was clean; None when the last one was not.
    """
    window = [s for s in samples if ended <= s.at < until]
    if not window:
        return None
    last_bad = max((i for i, s in enumerate(window) if not s.clean), default=None)
    if last_bad is None:
        return 0.0
    if last_bad == len(window) - 1:
        return None
    return window[last_bad + 1].at - ended


def _results(
    sizes: HealSizes,
    *,
    faults: list[Fault],
    stats_at: list[dict[str, Any]],
    steady_from: float,
    timeline_end: float,
    reads: list[Read],
    samples: list[Sample],
    lines: list[dict[str, Any]],
    pks: list[int],
    names: list[str],
    lead: float,
    margin: float,
    details: dict[str, Any],
    restarts: list[tuple[str, int | None, float]],
    final: dict[str, Any],
    procs_alive: dict[str, bool],
    provider_stats: dict[str, Any],
) -> dict[str, Any]:
    successes = refresh_successes(lines)
    # When each connection came to need re-authorisation: its first permanent failure in the
    # logs, or (if earlier, or no line says so) the first sample that showed it.
    first_reauth: dict[int, float] = {}
    reauth_codes: dict[int, str] = {}
    for e in lines:
        if e.get("event") == "token.refresh" and e.get("error_class") == "permanent":
            pk, at = int(e["connection_pk"]), epoch(str(e["timestamp"]))
            if at < first_reauth.get(pk, float("inf")):
                first_reauth[pk] = at
                reauth_codes[pk] = str(e.get("error_code"))
    for s in samples:
        for pk in s.reauth:
            first_reauth[pk] = min(first_reauth.get(pk, s.at), s.at)
    pk_of = dict(zip(names, pks, strict=True))

    def refused(r: Read) -> bool:
        """Refused, not counting a connection that needed re-authorisation by then (those
        answer 4xx by design until their user comes back)."""
        at = first_reauth.get(pk_of[r.connection_id])
        return r.status != 200 and (at is None or r.started < at)

    def refused_reauth(r: Read) -> bool:
        return r.status != 200 and not refused(r)

    healable = [pk for pk in pks if pk not in first_reauth]

    def reused(a: dict[str, Any], b: dict[str, Any]) -> int:
        return int(
            b["reuse_detected"] - a["reuse_detected"] + b["grace_accepted"] - a["grace_accepted"]
        )

    per_fault: list[dict[str, Any]] = []
    for i, f in enumerate(faults):
        until = faults[i + 1].began if i + 1 < len(faults) else timeline_end
        during = [r for r in reads if f.began <= r.started < f.ended]
        after = [r for r in reads if f.ended <= r.started < until]
        both = during + after
        refused_after = [r for r in after if refused(r)]
        healed_by = Counter(
            str(e.get("trigger"))
            for e in lines
            if e.get("event") == "token.refresh"
            and e.get("outcome") == "success"
            and f.ended <= epoch(str(e["timestamp"])) < until
        )
        stale_counts = [len(s.stale) for s in samples if f.began <= s.at < until and s.stale]
        first_after = next((s for s in samples if s.at >= f.ended and s.stale is not None), None)
        last_in = next(
            (s for s in reversed(samples) if f.ended <= s.at < until and s.stale is not None), None
        )
        reauth_here = sorted(pk for pk, at in first_reauth.items() if f.began <= at < until)
        heal = _heal_time(samples, f.ended, until)
        per_fault.append(
            {
                "fault": f.name,
                "duration_s": round(f.ended - f.began, 1),
                "window_s": round(until - f.ended, 1),
                "heal_s": None if heal is None else round(heal, 1),
                "healed_within_target": heal is not None and heal <= sizes.target_s,
                "median_next_refresh_s": round(
                    median_next_refresh(f.ended, healable, successes), 1
                ),
                "stale_peak": max(stale_counts, default=0),
                "refreshes_after_by_trigger": dict(healed_by),
                "stale_at_end": len(first_after.stale or ()) if first_after else None,
                "stale_at_window_end": len(last_in.stale or ()) if last_in else None,
                "reads_during": len(during),
                "refused_during": sum(1 for r in during if refused(r)),
                "reads_after": len(after),
                "refused_after": len(refused_after),
                "refused_after_statuses": dict(Counter(str(r.status) for r in refused_after)),
                "last_refusal_after_end_s": (
                    round(max(r.ended - f.ended for r in refused_after), 1)
                    if refused_after
                    else None
                ),
                "refused_needs_reauth": sum(1 for r in both if refused_reauth(r)),
                "expired_served": sum(1 for r in both if r.expired),
                "rejected_token_served": sum(1 for r in both if r.token_valid is False),
                "refresh_tokens_sent_twice": reused(stats_at[i], stats_at[i + 1]),
                "provider_500s": int(
                    stats_at[i + 1]["injected_errors"] - stats_at[i]["injected_errors"]
                ),
                "needs_reauth": len(reauth_here),
                "needs_reauth_codes": dict(
                    Counter(reauth_codes.get(pk, "?") for pk in reauth_here)
                ),
            }
        )
    warm = [r for r in reads if steady_from <= r.started < faults[0].began] if faults else []
    return {
        "sizes": {**asdict(sizes), "target_s": sizes.target_s},
        "read_margin_s": margin,
        "refresh_lead_s": lead,
        "faults": per_fault,
        "details": details,
        "steady": {
            "reads": len(warm),
            "refused": sum(1 for r in warm if refused(r)),
            "expired_served": sum(1 for r in warm if r.expired),
            "median_next_refresh_s": round(
                median_next_refresh(steady_from, healable, successes), 1
            ),
        },
        "reads": len(reads),
        "reads_per_api": dict(Counter(str(r.api) for r in reads)),
        "refused": sum(1 for r in reads if refused(r)),
        "refused_needs_reauth": sum(1 for r in reads if refused_reauth(r)),
        "expired_served": sum(1 for r in reads if r.expired),
        "rejected_token_served": sum(1 for r in reads if r.token_valid is False),
        "refresh_tokens_sent_twice": int(
            provider_stats["reuse_detected"] + provider_stats["grace_accepted"]
        ),
        "needs_reauth": len(first_reauth),
        "needs_reauth_codes": dict(Counter(reauth_codes.get(pk, "?") for pk in first_reauth)),
        "refreshes": len(successes),
        "provider": {
            k: v
            for k, v in provider_stats.items()
            if isinstance(v, int) and not isinstance(v, bool)
        },
        "restarts": [
            {"role": role, "exit_code": code, "after_start_s": round(at - steady_from, 1)}
            for role, code, at in restarts
        ],
        "processes_alive_at_end": procs_alive,
        "final": final,
        "samples": len(samples),
        "samples_db_down": sum(1 for s in samples if s.stale is None),
        # Every read answered with anything but 200: (seconds since the steady reads began,
        # connection, status, API), for a look at the evidence behind the counts.
        "refusals": [
            (round(r.started - steady_from, 1), r.connection_id, r.status, r.api)
            for r in reads
            if r.status != 200
        ],
        # (seconds since the steady reads began, connections not fresh or None: database down)
        "stale_timeline": [
            (round(s.at - steady_from, 1), None if s.stale is None else len(s.stale))
            for s in samples
        ],
        "timeline_s": round(timeline_end - steady_from, 1),
        "first_fault_at_s": round(faults[0].began - steady_from, 1) if faults else None,
        "log_lines": len(lines),
    }
