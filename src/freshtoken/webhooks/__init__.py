"""Auth webhooks, wire-compatible with Nango's: creation, override, refresh failure, recovery.

- :mod:`.payload`: body, key-sorted serialisation, ``X-Nango-*`` signatures.
- :mod:`.outbox`: rows written in the state change's own transaction, enqueued after commit.
- :mod:`.delivery`: one attempt per task run, retries as Celery countdowns, per-connection order.
- :mod:`.tasks`: the delivery task and the sweep (beat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from freshtoken.webhooks.outbox import WebhookConfig, install

if TYPE_CHECKING:
    from freshtoken.runtime import Runtime

WEBHOOK_TASK = "freshtoken.deliver_webhook"
SWEEP_TASK = "freshtoken.sweep_webhooks"


def attach_webhooks(runtime: Runtime) -> bool:
    """Record auth webhooks in this runtime's sessions when a URL is configured (True if so).

    After commit the new rows are sent to the delivery task through this process's Celery app
    (``runtime.extras["celery_app"]``, or a producer built on first use).
    """
    config = WebhookConfig.from_settings(runtime.settings)
    if not config.enabled:
        return False

    def enqueue(outbox_id: int) -> None:
        app = runtime.extras.get("celery_app")
        if app is None:
            from freshtoken.worker.celery_app import create_celery

            app = create_celery(runtime.settings, runtime)
        app.send_task(WEBHOOK_TASK, args=(outbox_id,))

    install(runtime.session_factory, config, runtime.clock, enqueue)
    return True
