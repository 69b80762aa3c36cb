"""Delivering one outbox row: claim, POST the stored bytes, record the outcome, retry or move on.

- **Idempotency.** A row is claimed with a conditional UPDATE (pending, due, unclaimed) before
  anything is sent, and marked delivered in the same worker right after; a redelivered task, the
  sweep and a retry racing each other therefore send each row once (at-least-once only if a worker
  dies between the POST and the write: the receiver then sees the same ``X-Freshtoken-Event-Id``).
- **Order.** Rows of one (connection, target) are sent oldest first: a task for a later row
  delivers the earlier ones first, and a row waits while an earlier one is retrying.
- **Retries** as Nango: on network errors and 5xx (also 429), never on 3xx (redirects are not
  followed) or other 4xx. Exponential backoff with jitter, at most ``webhook_max_attempts``
  attempts and never past the row's deadline. The response is read up to a bounded size.
- One ``webhook.delivery`` log line per attempt (schema in ``ops/README.md``).
"""

from __future__ import annotations

import datetime as dt
import random
import urllib.parse
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

from freshtoken.clock import Clock
from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.outbound import OutboundDenied, OutboundPolicy
from freshtoken.settings import Settings
from freshtoken.store import outbox
from freshtoken.store.models import WebhookOutbox
from freshtoken.store.outbox import DELIVERED, FAILED, PENDING
from freshtoken.webhooks.payload import ATTEMPT_HEADER, EVENT_ID_HEADER, signature_headers

log = get_logger("freshtoken.webhooks")

OUTCOMES = ("delivered", "retry", "failed", "refused")
USER_AGENT = "freshtoken-webhooks"


class OutboundRefusedError(Exception):
    """The outbound URL policy refuses this URL (never retried)."""


def check_outbound(url: str, settings: Settings) -> None:
    """The one outbound-policy call of the sender: :class:`freshtoken.outbound.OutboundPolicy`.

    http(s) with a host, no userinfo, fragment or control characters, and in production no
    loopback, private, link-local or metadata address unless FRESHTOKEN_OUTBOUND_* allows it.
    """
    try:
        OutboundPolicy.from_settings(settings).check(url)
    except OutboundDenied as denied:
        raise OutboundRefusedError(f"webhook URL refused: {denied.reason}") from None


@dataclass
class Delivered:
    """What one task run did: ``retry_in`` seconds when the row it was asked about must wait."""

    attempts: int = 0
    retry_in: float | None = None
    continue_with: int | None = None  # more rows are due behind the ones this run sent


def build_webhook_client(settings: Settings) -> httpx.Client:
    """The HTTP client for webhooks: no redirects, explicit timeouts."""
    timeout = settings.webhook_timeout_seconds
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, settings.http_connect_timeout)),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


class WebhookSender:
    """Delivers outbox rows; never sleeps (waits are Celery countdowns). Collaborators injected."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: sessionmaker[Session],
        clock: Clock,
        http: httpx.Client,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.clock = clock
        self.http = http
        self.rng = rng or random.Random()

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds: one attempt's timeout plus a margin."""
        return self.settings.webhook_timeout_seconds * 2 + 30.0

    def deliver(self, outbox_id: int, max_rows: int = 3) -> Delivered:
        """Deliver row ``outbox_id`` and, in order, the rows of its queue that are due.

        At most ``max_rows`` attempts per call, so one task stays within its time limit; the
        next row is then in ``continue_with``.
        """
        result = Delivered()
        current: int | None = self._head_of(outbox_id)
        while current is not None:
            if result.attempts >= max_rows:
                result.continue_with = current
                return result
            attempted, wait = self._attempt(current)
            result.attempts += attempted
            if wait is not None:
                # The head is waiting and the rows behind it wait with it. After this task's own
                # attempt it comes back (``retry_in``); a row that is not due or that another
                # worker holds is brought back by that worker's retry or by the sweep.
                if attempted:
                    result.retry_in = wait
                return result
            current = self._next_in_queue(current)
        return result

    # -- internals ----------------------------------------------------------------------------

    def _head_of(self, outbox_id: int) -> int | None:
        """The oldest pending row of ``outbox_id``'s (connection, target), or None if done."""
        with session_scope(self.session_factory) as session:
            return outbox.head_of_queue(session, outbox_id)

    def _next_in_queue(self, outbox_id: int) -> int | None:
        with session_scope(self.session_factory) as session:
            return outbox.next_in_queue(session, outbox_id)

    def _is_pending(self, outbox_id: int) -> bool:
        with session_scope(self.session_factory) as session:
            row = session.get(WebhookOutbox, outbox_id)
            return row is not None and row.status == PENDING

    def _claim(self, outbox_id: int) -> WebhookOutbox | float | None:
        """Claim the row; else seconds until it is due (0: another worker holds it), or None
        when it is finished (delivered or failed)."""
        now = self.clock.now()
        until = now + dt.timedelta(seconds=self.lease_seconds)
        with session_scope(self.session_factory) as session:
            row, claimed = outbox.claim_row(session, outbox_id, now, until)
            if row is None or row.status != PENDING:
                return None
            if claimed:
                return row
            return max(0.0, (row.next_attempt_at - now).total_seconds())

    def _attempt(self, outbox_id: int) -> tuple[bool, float | None]:
        """One attempt at one row: (attempted, seconds to wait or None once it is finished)."""
        claimed = self._claim(outbox_id)
        if not isinstance(claimed, WebhookOutbox):
            return False, claimed
        row = claimed
        attempt = row.attempts + 1
        started = self.clock.monotonic()
        status: int | None = None
        error_class: str | None = None
        retryable = False
        try:
            check_outbound(row.url, self.settings)
            status = self._post(row, attempt)
            ok = 200 <= status < 300
            retryable = status >= 500 or status == 429
        except OutboundRefusedError:
            ok, error_class = False, "outbound_refused"
        except httpx.HTTPError as exc:
            ok, retryable, error_class = False, True, type(exc).__name__
        duration_ms = round((self.clock.monotonic() - started) * 1000, 1)
        now = self.clock.now()
        values: dict[str, object] = {
            "attempts": attempt,
            "last_http_status": status,
            "claimed_until": None,
        }
        retry_in: float | None = None
        if ok:
            outcome = "delivered"
            values.update(status=DELIVERED, finished_at=now, last_outcome=outcome)
        else:
            delay = self._backoff(attempt)
            can_retry = (
                retryable
                and attempt < self.settings.webhook_max_attempts
                and now + dt.timedelta(seconds=delay) < row.deadline_at
            )
            if can_retry:
                outcome = "retry"
                retry_in = delay
                values.update(
                    next_attempt_at=now + dt.timedelta(seconds=delay), last_outcome=outcome
                )
            else:
                outcome = "refused" if error_class == "outbound_refused" else "failed"
                values.update(status=FAILED, finished_at=now, last_outcome=outcome)
        with session_scope(self.session_factory) as session:
            outbox.record_attempt(session, row.id, values)
        level = "info" if ok else "warning"
        if outcome in ("failed", "refused"):
            level = "error"
        getattr(log, level)(
            "webhook.delivery",
            event_id=row.event_id,
            outbox_id=row.id,
            type=row.webhook_type,
            operation=row.operation,
            success=row.success,
            connection_id=row.connection_id,
            provider_config_key=row.provider_config_key,
            target=row.target,
            url_host=urllib.parse.urlsplit(row.url).hostname,
            http_status=status,
            error_class=error_class,
            attempt=attempt,
            duration_ms=duration_ms,
            outcome=outcome,
            retry_in_seconds=round(retry_in, 3) if retry_in is not None else None,
        )
        return True, retry_in

    def _post(self, row: WebhookOutbox, attempt: int) -> int:
        """POST the stored bytes; read at most ``webhook_max_response_bytes`` of the answer."""
        body = row.body.encode()
        headers = {
            **signature_headers(self.settings.secret_key_value(), body),
            "Content-Type": "application/json",
            EVENT_ID_HEADER: row.event_id,
            ATTEMPT_HEADER: str(attempt),
        }
        remaining = (row.deadline_at - self.clock.now()).total_seconds()
        timeout = max(0.5, min(self.settings.webhook_timeout_seconds, remaining))
        with self.http.stream("POST", row.url, content=body, headers=headers, timeout=timeout) as r:
            budget = self.settings.webhook_max_response_bytes
            for chunk in r.iter_raw():
                budget -= len(chunk)
                if budget <= 0:
                    break
            return r.status_code

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: base * 2^(attempt-1), half of it random."""
        step = min(self.settings.webhook_retry_base_seconds * 2 ** (attempt - 1), 600.0)
        return float(step / 2 + self.rng.uniform(0, step / 2))

    def sweep_once(self, limit: int = 200) -> list[int]:
        """Pending, due, unclaimed queue heads (for the sweep to enqueue)."""
        with session_scope(self.session_factory) as session:
            return outbox.due_heads(session, self.clock.now(), limit)
