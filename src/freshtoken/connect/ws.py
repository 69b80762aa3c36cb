"""The WebSocket channel ``@nangohq/frontend`` waits on for the result of a popup flow.

Nango's protocol: the browser opens a WebSocket at the API's root path; the server answers at
once with ``{"message_type":"connection_ack","ws_client_id":...}``; the browser passes that id to
``/oauth/connect`` as ``ws_client_id``; when the flow ends the server sends one ``success`` or
``error`` frame on that socket. Sockets live in this process (see :class:`WebSocketHub`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from freshtoken.logs import get_logger

log = get_logger("freshtoken.connect")


class WebSocketHub:
    """``ws_client_id`` → open socket, for the sockets this process accepted."""

    def __init__(self) -> None:
        self._sockets: dict[str, WebSocket] = {}
        self._lock = asyncio.Lock()

    async def serve(self, websocket: WebSocket) -> None:
        """Accept a socket, acknowledge it with its id, and hold it until the browser leaves."""
        await websocket.accept()
        client_id = str(uuid.uuid4())
        async with self._lock:
            self._sockets[client_id] = websocket
        try:
            await websocket.send_text(
                _frame({"message_type": "connection_ack", "ws_client_id": client_id})
            )
            while True:  # the browser never sends anything we act on; wait for the close
                await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            async with self._lock:
                self._sockets.pop(client_id, None)

    async def send(self, client_id: str | None, payload: dict[str, Any]) -> bool:
        """Send one frame to a client; False when it is not connected here."""
        if not client_id:
            return False
        async with self._lock:
            websocket = self._sockets.get(client_id)
        if websocket is None:
            log.info("oauth.ws_client_missing", message_type=payload.get("message_type"))
            return False
        with contextlib.suppress(Exception):  # a socket closed meanwhile is not our failure
            await websocket.send_text(_frame(payload))
            return True
        return False

    async def success(self, client_id: str | None, provider_config_key: str, conn_id: str) -> None:
        """Nango's success frame."""
        await self.send(
            client_id,
            {
                "message_type": "success",
                "provider_config_key": provider_config_key,
                "connection_id": conn_id,
                "is_pending": False,
            },
        )

    async def error(
        self,
        client_id: str | None,
        provider_config_key: str,
        conn_id: str,
        error_type: str,
        error_desc: str,
    ) -> None:
        """Nango's error frame."""
        await self.send(
            client_id,
            {
                "message_type": "error",
                "provider_config_key": provider_config_key,
                "connection_id": conn_id,
                "error_type": error_type,
                "error_desc": error_desc,
            },
        )


def _frame(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload).decode()
