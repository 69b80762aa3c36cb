"""The runtime's typed collaborators: built once, on first use where only some processes need
them, and closed with the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import make_runtime, make_settings

from freshtoken.refresh.service import RefreshService


def test_the_refresh_core_and_its_http_client_are_wired_at_build(tmp_path: Path) -> None:
    """build_runtime attaches the refresh service (also the read refresher) and its client."""
    runtime = make_runtime(make_settings(tmp_path))
    try:
        service = runtime.require_refresh_service()
        assert isinstance(service, RefreshService)
        assert runtime.refresher is service
        assert runtime.provider_http is service.http
    finally:
        runtime.close()


def test_without_the_refresher_there_is_no_refresh_service(tmp_path: Path) -> None:
    """with_refresher=False serves stored credentials; asking for the service says why it fails."""
    runtime = make_runtime(make_settings(tmp_path), with_refresher=False)
    try:
        assert runtime.refresh_service is None and runtime.provider_http is None
        with pytest.raises(RuntimeError, match="without the refresh service"):
            runtime.require_refresh_service()
    finally:
        runtime.close()


def test_lazily_built_collaborators_are_built_once_and_closed_with_the_runtime(
    tmp_path: Path,
) -> None:
    """The connect flow's client, the webhook sender and the WebSocket hub: one each, closed."""
    runtime = make_runtime(make_settings(tmp_path))
    connect = runtime.connect_http_client()
    sender = runtime.webhook_sender()
    hub = runtime.websocket_hub()
    assert runtime.connect_http_client() is connect
    assert runtime.webhook_sender() is sender
    assert runtime.websocket_hub() is hub
    assert not connect.follow_redirects and not sender.http.follow_redirects
    runtime.close()
    assert connect.is_closed and sender.http.is_closed
