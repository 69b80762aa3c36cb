"""Celery tasks of the webhooks: deliver one outbox row (ids only), and the sweep.

The sweep runs on the beat schedule beside the refresh scan: it enqueues every pending row that
is due and first in its queue, so a row whose enqueue failed after commit, or whose worker died,
is delivered anyway. It also prunes finished rows past the retention.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.runtime import Runtime
from freshtoken.store.outbox import prune
from freshtoken.webhooks import SWEEP_TASK, WEBHOOK_TASK
from freshtoken.webhooks.delivery import WebhookSender, build_webhook_client
from freshtoken.webhooks.outbox import WebhookConfig

log = get_logger("freshtoken.webhooks")


def sender_of(runtime: Runtime) -> WebhookSender:
    """This process's webhook sender (built once, with its own HTTP client)."""
    sender = runtime.extras.get("webhook_sender")
    if sender is None:
        http = build_webhook_client(runtime.settings)
        sender = WebhookSender(
            settings=runtime.settings,
            session_factory=runtime.session_factory,
            clock=runtime.clock,
            http=http,
        )
        runtime.extras["webhook_sender"] = sender
        runtime.extras["webhook_http_client"] = http
    assert isinstance(sender, WebhookSender)
    return sender


def register(app: Celery) -> None:
    """Register the webhook tasks on ``app``."""
    from freshtoken.worker.celery_app import MAX_COUNTDOWN_SECONDS, runtime_of

    # Celery's decorator is untyped (celery/celery#3366); the task bodies are typed.
    @app.task(  # type: ignore[untyped-decorator]
        name=WEBHOOK_TASK,
        bind=True,
        ignore_result=True,
        max_retries=None,
        shared=False,
        # Up to three attempts per run (WebhookSender.deliver), each bounded by the timeout.
        soft_time_limit=app.freshtoken_settings.webhook_timeout_seconds * 3 + 30,
        time_limit=app.freshtoken_settings.webhook_timeout_seconds * 3 + 45,
    )
    def deliver_webhook(self: Task, outbox_id: int) -> dict[str, Any]:
        """Deliver outbox row ``outbox_id`` (and the due rows queued behind it, in order)."""
        result = sender_of(runtime_of(app)).deliver(outbox_id)
        if result.continue_with is not None:
            self.apply_async(args=(result.continue_with,))
        if result.retry_in is not None:
            self.apply_async(
                args=(outbox_id,), countdown=min(result.retry_in, MAX_COUNTDOWN_SECONDS)
            )
        return {"attempts": result.attempts, "retry_in": result.retry_in}

    @app.task(name=SWEEP_TASK, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]
    def sweep_webhooks() -> int:
        """Enqueue every due, unclaimed queue head; prune finished rows past the retention."""
        runtime = runtime_of(app)
        if not WebhookConfig.from_settings(runtime.settings).enabled:
            return 0
        heads = sender_of(runtime).sweep_once()
        for outbox_id in heads:
            deliver_webhook.apply_async(args=(outbox_id,))
        with session_scope(runtime.session_factory) as session:
            pruned = prune(session, runtime.clock.now(), runtime.settings.webhook_retention_days)
        if heads or pruned:
            log.info("webhook.sweep", enqueued=len(heads), pruned=pruned)
        return len(heads)

    app.freshtoken_webhook_tasks = {"deliver": deliver_webhook, "sweep": sweep_webhooks}
