"""Auth webhooks, wire-compatible with Nango's: creation, override, refresh failure, recovery.

- :mod:`.payload`: body, key-sorted serialisation, ``X-Nango-*`` signatures.
- :mod:`.outbox`: rows written in the state change's own transaction, enqueued after commit.
- :mod:`.delivery`: one attempt per task run, retries as Celery countdowns, per-connection order.
- :mod:`.tasks`: the delivery task and the sweep (beat).

The runtime installs the outbox hooks when a webhook URL is configured
(:func:`freshtoken.runtime.build_runtime`); the task names live with the others in
:mod:`freshtoken.worker.config`.
"""

from __future__ import annotations

from freshtoken.worker.config import SWEEP_TASK, WEBHOOK_TASK

__all__ = ["SWEEP_TASK", "WEBHOOK_TASK"]
