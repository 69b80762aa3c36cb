"""The refresh service: the one domain operation that turns an ageing token into a fresh one.

The core is async and exists once: the read API awaits :meth:`RefreshService.arefresh_for_read`
(``on_read``/``forced``) on its event loop; the refresh endpoint, the CLI (``manual``) and the
Celery tasks (``scheduled``/``keepalive``) call the sync :meth:`RefreshService.refresh`, a shim
that runs the same coroutine on a private loop (:mod:`freshtoken.refresh.runner`). Each call that
reaches the lock emits exactly one ``token.refresh`` event (schema in ``ops/README.md``).

The sequence, and why:
1. Callers in this event loop share one in-flight call per connection (:mod:`.flights`, which
   also holds the forced-refresh rule).
2. Take the connection's distributed lock (TTL > provider deadline + margin), waiting without a
   thread. On timeout, re-read: serve the token another holder stored if it is fresh; never
   refresh without the lock.
3. Under the lock, re-read the row: if someone refreshed meanwhile, return without calling the
   provider (``skipped_fresh``). A rotating refresh token is therefore never spent twice.
4. The steps: build the grant (:meth:`_grant_request`), call the provider under one hard deadline
   that ends before the lock's TTL (:meth:`_send_grant`), write with compare-and-set on
   ``version`` (:meth:`_write_success`) or account the failure (:meth:`_record_failure`). A holder
   that stalled past its TTL anyway loses the CAS (``fenced``) and the newer token stays.

Database steps run in a worker thread for the few milliseconds they take (the sessions are sync
SQLAlchemy); waiting on the lock or the provider holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from freshtoken import events
from freshtoken.clock import Clock
from freshtoken.crypto import Cipher, aad_for
from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.outbound import OutboundPolicy
from freshtoken.providers.catalog import ProviderCatalog, ProviderSpec
from freshtoken.refresh import authmodes, policy
from freshtoken.refresh.flights import Flight, Flights
from freshtoken.refresh.grants import (
    PERMANENT,
    TRANSIENT,
    GrantError,
    GrantRequest,
    aclient_credentials,
    arefresh_oauth2,
)
from freshtoken.refresh.http import ProviderHttp
from freshtoken.refresh.inflight import (
    LOST_IN_FLIGHT,
    InFlightMarks,
    LocalInFlightMarks,
    Mark,
    reuse_grace_seconds,
)
from freshtoken.refresh.locks import (
    AsyncLease,
    LockProvider,
    LockUnavailableError,
)
from freshtoken.refresh.pending import LocalPendingWrites, PendingWrites
from freshtoken.refresh.ratelimit import RateLimiter
from freshtoken.refresh.runner import LoopRunner
from freshtoken.refresh.seam import RefreshDenied, Refusal
from freshtoken.settings import Settings
from freshtoken.store.models import Connection
from freshtoken.store.repository import ConnectionStore, RefreshWrite

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = get_logger("freshtoken.refresh")

R = TypeVar("R")

# The log contract lives in freshtoken.events; re-exported here for the service's callers.
TRIGGERS = events.TRIGGERS
OUTCOMES = events.OUTCOMES

# error_code of a refresh stopped under the lock: the connection was marked dead meanwhile.
REJECTED_MEANWHILE = "needs_reauth"
# error_code of a refresh stopped under the lock: a transient failure was recorded meanwhile.
FAILED_MEANWHILE = "failed_meanwhile"

# A caller is waiting on forced, on-read and manual refreshes: they wait this long at most for
# a slot of the provider's rate limit, then are refused (Refusal.RATE_LIMITED, issue 10).
CALLER_RATE_WAIT_SECONDS = 2.0


@dataclass
class RefreshResult:
    """The outcome of one refresh call."""

    outcome: str
    connection: Connection | None
    credentials: dict[str, Any]
    log_id: str
    error: GrantError | None = None

    @property
    def ok(self) -> bool:
        """True when the returned credentials are usable (refreshed or already fresh)."""
        return self.outcome in ("success", "skipped_fresh") or (
            self.outcome in ("fenced", "lock_timeout") and self.connection is not None
        )


@dataclass
class _Attempt:
    """Fields of the one ``token.refresh`` line, filled in as the attempt proceeds."""

    connection_pk: int
    trigger: str
    attempt: int
    log_id: str
    started: float
    connection_id: str | None = None
    provider_config_key: str | None = None
    provider: str | None = None
    outcome: str = "failed"
    error_code: str | None = None
    error_class: str | None = None
    http_status: int | None = None
    lock_wait_ms: float | None = None
    seconds_to_expiry: float | None = None
    new_expires_at: str | None = None
    rotated_refresh_token: bool | None = None
    lock_acquired: float | None = None  # monotonic; the lock's TTL runs from here
    decided_at: dt.datetime | None = None  # wall clock: when the caller asked for this refresh


class _ThrottledError(Exception):
    """No rate-limit slot within the attempt's budget."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"no rate-limit slot for {wait:.2f}s")
        self.wait = wait


class RefreshService:
    """Refreshes connections. Collaborators are injected; nothing here reads globals."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: sessionmaker[Session],
        cipher: Cipher,
        catalog: ProviderCatalog,
        clock: Clock,
        http: ProviderHttp,
        locks: LockProvider,
        pending: PendingWrites | None = None,
        rate_limiter: RateLimiter | None = None,
        inflight: InFlightMarks | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.cipher = cipher
        self.catalog = catalog
        self.clock = clock
        self.http = http
        self.locks = locks
        self.pending: PendingWrites = pending or LocalPendingWrites()
        # "Attempt started" marks: a refresh whose outcome was never recorded (issue #16).
        self.inflight: InFlightMarks = inflight or LocalInFlightMarks()
        # Every refresh takes a slot of the provider's global rate limit right before the HTTP
        # call; a caller-facing trigger waits at most CALLER_RATE_WAIT_SECONDS for it.
        self.rate_limiter = rate_limiter
        self._flights: Flights[RefreshResult] = Flights()
        self._runner = LoopRunner()
        # Test hook: called after the provider answered and before the write (simulates a stall).
        # A sync hook runs in a worker thread, so a blocking one stalls this refresh only.
        self.before_write: Any = None

    # -- public API: sync shims ---------------------------------------------------------------

    def refresh(
        self,
        connection_pk: int,
        *,
        trigger: str,
        force: bool = False,
        seen_version: int | None = None,
        attempt: int = 1,
    ) -> RefreshResult:
        """Sync shim of :meth:`arefresh` (Celery tasks, the CLI): runs it on a private loop."""
        return self._runner.run(
            self.arefresh(
                connection_pk,
                trigger=trigger,
                force=force,
                seen_version=seen_version,
                attempt=attempt,
            )
        )

    def refresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """Sync shim of :meth:`arefresh_for_read`."""
        return self._runner.run(self.arefresh_for_read(conn, credentials, force=force))

    def close(self) -> None:
        """Stop the sync shim's loop thread."""
        self._runner.close()

    # -- public API: the async core -----------------------------------------------------------

    async def arefresh(
        self,
        connection_pk: int,
        *,
        trigger: str,
        force: bool = False,
        seen_version: int | None = None,
        attempt: int = 1,
        fresh_since: dt.datetime | None = None,
    ) -> RefreshResult:
        """Refresh one connection if it needs it (or always, with ``force``).

        ``seen_version`` is the row version the caller decided on; if the row has moved past it
        under the lock, someone else refreshed and a forced call is satisfied without the provider.
        ``fresh_since`` (forced reads: when the read arrived) is satisfied by any refresh whose
        provider request was sent at or after it, here or in another process.
        """

        async def run(flight: Flight[RefreshResult]) -> RefreshResult:
            return await self._refresh_locked(connection_pk, trigger, flight, seen_version, attempt)

        arrived = fresh_since if fresh_since is not None else self.clock.now()
        result, _shared = await self._flights.join(
            ("refresh", connection_pk), force=force, arrived=arrived if force else None, run=run
        )
        return result

    async def arefresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """The read API's seam: serve fresh credentials or raise :class:`RefreshDenied`.

        The refusal says why (a :class:`Refusal`); the API decides how that is answered
        (:mod:`freshtoken.api.read_gate`).
        """
        now = self.clock.now()
        spec = self.catalog.get(conn.provider)
        if not policy.is_refreshable(conn):
            return conn, credentials
        due = policy.needs_refresh(conn, now, policy.read_margin(conn, spec, self.settings))
        if not force and not due:
            return conn, credentials
        if not force:
            if conn.refresh_exhausted or conn.needs_reauth:
                raise RefreshDenied(
                    Refusal.EXHAUSTED if conn.refresh_exhausted else Refusal.NEEDS_REAUTH,
                    connection=conn,
                    log_id=conn.auth_error_log_id,
                )
            if policy.in_cooldown(conn, now, self.settings):
                if not policy.is_expired(conn, now):
                    return conn, credentials  # still valid: serve it, retry after the cooldown
                # An expired token past a transient failure is refreshed once the short retry
                # backoff (seconds, as the scan's) has passed (single flight: one flight per
                # process, the lock and the check under it across processes). A refusal for the
                # whole cooldown would refuse reads while the provider is healthy again; no
                # backoff at all would send every read of a failing connection to the provider.
                if policy.in_read_backoff(conn, now, self.settings):
                    raise RefreshDenied(
                        Refusal.COOLDOWN, connection=conn, log_id=conn.auth_error_log_id
                    )
        result = await self.arefresh(
            conn.id,
            trigger="forced" if force else "on_read",
            force=force,
            # A forced read wants a refresh sent after it arrived, not merely a newer version
            # than the one it read (that one may have been sent before it arrived).
            seen_version=None if force else conn.version,
            fresh_since=now if force else None,
        )
        if result.ok and result.connection is not None:
            return result.connection, result.credentials
        latest = result.connection or conn
        if (
            result.error is not None
            and result.error.error_code == "throttled"
            and (force or policy.is_expired(latest, self.clock.now()))
        ):
            raise RefreshDenied(Refusal.RATE_LIMITED, connection=latest, log_id=result.log_id)
        if (
            result.error is not None
            and result.error.error_class == TRANSIENT
            and not policy.is_expired(latest, self.clock.now())
            and latest.credentials_enc is not None
        ):
            # A provider hiccup must not take down a caller whose token still works.
            return latest, result.credentials or credentials
        if result.error is not None and result.error.error_code == "lock_unavailable":
            raise RefreshDenied(Refusal.LOCK_UNAVAILABLE, connection=latest, log_id=result.log_id)
        if result.error is not None and result.error.error_code == REJECTED_MEANWHILE:
            # The refresh another caller just had rejected: answer as later reads will.
            raise RefreshDenied(
                Refusal.EXHAUSTED if latest.refresh_exhausted else Refusal.NEEDS_REAUTH,
                connection=latest,
                log_id=latest.auth_error_log_id,
            )
        if result.outcome == "lock_timeout":
            raise RefreshDenied(Refusal.LOCK_TIMEOUT, connection=latest, log_id=result.log_id)
        raise RefreshDenied(
            (
                Refusal.PROVIDER_REJECTED
                if result.error and result.error.permanent
                else Refusal.FAILED
            ),
            connection=latest,
            log_id=result.log_id,
        )

    # -- internals ----------------------------------------------------------------------------

    async def _db(self, fn: Callable[..., R], *args: Any) -> R:
        """Run a short, blocking database step in a worker thread (the loop stays free)."""
        return await asyncio.to_thread(fn, *args)

    async def _refresh_locked(
        self,
        pk: int,
        trigger: str,
        flight: Flight[RefreshResult],
        seen_version: int | None,
        attempt_no: int,
    ) -> RefreshResult:
        attempt = _Attempt(
            connection_pk=pk,
            trigger=trigger,
            attempt=attempt_no,
            log_id=uuid.uuid4().hex[:20],
            started=self.clock.monotonic(),
            decided_at=self.clock.now(),
        )
        try:
            return await self._run(attempt, flight, seen_version)
        except LockUnavailableError as exc:
            attempt.outcome = "failed"
            attempt.error_class = TRANSIENT
            attempt.error_code = "lock_unavailable"
            error = GrantError(TRANSIENT, "lock_unavailable")
            log.warning("refresh.lock.unavailable", connection_pk=pk, error=str(exc))
            conn, creds = await self._db(self._read, pk)
            return RefreshResult("failed", conn, creds, attempt.log_id, error)
        except Exception:
            attempt.outcome = "failed"
            attempt.error_class = attempt.error_class or TRANSIENT
            attempt.error_code = attempt.error_code or "internal_error"
            log.exception("token.refresh.error", connection_pk=pk, log_id=attempt.log_id)
            raise
        finally:
            self._emit(attempt)

    async def _run(
        self, attempt: _Attempt, flight: Flight[RefreshResult], seen_version: int | None
    ) -> RefreshResult:
        pk = attempt.connection_pk
        settings = self.settings
        wait_started = self.clock.monotonic()
        lease = await self.locks.acquire_async(
            f"refresh:{pk}", settings.lock_ttl_seconds, settings.lock_wait_seconds
        )
        attempt.lock_acquired = self.clock.monotonic()
        attempt.lock_wait_ms = round((attempt.lock_acquired - wait_started) * 1000, 1)
        # The decision point: forced reads arriving from now on need the next flight.
        flight.decide()
        force, fresh_since = flight.force, flight.fresh_since
        if lease is not None:
            # Everything that runs while the lock is held (row read, provider, encryption,
            # stash, write) is inside this block: the lock is released on every path.
            async with self._holding(lease, attempt):
                return await self._locked_section(attempt, seen_version, force, fresh_since)
        conn, creds = await self._db(self._read, pk)
        if conn is not None:
            self._describe(attempt, conn)
        # Timed out waiting: serve what the holder stored if it is fresh; never refresh
        # without the lock (that is how a rotating refresh token gets spent twice).
        attempt.outcome = "lock_timeout"
        attempt.error_code = "lock_timeout"
        attempt.error_class = TRANSIENT
        fresh = conn is not None and not self._due(conn, attempt.trigger)
        return RefreshResult(
            "lock_timeout",
            conn if fresh else None,
            creds if fresh else {},
            attempt.log_id,
            None if fresh else GrantError(TRANSIENT, "lock_timeout"),
        )

    @contextlib.asynccontextmanager
    async def _holding(self, lease: AsyncLease, attempt: _Attempt) -> AsyncIterator[None]:
        """Hold ``lease`` for the block and release it however the block ends."""
        try:
            yield
        finally:
            await self._release(lease, attempt)

    async def _release(self, lease: AsyncLease, attempt: _Attempt) -> None:
        """Release the lock, telling an unreachable lock service apart from an expired lease."""
        pk = attempt.connection_pk
        try:
            released = await lease.release()
        except LockUnavailableError as exc:
            # The key stays until its TTL; successors wait at most that long.
            log.warning(
                "refresh.lock.release_failed",
                connection_pk=pk,
                log_id=attempt.log_id,
                reason="lock_service_unavailable",
                error=str(exc),
                lock_ttl_seconds=self.settings.lock_ttl_seconds,
            )
            return
        if not released:
            log.warning(
                "refresh.lock.expired",
                connection_pk=pk,
                log_id=attempt.log_id,
                lock_ttl_seconds=self.settings.lock_ttl_seconds,
            )

    async def _locked_section(
        self,
        attempt: _Attempt,
        seen_version: int | None,
        force: bool,
        fresh_since: dt.datetime | None,
    ) -> RefreshResult:
        """The work done under the connection's lock (the caller releases it)."""
        pk = attempt.connection_pk
        conn, creds = await self._db(self._read, pk)
        if conn is not None:
            self._describe(attempt, conn)
        if conn is None:
            attempt.outcome = "failed"
            attempt.error_code = "unknown_connection"
            attempt.error_class = PERMANENT
            return RefreshResult("failed", None, {}, attempt.log_id, None)
        if not policy.is_refreshable(conn):
            # API keys, basic auth, OAuth1 and OAuth2 without a refresh token: nothing to
            # refresh, and nothing wrong with the connection, so nothing is recorded.
            attempt.outcome = "failed"
            attempt.error_code = "not_refreshable"
            attempt.error_class = PERMANENT
            error = GrantError(PERMANENT, "not_refreshable")
            return RefreshResult("failed", conn, creds, attempt.log_id, error)
        recovered = await self._apply_pending(attempt, conn)
        if recovered:
            # The stashed answer of an earlier call is stored now: its outcome is recorded.
            await asyncio.to_thread(self.inflight.clear, pk)
            conn, creds = await self._db(self._read, pk)
            if conn is None:
                return RefreshResult("failed", None, {}, attempt.log_id, None)
            attempt.new_expires_at = creds.get("expires_at")
        moved = seen_version is not None and conn.version != seen_version
        # A refresh sent after the forced read arrived (here or in another process) is the
        # one it asked for: last_refresh_success is the send time of the stored token.
        sent_after = (
            fresh_since is not None
            and conn.last_refresh_success is not None
            and conn.last_refresh_success > fresh_since
        )
        satisfied = recovered or not force or moved or sent_after
        if satisfied and not self._due(conn, attempt.trigger):
            # A recovered stash counts as this attempt's success: new tokens were stored.
            attempt.outcome = "success" if recovered else "skipped_fresh"
            return RefreshResult(attempt.outcome, conn, creds, attempt.log_id)
        meanwhile = self._failed_meanwhile(attempt, conn)
        if meanwhile is not None:
            # Another holder just had this refresh token rejected (or the connection was marked
            # dead, or its refresh failed) while this caller waited: sending the same token again
            # cannot succeed, looks like a replay to a provider with reuse detection, or hammers
            # a provider that is failing. The caller gets that outcome instead.
            attempt.outcome = "failed"
            attempt.error_code = meanwhile.error_code
            attempt.error_class = meanwhile.error_class
            return RefreshResult("failed", conn, creds, attempt.log_id, meanwhile)
        return await self._call_provider(attempt, conn, creds)

    def _failed_meanwhile(self, attempt: _Attempt, conn: Connection) -> GrantError | None:
        """The reason, read under the lock, not to call the provider (None: go ahead).

        Background triggers and plain reads never spend the refresh token of a connection marked
        as needing re-authorisation or exhausted. A forced or manual refresh may retry such a
        connection (that is how one is revived), unless the mark was written after the caller
        decided to refresh: then it is this very token that was just rejected. A transient
        failure recorded while a background or read caller waited is that caller's answer too
        (single flight across processes); forced and manual calls still try.
        """
        failed = conn.last_refresh_failure
        decided = attempt.decided_at
        since = failed is not None and decided is not None and failed > decided
        user_asked = attempt.trigger in ("forced", "manual")
        if conn.needs_reauth or conn.refresh_exhausted:
            return GrantError(PERMANENT, REJECTED_MEANWHILE) if since or not user_asked else None
        if since and not user_asked:
            return GrantError(TRANSIENT, FAILED_MEANWHILE)
        return None

    async def _call_provider(
        self, attempt: _Attempt, conn: Connection, creds: dict[str, Any]
    ) -> RefreshResult:
        spec = self.catalog.get(conn.provider)
        try:
            await self._await_rate_slot(attempt, conn.provider, spec)
        except _ThrottledError as throttled:
            # Not a provider failure: no bookkeeping, the caller re-queues after the wait.
            attempt.outcome = "failed"
            attempt.error_code = "throttled"
            attempt.error_class = TRANSIENT
            error = GrantError(TRANSIENT, "throttled", retry_after=throttled.wait)
            return RefreshResult("failed", conn, creds, attempt.log_id, error)
        sent_at = self.clock.now()
        lost: Mark | None = None
        try:
            if spec is None:
                raise GrantError(PERMANENT, "unknown_provider")
            request = await self._db(self._grant_request, conn, creds, spec)
            lost = await self._start_in_flight(conn, sent_at)
            new_creds, rotated = await self._send_within_grace(
                attempt, conn, creds, spec, request, sent_at
            )
        except GrantError as error:
            if lost is not None and _spent_token_rejected(error):
                # The earlier call spent this refresh token and its answer was lost: say so, so
                # on-call and the auth webhook know it was not the user who revoked access.
                error = GrantError(PERMANENT, LOST_IN_FLIGHT, http_status=error.http_status)
            result = await self._db(self._record_failure, attempt, conn, creds, error)
            if not _outcome_unknown(error):
                await asyncio.to_thread(self.inflight.clear, conn.id)
            return result
        attempt.rotated_refresh_token = rotated
        attempt.new_expires_at = new_creds.get("expires_at")
        if self.before_write is not None:
            await asyncio.to_thread(self.before_write, conn.id)
        result = await self._write_success(attempt, conn, new_creds, sent_at)
        await asyncio.to_thread(self.inflight.clear, conn.id)
        return result

    async def _start_in_flight(self, conn: Connection, sent_at: dt.datetime) -> Mark | None:
        """Mark the refresh as sent; return an earlier mark for the same row version, if any.

        Such a mark means an earlier call sent this very refresh token and its outcome was never
        recorded (see :mod:`freshtoken.refresh.inflight`). Client credentials spend nothing.
        """
        if conn.credentials_type != "OAUTH2":
            return None
        previous = await asyncio.to_thread(self.inflight.get, conn.id)
        mark = Mark(conn.version, sent_at.timestamp())
        await asyncio.to_thread(self.inflight.start, conn.id, mark)
        return previous if previous is not None and previous.version == conn.version else None

    async def _send_within_grace(
        self,
        attempt: _Attempt,
        conn: Connection,
        creds: dict[str, Any],
        spec: ProviderSpec,
        request: GrantRequest,
        sent_at: dt.datetime,
    ) -> tuple[dict[str, Any], bool]:
        """The provider call; an answer lost in transit is asked for once more inside the
        provider's reuse grace, where the (maybe already rotated) refresh token still works."""
        try:
            return await self._send_grant(attempt, conn, creds, spec, request, sent_at)
        except GrantError as error:
            grace = reuse_grace_seconds(spec)
            elapsed = (self.clock.now() - sent_at).total_seconds()
            room = self._lock_deadline(attempt) - self.clock.monotonic()
            if not (_outcome_unknown(error) and conn.credentials_type == "OAUTH2"):
                raise
            if elapsed >= grace or room < 1.0:
                raise
            log.warning(
                "refresh.grace.retry",
                connection_pk=conn.id,
                log_id=attempt.log_id,
                error_code=error.error_code,
                grace_seconds=grace,
            )
            # sent_at stays the first send: the expiry computed from it errs on the early side.
            return await self._send_grant(attempt, conn, creds, spec, request, sent_at)

    def _lock_deadline(self, attempt: _Attempt) -> float:
        """Monotonic time by which the holder must be done: the TTL less the safety margin."""
        start = attempt.lock_acquired if attempt.lock_acquired is not None else attempt.started
        return start + self.settings.lock_ttl_seconds - self.settings.lock_safety_margin

    async def _send_grant(
        self,
        attempt: _Attempt,
        conn: Connection,
        creds: dict[str, Any],
        spec: ProviderSpec,
        request: GrantRequest,
        sent_at: dt.datetime,
    ) -> tuple[dict[str, Any], bool]:
        """The provider call, cut at the provider deadline and never past the lock's TTL."""
        lifetime = float(
            spec.default_token_lifetime_seconds or self.settings.default_token_lifetime_seconds
        )
        # Whatever the lock wait and the rate slot took, the call ends a margin before the TTL:
        # a holder past its deadline gives up instead of racing a successor with the same token.
        deadline = min(
            self.settings.provider_deadline, self._lock_deadline(attempt) - self.clock.monotonic()
        )
        if conn.credentials_type == "OAUTH2_CC":
            new_creds = await aclient_credentials(
                self.http,
                request,
                creds,
                sent_at=sent_at,
                default_lifetime=lifetime,
                deadline=deadline,
            )
            return new_creds, False
        if conn.credentials_type in authmodes.GRANTS:
            # APP, CUSTOM, ...: grant logic in freshtoken.refresh.authmodes (issue #12). Those
            # grants are sync: they run in a worker thread, and their provider calls still go
            # through ProviderHttp.send (deadline, cap) via grants.send.
            grant = authmodes.GRANTS[conn.credentials_type]

            def run_authmode() -> tuple[dict[str, Any], bool]:
                return grant(self.authmode_context(conn, creds, spec, sent_at, lifetime))

            return await asyncio.to_thread(run_authmode)
        return await arefresh_oauth2(
            self.http,
            request,
            creds,
            sent_at=sent_at,
            default_lifetime=lifetime,
            deadline=deadline,
        )

    async def _write_success(
        self, attempt: _Attempt, conn: Connection, new_creds: dict[str, Any], sent_at: dt.datetime
    ) -> RefreshResult:
        """Stash, compare-and-set write, read back the row that is now current."""
        # last_refresh_success records when the request was *sent* (the token's issue time, from
        # which its expiry was computed too): a forced read arriving before that instant is
        # satisfied by this token (the forced-refresh rule).
        write = RefreshWrite(new_creds, sent_at)
        # Stash first: if the database write fails, the rotated tokens must not be lost.
        await asyncio.to_thread(
            self.pending.put,
            conn.id,
            conn.version,
            self.cipher.encrypt_json(new_creds, aad_for("pending", conn.id, "credentials")),
        )
        written = await self._write_with_retry(attempt, conn, write)
        await asyncio.to_thread(self.pending.delete, conn.id)
        latest, latest_creds = await self._db(self._read, conn.id)
        if not written:
            # Someone wrote a newer token while this holder was stalled: theirs stays.
            attempt.outcome = "fenced"
            attempt.error_code = "version_conflict"
            return RefreshResult("fenced", latest, latest_creds, attempt.log_id)
        attempt.outcome = "success"
        return RefreshResult("success", latest, latest_creds, attempt.log_id)

    def rate_for(self, provider: str, spec: ProviderSpec | None = None) -> float:
        """Refreshes per second allowed for one provider across all workers."""
        return policy.refresh_rate(spec or self.catalog.get(provider), self.settings)

    async def _await_rate_slot(
        self, attempt: _Attempt, provider: str, spec: ProviderSpec | None
    ) -> None:
        """Take the provider's rate slot right before the call, waiting inline within budget.

        The budget keeps the HTTP call itself inside the lock's TTL; past it the attempt is
        ``throttled`` and the task re-queues it for when a slot will be free.
        """
        if self.rate_limiter is None:
            return
        rate = self.rate_for(provider, spec)
        settings = self.settings
        budget_end = self._lock_deadline(attempt) - settings.provider_deadline
        if attempt.trigger not in ("scheduled", "keepalive"):
            # Every trigger counts against the provider's limit (20 forced reads were 20 calls);
            # a waiting caller gets a short wait, then a rate_limited refusal.
            budget_end = min(budget_end, self.clock.monotonic() + CALLER_RATE_WAIT_SECONDS)
        while (wait := await asyncio.to_thread(self._rate_wait, attempt, provider, rate)) > 0:
            if self.clock.monotonic() + wait > budget_end:
                raise _ThrottledError(wait)
            await asyncio.sleep(wait)

    def _rate_wait(self, attempt: _Attempt, provider: str, rate: float) -> float:
        """One rate-limit ask; for a caller-facing trigger a failing limiter does not fail the
        read (the rate limit protects the provider, the caller still needs a token)."""
        assert self.rate_limiter is not None
        if attempt.trigger in ("scheduled", "keepalive"):
            return self.rate_limiter.acquire(f"provider:{provider}", rate)
        try:
            return self.rate_limiter.acquire(f"provider:{provider}", rate)
        except RedisError as exc:
            log.warning(
                "refresh.ratelimit.unavailable",
                connection_pk=attempt.connection_pk,
                error=type(exc).__name__,
            )
            return 0.0

    async def _write_with_retry(
        self, attempt: _Attempt, conn: Connection, write: RefreshWrite
    ) -> bool:
        """The compare-and-set write, retried through a short database outage.

        Retries stay inside the lock's TTL (less a margin), so a retried write can never race a
        successor holder; if the database is still down after that, the error propagates and the
        stash (see :mod:`freshtoken.refresh.pending`) is applied by the next attempt.
        """
        deadline = self._lock_deadline(attempt)
        delay = 0.25
        while True:
            try:
                return await self._db(self._cas_write, conn, write)
            except DBAPIError:
                if self.clock.monotonic() + delay >= deadline:
                    attempt.error_code = "store_unavailable"
                    attempt.error_class = TRANSIENT
                    raise
                log.warning("refresh.write.retry", connection_pk=conn.id, log_id=attempt.log_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _cas_write(self, conn: Connection, write: RefreshWrite) -> bool:
        with session_scope(self.session_factory) as session:
            return self._store(session).cas_write_refresh(conn.id, conn.version, write)

    async def _apply_pending(self, attempt: _Attempt, conn: Connection) -> bool:
        """Write credentials a previous attempt stashed but could not store; True if applied."""
        stash = await asyncio.to_thread(self.pending.get, conn.id)
        if stash is None:
            return False
        version, ciphertext = stash
        if version != conn.version:
            # The row moved on (an import, or the write did land): the stash is stale.
            await asyncio.to_thread(self.pending.delete, conn.id)
            return False
        creds = self.cipher.decrypt_json(ciphertext, aad_for("pending", conn.id, "credentials"))
        now = self.clock.now()
        write = RefreshWrite(creds, now)
        written = await self._write_with_retry(attempt, conn, write)
        await asyncio.to_thread(self.pending.delete, conn.id)
        if written:
            log.warning("refresh.pending.applied", connection_pk=conn.id, log_id=attempt.log_id)
        return written

    def _record_failure(
        self, attempt: _Attempt, conn: Connection, creds: dict[str, Any], error: GrantError
    ) -> RefreshResult:
        """Failure accounting (runs in a worker thread: one short transaction)."""
        attempt.outcome = "failed"
        attempt.error_code = error.error_code
        attempt.error_class = error.error_class
        attempt.http_status = error.http_status
        now = self.clock.now()
        with session_scope(self.session_factory) as session:
            store = self._store(session)
            current = store.get_connection_by_pk(conn.id)
            if current is None or current.version != conn.version:
                # The row changed under us (an import or a fenced-out peer): the failure describes
                # credentials that are no longer stored, so it must not mark the connection.
                attempt.outcome = "fenced"
                return RefreshResult(
                    "fenced",
                    current,
                    store.credentials(current) if current else {},
                    attempt.log_id,
                    error,
                )
            attempts = policy.failure_attempts(current, now)
            exhausted = attempts >= self.settings.refresh_max_failure_days
            # A transient failure of a forced refresh must not clear an earlier re-auth mark.
            needs_reauth = error.permanent or current.needs_reauth
            # Dead connections leave the scan; live ones come back after a backoff of seconds,
            # bounded by the token's expiry, so nothing waits minutes once the fault is over.
            retry_at = policy.retry_after_failure(current, now, self.settings, attempt.attempt)
            store.write_failure(
                conn.id,
                failed_at=now,
                attempts=attempts,
                exhausted=exhausted,
                needs_reauth=needs_reauth,
                error_code=error.error_code,
                log_id=attempt.log_id,
                next_refresh_at=None if (needs_reauth or exhausted) else retry_at,
            )
        latest, _ = self._read(conn.id)
        return RefreshResult("failed", latest, creds, attempt.log_id, error)

    def _grant_request(
        self, conn: Connection, creds: dict[str, Any], spec: ProviderSpec
    ) -> GrantRequest:
        client_id: str | None
        client_secret: str | None
        if conn.credentials_type == "OAUTH2_CC":
            client_id = creds.get("client_id")
            client_secret = creds.get("client_secret")
        else:
            with session_scope(self.session_factory) as session:
                store = self._store(session)
                integration = store.get_integration(conn.provider_config_key)
                client_id = integration.client_id if integration else None
                client_secret = store.client_secret(integration) if integration else None
            override = creds.get("config_override") or {}
            if override.get("client_id") and override.get("client_secret"):
                client_id = override["client_id"]
                client_secret = override["client_secret"]
        return GrantRequest(
            spec=spec,
            connection_config=conn.connection_config or {},
            client_id=client_id,
            client_secret=client_secret,
            outbound=OutboundPolicy.from_settings(self.settings),
            max_response_bytes=self.settings.provider_max_response_bytes,
            deadline_seconds=self.settings.provider_deadline,
        )

    def authmode_context(
        self,
        conn: Connection,
        creds: dict[str, Any],
        spec: ProviderSpec,
        sent_at: dt.datetime,
        lifetime: float,
    ) -> authmodes.AuthModeContext:
        """What an auth-mode grant needs: the integration's client and GitHub App secrets."""
        with session_scope(self.session_factory) as session:
            store = self._store(session)
            integration = store.get_integration(conn.provider_config_key)
            client_id = integration.client_id if integration else None
            client_secret = store.client_secret(integration) if integration else None
            custom = (store.custom(integration) if integration else None) or {}
        return authmodes.AuthModeContext(
            http=self.http,
            spec=spec,
            connection_config=conn.connection_config or {},
            credentials=creds,
            sent_at=sent_at,
            default_lifetime=lifetime,
            client_id=client_id,
            client_secret=client_secret,
            integration_custom=custom,
        )

    def _store(self, session: Session) -> ConnectionStore:
        return ConnectionStore(session, self.cipher, self.clock, self._plan)

    def _plan(self, conn: Connection) -> dt.datetime | None:
        return policy.plan_next_refresh(
            conn, self.catalog.get(conn.provider), self.settings, self.clock.now()
        )

    def _due(self, conn: Connection, trigger: str = "on_read") -> bool:
        """Whether the row still needs the refresh this trigger asked for."""
        spec = self.catalog.get(conn.provider)
        if trigger == "scheduled":
            # The scan refreshes ahead of the read margin, inside the (larger) refresh lead.
            margin = policy.refresh_lead(conn, spec, self.settings)
        else:
            margin = policy.read_margin(conn, spec, self.settings)
        return policy.needs_refresh(conn, self.clock.now(), margin)

    def _read(self, pk: int) -> tuple[Connection | None, dict[str, Any]]:
        with session_scope(self.session_factory) as session:
            store = self._store(session)
            conn = store.get_connection_by_pk(pk)
            return conn, (store.credentials(conn) if conn else {})

    def _describe(self, attempt: _Attempt, conn: Connection) -> None:
        attempt.connection_id = conn.connection_id
        attempt.provider_config_key = conn.provider_config_key
        attempt.provider = conn.provider
        if conn.expires_at is not None:
            attempt.seconds_to_expiry = round(
                (conn.expires_at - self.clock.now()).total_seconds(), 1
            )

    def _emit(self, a: _Attempt) -> None:
        level = "info" if a.outcome in ("success", "skipped_fresh") else "warning"
        if a.outcome == "failed" and a.error_class == PERMANENT:
            level = "error"
        getattr(log, level)(
            "token.refresh",
            connection_id=a.connection_id,
            connection_pk=a.connection_pk,
            provider_config_key=a.provider_config_key,
            provider=a.provider,
            trigger=a.trigger,
            outcome=a.outcome,
            error_code=a.error_code,
            error_class=a.error_class,
            http_status=a.http_status,
            duration_ms=round((self.clock.monotonic() - a.started) * 1000, 1),
            lock_wait_ms=a.lock_wait_ms,
            seconds_to_expiry=a.seconds_to_expiry,
            new_expires_at=a.new_expires_at,
            rotated_refresh_token=a.rotated_refresh_token,
            attempt=a.attempt,
            log_id=a.log_id,
        )


# Permanent errors that say the refresh token itself is dead (not the client's configuration).
_CLIENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
)


def _spent_token_rejected(error: GrantError) -> bool:
    """True when a permanent error rejects the refresh token (invalid_grant and its forms)."""
    return error.permanent and error.error_code not in _CLIENT_ERRORS | {"unknown_provider"}


def _outcome_unknown(error: GrantError) -> bool:
    """True when the provider may have acted on the request without an answer reaching us."""
    return (
        error.error_class == TRANSIENT
        and error.http_status is None
        and error.error_code in ("timeout", "connection_error")
    )
