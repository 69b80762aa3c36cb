"""Auth webhooks under ``make run``: the embedded worker and beat threads deliver them.

Runs in a fresh process (as ``tests/unit/worker/test_tasks.py`` does for the embedded worker), on
SQLite with the in-memory broker: one connection imported before the embedded worker starts (the
hand-off then goes through a producer built on first use), one after, and a scheduled refresh that
the provider rejects. The receiver gets two creations and exactly one failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_SCRIPT = """
import json, sys, time
from pathlib import Path
import celery, celery._state
celery._state.set_default_app(
    celery.Celery("stray-default", broker="redis://127.0.0.1:1/0", set_as_current=False)
)
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.worker.embedded import start_embedded
from tests.support import add_oauth2_connection, make_runtime, make_settings
from tests.webhook_receiver import WebhookReceiver

tmp = Path(sys.argv[1])
with WebhookReceiver() as receiver, MockProvider(MockProviderConfig()) as provider:
    rt = make_runtime(make_settings(tmp, scan_interval_seconds=0.5, webhook_url=receiver.url))
    add_oauth2_connection(rt, provider, connection_id="before", expires_in=600)
    provider.inject("invalid_grant")
    start_embedded(rt)
    add_oauth2_connection(rt, provider, connection_id="after", expires_in=3600)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(receiver.received()) < 3:
        time.sleep(0.1)
    time.sleep(1.5)  # a few more scans and sweeps
    bodies = [r.json() for r in receiver.received()]
    print("RESULT " + json.dumps(bodies), flush=True)
"""


def test_embedded_worker_delivers_creation_and_one_failure(tmp_path: Path) -> None:
    """Two creations (before and after the worker started) and one failure, nothing more."""
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    bodies: list[dict[str, Any]] = json.loads(lines[-1].removeprefix("RESULT "))
    seen = sorted((b["operation"], b["success"], b["connectionId"]) for b in bodies)
    assert seen == [
        ("creation", True, "after"),
        ("creation", True, "before"),
        ("refresh", False, "before"),
    ]
