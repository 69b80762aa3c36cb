"""The WebSocket channel ``@nangohq/frontend`` waits on for the result of a popup flow.

Nango's protocol: the browser opens a WebSocket at the API's root path; the server answers at
once with ``{"message_type":"connection_ack","ws_client_id":...}``; the browser passes that id to
``/oauth/connect`` as ``ws_client_id``; when the flow ends the server sends one ``success`` or
``error`` frame on that socket. Sockets live in the process that accepted them; with Redis
configured, a frame for a socket held by another API process (``--workers``, replicas) is
relayed through a Redis channel (see :class:`WebSocketHub`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from freshtoken.logs import get_logger

log = get_logger("freshtoken.connect")

RELAY_CHANNEL = "freshtoken:connect:ws"


class WebSocketHub:
    """``ws_client_id`` → open socket, for the sockets this process accepted.

    With a Redis client, frames for sockets that are not here are published on
    :data:`RELAY_CHANNEL`, and a listener thread delivers published frames to the sockets that
    are (frames carry only ids, types and Nango's error descriptions: never a code or token).
    """

    def __init__(self, redis: Any = None) -> None:
        self._sockets: dict[str, WebSocket] = {}
        self._lock = asyncio.Lock()
        self._redis = redis
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relay: threading.Thread | None = None
        self._stopping = threading.Event()

    def _start_relay(self) -> None:
        if self._redis is None or self._relay is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._relay = threading.Thread(target=self._listen, name="connect-ws-relay", daemon=True)
        self._relay.start()

    def _listen(self) -> None:
        """Deliver relayed frames to local sockets; resubscribe after Redis errors."""
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(RELAY_CHANNEL)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    data = orjson.loads(message["data"])
                    client_id, payload = data.get("client_id"), data.get("payload")
                    if isinstance(client_id, str) and isinstance(payload, dict) and self._loop:
                        asyncio.run_coroutine_threadsafe(
                            self._send_local(client_id, payload), self._loop
                        )
            except Exception as exc:  # Redis down: retry; frames meanwhile are lost
                log.warning("oauth.ws_relay_error", error=type(exc).__name__)
                time.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def close(self) -> None:
        """Stop the relay listener (tests; the thread is a daemon otherwise)."""
        self._stopping.set()

    async def serve(self, websocket: WebSocket) -> None:
        """Accept a socket, acknowledge it with its id, and hold it until the browser leaves."""
        self._start_relay()
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
        """Send one frame to a client here, or relay it through Redis; False if neither."""
        if not client_id:
            return False
        if await self._send_local(client_id, payload):
            return True
        if self._redis is not None:
            message = orjson.dumps({"client_id": client_id, "payload": payload})
            try:
                await asyncio.to_thread(self._redis.publish, RELAY_CHANNEL, message)
                return True
            except Exception as exc:
                log.warning("oauth.ws_relay_error", error=type(exc).__name__)
        log.info("oauth.ws_client_missing", message_type=payload.get("message_type"))
        return False

    async def _send_local(self, client_id: str, payload: dict[str, Any]) -> bool:
        async with self._lock:
            websocket = self._sockets.get(client_id)
        if websocket is None:
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
