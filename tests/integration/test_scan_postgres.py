"""The proactive scan on PostgreSQL: concurrent scanners claim disjoint rows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from freshtoken.clock import FakeClock
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.worker.scan import Job, RefreshScanner
from tests.e2e_helpers import drop_schema
from tests.support import add_fake_connections, make_runtime, make_settings, pg_schema_url

pytestmark = pytest.mark.integration


def test_concurrent_scans_on_postgresql_claim_disjoint_rows(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two scanners racing on PostgreSQL (FOR UPDATE SKIP LOCKED) never claim the same row."""
    url = pg_schema_url()
    try:
        settings = make_settings(tmp_path, database_url=url, scan_batch_size=25)
        first = make_runtime(settings, clock=clock)
        second = build_runtime(settings, clock=clock)
        try:
            pks = add_fake_connections(first, 300, expires_in=600)
            barrier = threading.Barrier(2)
            claimed: dict[str, list[int]] = {}

            def run(name: str, rt: Runtime) -> None:
                jobs: list[Job] = []

                def enqueue(job: Job) -> None:
                    jobs.append(job)

                barrier.wait()
                for _ in range(3):
                    RefreshScanner(rt, enqueue).scan()
                claimed[name] = [j.connection_pk for j in jobs]

            threads = [
                threading.Thread(target=run, args=(name, rt))
                for name, rt in (("first", first), ("second", second))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)

            assert set(claimed["first"]).isdisjoint(claimed["second"])
            assert sorted(claimed["first"] + claimed["second"]) == sorted(pks)
        finally:
            first.close()
            second.close()
    finally:
        drop_schema(url)
