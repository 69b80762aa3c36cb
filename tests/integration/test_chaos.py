"""Chaos: a busy worker SIGKILLed, Redis down, PostgreSQL restarted, the provider failing, under
steady reads; everything heals by itself within seconds (issue #16, CI-sized).

Real processes (1 API, 2 workers, 1 beat) against a private PostgreSQL cluster and a private Redis
(the stack of ``test_faults.py``), the in-process mock provider with refresh-token rotation,
reuse detection, 40 s tokens, 100 ms latency and a 30 s reuse grace (declared in the catalog as
``refresh_token_reuse_grace_seconds``, so a refresh lost with a killed worker is recovered).

Asserted: the provider sees a spent refresh token again only for refreshes in flight at the
SIGKILL (and only inside its grace: no reuse detected); every connection is fresh at the end (200
and active at the provider); no read fails later than 15 s after a fault ended; no expired token
is ever served; no process is left dead. The time to heal after each fault (median over
connections: fault end to the connection's next successful refresh) is logged.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from freshtoken.mockprovider import MockProviderConfig
from tests.chaos_helpers import (
    Fault,
    Read,
    Readers,
    Supervisor,
    end_injected_failures,
    median_next_refresh,
    refresh_successes,
)
from tests.e2e_helpers import Proc, wait_until
from tests.integration.test_faults import (  # the fixture and helpers of the fault tests
    AUTH,
    KEY,
    StackFactory,
    _quiet_http_client_logs,  # noqa: F401 (an autouse fixture, re-exported to this module)
    api_errors,
    make_stack,  # noqa: F401 (the stack fixture, re-exported to this module)
)
from tests.support import add_oauth2_connection

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

LIFETIME = 40.0
CONNECTIONS = 24
HEAL_WINDOW = 15.0  # no read may fail later than this after a fault ended

CHAOS_SETTINGS: dict[str, object] = {
    "http_connect_timeout": 1.0,
    "http_read_timeout": 3.0,
    "lock_ttl_seconds": 8.0,
    "lock_wait_seconds": 5.0,
    "scan_interval_seconds": 1.0,
    "claim_ttl_seconds": 15,
    "scan_retry_after_failure_seconds": 5,
    "task_max_retries": 3,
    "refresh_failure_cooldown_seconds": 5,
}

# The generic provider, with the reuse grace the mock provider grants.
GRACE_CATALOG = """
oauth2:
    display_name: Generic OAuth 2.0 (with a reuse grace)
    auth_mode: OAUTH2
    token_url: ${connectionConfig.token_url}
    refresh_token_reuse_grace_seconds: 30
"""


@pytest.mark.timeout(300)
def test_chaos_every_fault_heals_within_seconds_and_nothing_is_stranded(
    make_stack: StackFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    """SIGKILL of a busy worker (replaced 3 s later), Redis down 6 s, PostgreSQL restarted
    (~5 s down), provider answering 500 for 8 s, under steady reads: reads fail only near a
    fault, never with an expired token, and every connection ends fresh."""
    catalog = tmp_path / "providers.yaml"
    catalog.write_text(GRACE_CATALOG)
    stack = make_stack(
        MockProviderConfig(
            token_lifetime_seconds=LIFETIME,
            latency_seconds=0.1,
            rotate_refresh_tokens=True,
            reuse_detection=True,
            grace_seconds=30,
        ),
        providers_file=catalog,
        **CHAOS_SETTINGS,
    )
    rng = random.Random(16)
    names = [f"c{i}" for i in range(CONNECTIONS)]
    pks = [
        add_oauth2_connection(
            stack.runtime,
            stack.provider,
            connection_id=name,
            lifetime_seconds=LIFETIME,
            expires_in=rng.uniform(12, LIFETIME),
        )[0]
        for name in names
    ]
    api, base = stack.start_api()
    workers = [stack.fleet.worker(f"worker-{i}", concurrency=2) for i in (1, 2)]
    beat = stack.fleet.beat("beat")
    faults: list[Fault] = []
    # The supervisor (compose's restart:, systemd's Restart=on-failure): a worker or beat that
    # exits is started again; the exit must be a failure, or such a policy would leave it dead.
    live: dict[str, Proc] = {"worker-1": workers[0], "worker-2": workers[1], "beat": beat}

    def restart(role: str, n: int) -> Proc:
        again = f"{role}-r{n}"
        if role == "beat":
            return stack.fleet.beat(again)
        return stack.fleet.worker(again, concurrency=2)

    supervisor = Supervisor(live, restart).start()

    with Readers([base], names, headers=AUTH, key=KEY) as readers:
        time.sleep(5)
        # 1. SIGKILL a busy worker (its prefork children too), replaced 3 s later.
        wait_until(
            lambda: any(
                e.get("trigger") == "scheduled" for e in workers[0].events("token.refresh")
            ),
            30,
            "worker-1 to be refreshing",
        )
        kill = Fault("worker SIGKILL", time.time())
        supervisor.pause()  # this one is replaced by hand, 3 s later
        workers[0].kill()
        time.sleep(3)
        live["worker-1"] = stack.fleet.worker("worker-1b", concurrency=2)
        supervisor.resume()
        kill.ended = time.time()
        faults.append(kill)
        time.sleep(5)
        # 2. Redis down for 6 s.
        redis = Fault("redis down", time.time())
        stack.redis.stop()
        time.sleep(6)
        stack.redis.start()
        redis.ended = time.time()
        faults.append(redis)
        time.sleep(6)
        # 3. PostgreSQL restarted (~5 s down).
        pg = Fault("postgres restart", time.time())
        stack.pg.stop()
        time.sleep(5)
        stack.pg.start()
        pg.ended = time.time()
        faults.append(pg)
        time.sleep(6)
        # 4. The provider answers 500 for 8 s, from the next refresh it sees (refreshes come in
        # waves after the earlier faults: this makes the outage meet one).
        calls = stack.provider.stats()["token_calls"]
        wait_until(lambda: stack.provider.stats()["token_calls"] > calls, 30, "a refresh")
        outage = Fault("provider 500s", time.time())
        stack.provider.inject("500", count=100000)
        time.sleep(8)
        end_injected_failures(stack.provider)
        outage.ended = time.time()
        faults.append(outage)
        time.sleep(HEAL_WINDOW + 2)

    end = time.time()

    def all_fresh() -> bool:
        with httpx.Client(base_url=base, headers=AUTH, timeout=10) as client:
            for name in names:
                r = client.get(f"/connections/{name}", params={"provider_config_key": KEY})
                if r.status_code != 200:
                    return False
                token = r.json()["credentials"]["access_token"]
                if not stack.provider.is_access_token_valid(token):
                    return False
        return True

    wait_until(all_fresh, 30, "every connection fresh (200 and active at the provider)")
    supervisor.stop(70)
    successes = refresh_successes(e for proc in stack.fleet.procs for e in proc.logs())
    heal = {f.name: round(median_next_refresh(f.ended, pks, successes), 1) for f in faults}
    reads = readers.reads
    errors = [r for r in reads if r.status != 200]
    log.info(
        "chaos: %d reads, errors %s, time to heal (median s) %s, restarts %s, provider %s",
        len(reads),
        dict(Counter(r.status for r in errors)),
        heal,
        [(role, code) for role, code, _when in supervisor.restarts],
        {k: v for k, v in stack.provider.stats().items() if isinstance(v, int)},
    )

    # No read error later than 15 s after a fault ended (nor before the first one).
    def near_a_fault(r: Read) -> bool:
        return any(f.began <= r.ended and r.started <= f.ended + HEAL_WINDOW for f in faults)

    late = [r for r in errors if not near_a_fault(r)]
    assert not late, [(r.connection_id, r.status, round(r.started - end, 1)) for r in late]
    # No expired token served, ever.
    stale = [
        r
        for r in reads
        if r.status == 200 and r.expires_at is not None and r.expires_at <= r.started
    ]
    assert not stale, stale[:5]
    assert len(reads) >= 200, len(reads)
    # A spent refresh token reached the provider only for a refresh lost with the killed worker
    # (at most its two pool slots), inside the grace: nothing was detected as a replay.
    stats = stack.provider.stats()
    assert stats["grace_accepted"] <= 2, stats
    assert stats["injected_errors"] >= 1, "the provider outage met no refresh"
    assert (stats["reuse_detected"], stats["invalid_grant"]) == (0, 0), stats
    for row in stack.rows(pks):
        assert not row.needs_reauth and not row.refresh_exhausted, row.id
    # No process left dead (the killed worker was replaced; any other exit was a failure exit
    # that the supervisor restarted).
    assert supervisor.failure_exits_only(), supervisor.restarts
    stack.fleet.check_alive([api, *live.values()])
    assert api_errors(api) == []
