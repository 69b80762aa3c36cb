"""Celery tasks of the webhooks: deliver one outbox row (ids only), and the sweep.

The sweep runs on the beat schedule beside the refresh scan: it enqueues every pending row that
is due and first in its queue, so a row whose enqueue failed after commit, or whose worker died,
is delivered anyway. It also prunes finished rows past the retention.

Both are module-level tasks on :class:`~freshtoken.worker.base.RuntimeTask`; the delivery task's
time limits follow the webhook timeout (``task_annotations`` in :mod:`freshtoken.worker.config`).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.store.outbox import prune
from freshtoken.webhooks.outbox import WebhookConfig
from freshtoken.worker.base import RuntimeTask
from freshtoken.worker.config import MAX_COUNTDOWN_SECONDS, SWEEP_TASK, WEBHOOK_TASK

log = get_logger("freshtoken.webhooks")


@shared_task(base=RuntimeTask, bind=True, name=WEBHOOK_TASK, ignore_result=True, max_retries=None)
def deliver_webhook(self: RuntimeTask, outbox_id: int) -> dict[str, Any]:
    """Deliver outbox row ``outbox_id`` (and the due rows queued behind it, in order)."""
    result = self.runtime.webhook_sender().deliver(outbox_id)
    if result.continue_with is not None:
        self.apply_async(args=(result.continue_with,))
    if result.retry_in is not None:
        self.apply_async(args=(outbox_id,), countdown=min(result.retry_in, MAX_COUNTDOWN_SECONDS))
    return {"attempts": result.attempts, "retry_in": result.retry_in}


@shared_task(base=RuntimeTask, bind=True, name=SWEEP_TASK, ignore_result=True)
def sweep_webhooks(self: RuntimeTask) -> int:
    """Enqueue every due, unclaimed queue head; prune finished rows past the retention."""
    runtime = self.runtime
    if not WebhookConfig.from_settings(runtime.settings).enabled:
        return 0
    heads = runtime.webhook_sender().sweep_once()
    deliver = self.app.tasks[WEBHOOK_TASK]
    for outbox_id in heads:
        deliver.apply_async(args=(outbox_id,))
    with session_scope(runtime.session_factory) as session:
        pruned = prune(session, runtime.clock.now(), runtime.settings.webhook_retention_days)
    if heads or pruned:
        log.info("webhook.sweep", enqueued=len(heads), pruned=pruned)
    return len(heads)
