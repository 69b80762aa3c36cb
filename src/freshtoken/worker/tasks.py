"""Thin Celery tasks: ids in, one call to the scanner or the refresh service, retry policy here.

The tasks live here at module level, on :class:`~freshtoken.worker.base.RuntimeTask` (which gives
them the process's runtime), under the names of :mod:`freshtoken.worker.config`; every app that
``create_celery`` builds registers them.

Retries: transient failures retry with exponential backoff and full jitter, capped so the last
retry still lands before the token expires; after that the next scan takes over. Permanent
failures do not retry. A global per-provider rate limit gates every scheduled refresh.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from celery import shared_task
from sqlalchemy.exc import DBAPIError

from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.store.schedule import extend_claim
from freshtoken.worker.base import RuntimeTask
from freshtoken.worker.config import MAX_COUNTDOWN_SECONDS, REFRESH_TASK, SCAN_TASK
from freshtoken.worker.scan import Job, RefreshScanner

log = get_logger("freshtoken.worker")

_BACKOFF_BASE_SECONDS = 2.0
_BACKOFF_CAP_SECONDS = 300.0


def retry_countdown(
    retries: int, expires_at: dt.datetime | None, now: dt.datetime, retry_after: float | None
) -> float | None:
    """Full-jitter exponential backoff capped to land before expiry (None: leave it to the scan)."""
    cap = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**retries)
    countdown = random.uniform(0, cap)
    if retry_after is not None:
        countdown = max(countdown, retry_after)
    if expires_at is not None and expires_at > now:
        latest = (expires_at - now).total_seconds() - 2
        if latest <= 0:
            return None
        countdown = min(countdown, latest)
    return countdown


@shared_task(base=RuntimeTask, bind=True, name=SCAN_TASK, ignore_result=True)
def scan_due_connections(self: RuntimeTask) -> dict[str, Any]:
    """Claim due connections and enqueue one refresh each."""
    refresh = self.app.tasks[REFRESH_TASK]

    def enqueue(job: Job) -> None:
        refresh.apply_async(
            args=(job.connection_pk, job.provider, job.trigger, job.seen_version),
            countdown=min(job.countdown, MAX_COUNTDOWN_SECONDS),
        )

    report = RefreshScanner(self.runtime, enqueue).scan()
    return {"due": report.due, "enqueued": report.enqueued}


@shared_task(base=RuntimeTask, bind=True, name=REFRESH_TASK, ignore_result=True, max_retries=None)
def refresh_connection(
    self: RuntimeTask, connection_pk: int, provider: str, trigger: str, seen_version: int
) -> str:
    """Refresh one connection (ids only), gated by the provider's global rate limit."""
    runtime = self.runtime
    service = runtime.require_refresh_service()
    retries = int(self.request.retries or 0)
    try:
        result = service.refresh(
            connection_pk,
            trigger=trigger,
            # Keep-alive refreshes a token that is not due yet; seen_version still lets a
            # refresh by someone else since the claim satisfy it.
            force=trigger == "keepalive",
            seen_version=seen_version if trigger == "keepalive" else None,
            attempt=retries + 1,
        )
    except DBAPIError:
        # The database is down (or restarting): retry with backoff instead of dropping the
        # task; the claim expires on its own if the retries run out first.
        if retries >= runtime.settings.task_max_retries:
            log.warning("refresh.task.store_unavailable", connection_pk=connection_pk)
            return "store_unavailable"
        wait = retry_countdown(retries, None, runtime.clock.now(), None) or 1.0
        log.warning(
            "refresh.task.retry",
            connection_pk=connection_pk,
            reason="store_unavailable",
            countdown=round(wait, 2),
        )
        limit = runtime.settings.task_max_retries
        raise self.retry(countdown=wait, max_retries=limit) from None
    error = result.error
    if error is not None and error.error_code == "throttled":
        # No rate-limit slot in time: come back when one is free (not a failure, no retry
        # counted), spread a little so the waiting tasks do not return together.
        wait = (error.retry_after or 1.0) + random.uniform(0, 1.0)
        _extend_claim(runtime, connection_pk, wait)
        self.apply_async(args=(connection_pk, provider, trigger, seen_version), countdown=wait)
        return "throttled"
    if result.outcome != "failed" or error is None or error.permanent:
        return result.outcome
    if retries >= runtime.settings.task_max_retries:
        return result.outcome
    expires_at = result.connection.expires_at if result.connection else None
    countdown = retry_countdown(retries, expires_at, runtime.clock.now(), error.retry_after)
    if countdown is None:
        return result.outcome
    _extend_claim(runtime, connection_pk, countdown)
    raise self.retry(countdown=countdown, max_retries=runtime.settings.task_max_retries)


def _extend_claim(runtime: Any, connection_pk: int, seconds: float) -> None:
    """Keep the scan off a row whose retry is already queued."""
    now = runtime.clock.now()
    until = now + dt.timedelta(seconds=seconds + runtime.settings.claim_ttl_seconds)
    with session_scope(runtime.session_factory) as session:
        extend_claim(session, connection_pk, until, now)
