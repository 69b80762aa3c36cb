"""Nango's own Node SDK verifies the auth webhooks freshtoken sends.

``@nangohq/node`` 0.71.10 (installed as in ``test_nango_node_sdk.py``, whose ``sdk_dir`` fixture
this module reuses) checks a webhook that freshtoken really POSTed to a real HTTP receiver:
``verifyIncomingWebhookRequest(rawBody, headers)`` (the HMAC header, the documented check) and the
deprecated ``verifyWebhookSignature(signature, body)`` (SHA-256 of key + JSON.stringify). A body
changed by one byte, or signed with another key, must fail both.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from tests.compat.test_nango_node_sdk import sdk_dir  # noqa: F401  (the npm-installed SDK)
from tests.support import SECRET_KEY, add_oauth2_connection, make_runtime, make_settings
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.compat

HERE = Path(__file__).parent


class _Queue:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_task(self, _name: str, args: tuple[int]) -> None:
        self.sent.append(args[0])


def _verify(folder: Path, secret: str, webhooks: list[dict[str, Any]]) -> list[dict[str, bool]]:
    shutil.copy(HERE / "webhook_verify.mjs", folder / "webhook_verify.mjs")
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(folder / "webhook_verify.mjs")],
        input=json.dumps({"secretKey": secret, "webhooks": webhooks}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    verdicts: list[dict[str, bool]] = json.loads(result.stdout)
    return verdicts


def test_nango_sdk_verifies_the_webhooks_freshtoken_sent(
    sdk_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Creation (end user, unicode), override and failure webhooks verify; tampered ones fail."""
    with (
        WebhookReceiver() as receiver,
        MockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as provider,
    ):
        runtime = make_runtime(
            make_settings(tmp_path, webhook_url=receiver.url + "/hooks"),
            clock=FakeClock(dt.datetime.now(dt.UTC)),
        )
        queue = _Queue()
        runtime.celery_app = queue
        try:
            pk, _ = add_oauth2_connection(runtime, provider, connection_id="acmé-1")
            with runtime.store() as store:
                conn = store.get_connection_by_pk(pk)
                assert conn is not None
                conn.tags = {"team": "Zürich"}
                conn.end_user = {"id": "u1", "email": "u1@example.com", "tags": {"plan": "pro"}}
            add_oauth2_connection(runtime, provider, connection_id="acmé-1")  # override
            provider.inject("invalid_grant")
            service = runtime.require_refresh_service()
            assert service.refresh(pk, trigger="manual", force=True).outcome == "failed"
            sender = runtime.webhook_sender()
            for outbox_id in queue.sent:
                sender.deliver(outbox_id)
        finally:
            runtime.close()
        got = receiver.received()
    operations = [(r.json()["operation"], r.json()["success"]) for r in got]
    assert operations == [("creation", True), ("override", True), ("refresh", False)]
    assert got[1].json()["endUser"] == {
        "endUserEmail": "u1@example.com",
        "endUserId": "u1",
        "tags": {"plan": "pro"},
    }
    webhooks = [{"body": r.body.decode(), "headers": r.headers} for r in got]
    assert _verify(sdk_dir, SECRET_KEY, webhooks) == [{"hmac": True, "legacy": True}] * 3

    tampered = [
        {"body": w["body"].replace("acm", "acn", 1), "headers": w["headers"]} for w in webhooks
    ]
    assert _verify(sdk_dir, SECRET_KEY, tampered) == [{"hmac": False, "legacy": False}] * 3
    assert _verify(sdk_dir, SECRET_KEY + "x", webhooks) == [{"hmac": False, "legacy": False}] * 3
