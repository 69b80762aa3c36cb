"""The proactive scan: find due connections, claim them, and hand them to the workers.

``next_refresh_at`` (maintained on every write, see :mod:`freshtoken.store.schedule`) is the
due time; the scan reads ``next_refresh_at <= now`` through its index, so its cost follows the
number of due rows, not the size of the table. Claiming pushes ``next_refresh_at`` past the task's
countdown plus a lease, in the same transaction that selected the rows (``FOR UPDATE SKIP LOCKED``
on PostgreSQL; SQLite serialises writers), so overlapping scans, a second beat by mistake or a slow
queue never enqueue a row twice, and a lost task is picked up again once the lease expires.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.refresh import policy
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection
from freshtoken.store.schedule import claim_due

# The claim query lives in the store; re-exported under its old name for existing callers.
from freshtoken.store.schedule import due_rows_statement as due_rows_statement

log = get_logger("freshtoken.scan")

# Never schedule a refresh closer to expiry than this, whatever the jitter says.
_SAFETY_SECONDS = 5.0


@dataclass(frozen=True)
class Job:
    """One refresh to run: ids only, as tasks take."""

    connection_pk: int
    provider: str
    trigger: str  # "scheduled" or "keepalive"
    countdown: float
    seen_version: int


@dataclass
class ScanReport:
    """What one scan did (the ``refresh.scan`` event)."""

    due: int = 0
    claimed: int = 0
    enqueued: int = 0
    skipped: int = 0
    oldest_overdue_seconds: float | None = None
    duration_ms: float = 0.0
    pages: int = 0
    jobs: list[Job] = field(default_factory=list)


class RefreshScanner:
    """Claims due connections and enqueues one refresh job per row."""

    def __init__(
        self,
        runtime: Runtime,
        enqueue: Callable[[Job], None],
        *,
        rng: random.Random | None = None,
        max_pages: int = 20,
    ) -> None:
        self.runtime = runtime
        self.enqueue = enqueue
        self.rng = rng or random.Random()
        self.max_pages = max_pages
        self._queued: dict[str, int] = {}

    def scan(self) -> ScanReport:
        """One pass: page through due rows until none are left (or the page budget is spent)."""
        clock = self.runtime.clock
        started = clock.monotonic()
        report = ScanReport()
        batch = self.runtime.settings.scan_batch_size
        # Jobs claimed per provider in this pass: the provider's rate limit queues them.
        self._queued = {}
        while report.pages < self.max_pages:
            jobs, due, overdue = self._claim_page(batch)
            report.pages += 1
            report.due += due
            report.claimed += len(jobs)
            if overdue is not None:
                report.oldest_overdue_seconds = max(report.oldest_overdue_seconds or 0.0, overdue)
            for job in jobs:
                try:
                    self.enqueue(job)
                except Exception:
                    # The claim expires after its lease and the next scan re-enqueues the row.
                    report.skipped += 1
                    log.exception("refresh.scan.enqueue_failed", connection_pk=job.connection_pk)
                else:
                    report.enqueued += 1
                    report.jobs.append(job)
            if due < batch:
                break
        report.duration_ms = round((clock.monotonic() - started) * 1000, 1)
        log.info(
            "refresh.scan",
            due=report.due,
            claimed=report.claimed,
            enqueued=report.enqueued,
            skipped=report.skipped,
            oldest_overdue_seconds=(
                round(report.oldest_overdue_seconds, 1)
                if report.oldest_overdue_seconds is not None
                else None
            ),
            duration_ms=report.duration_ms,
            pages=report.pages,
        )
        return report

    def _claim_page(self, batch: int) -> tuple[list[Job], int, float | None]:
        runtime = self.runtime
        settings = runtime.settings
        now = runtime.clock.now()
        jobs: list[Job] = []

        def lease_of(row: Connection) -> dt.datetime:
            # A provider's rate limit lets its k-th job of this pass start no sooner than
            # k / rate seconds from now (2,000 rows at 25/s take 80 s): planned so, the jobs
            # reach the workers at the rate they can run, instead of all at once and then
            # waiting in the queue (holding worker processes) past their claims.
            ahead = self._queued.get(row.provider, 0)
            self._queued[row.provider] = ahead + 1
            rate = policy.refresh_rate(runtime.catalog.get(row.provider), settings)
            job = self._plan_job(row, now, earliest=ahead / rate)
            jobs.append(job)
            return now + dt.timedelta(seconds=job.countdown + settings.claim_ttl_seconds)

        with session_scope(runtime.session_factory) as session:
            claims = claim_due(session, now, batch, lease_of)
        overdue = (
            max((now - c.due_at).total_seconds() for c in claims if c.due_at) if claims else None
        )
        return jobs, len(claims), overdue

    def _plan_job(self, row: Connection, now: dt.datetime, earliest: float = 0.0) -> Job:
        """Trigger and countdown: spread a burst over the time left before reads would refresh,
        and no sooner than ``earliest`` (the provider's rate limit)."""
        settings = self.runtime.settings
        spec = self.runtime.catalog.get(row.provider)
        lead = policy.refresh_lead(row, spec, settings)
        margin = policy.read_margin(row, spec, settings)
        if row.expires_at is None:
            trigger, window = "scheduled", 0.0
        else:
            left = (row.expires_at - now).total_seconds()
            if left > lead:
                # Due only for keep-alive: nothing urgent, spread over a few minutes.
                trigger, window = "keepalive", min(300.0, left - lead)
            else:
                # Land before the read margin starts, so no read has to wait on the provider.
                trigger, window = "scheduled", max(0.0, (left - margin - _SAFETY_SECONDS) * 0.8)
        countdown = self.rng.uniform(0, min(window, 1800.0)) if window > 0 else 0.0
        return Job(row.id, row.provider, trigger, round(max(countdown, earliest), 3), row.version)
