"""The one place freshtoken talks to a provider's token endpoint.

Every provider call goes through :meth:`ProviderHttp.send`, so a policy on outbound calls (URL
allow-list, response cap, deadline) lives here once. Why the shape:

* **One overall deadline.** httpx's timeouts are per phase and per read: a token endpoint that
  trickles one byte every 2 s never trips a 15 s read timeout and holds the call for as long as it
  likes, past the refresh lock's TTL, after which a second refresher spends the same refresh
  token. ``send`` wraps connect + send + the whole body in one ``asyncio.timeout`` that the caller
  sets inside the lock's TTL (the settings validator keeps the default relation).
* **The body is read incrementally** and cut at ``provider_max_response_bytes``: a token answer is
  a few hundred bytes; a provider that streams megabytes is refused before it costs memory.
* **Async, one client per event loop.** Waiting on a provider holds no thread. httpx's async
  pool is bound to the loop that created it, and a process can run several loops (the API's and
  the sync shim's, see :mod:`freshtoken.refresh.runner`), so each loop gets its own client.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from freshtoken.outbound import OutboundDenied, OutboundPolicy
from freshtoken.settings import Settings


class ProviderCallError(Exception):
    """A provider call that produced no usable HTTP answer (``code`` says why; no secrets)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"provider call failed: {code}")
        self.code = code


@dataclass(frozen=True)
class ProviderRequest:
    """One outbound request to a provider (form or JSON body)."""

    url: str
    headers: Mapping[str, str]
    form: Mapping[str, str] | None = None
    json: Any = None
    params: Mapping[str, Any] | None = None  # sent in the URL's query string
    method: str = "POST"


@dataclass(frozen=True)
class ProviderResponse:
    """A provider's complete answer, body read up to the cap."""

    status_code: int
    headers: httpx.Headers
    content: bytes = field(repr=False)

    @property
    def is_success(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status_code < 300


async def check_outbound(policy: OutboundPolicy, url: str) -> None:
    """Apply ``policy`` to ``url`` without blocking the loop; ProviderCallError if refused.

    Only a production policy resolves the host (a blocking ``getaddrinfo``), so only that check
    goes to a worker thread; development's is structural and runs inline.
    """
    try:
        if policy.allow_private:
            policy.check(url)
        else:
            await asyncio.to_thread(policy.check, url)
    except OutboundDenied:
        raise ProviderCallError("outbound_denied") from None


class ProviderHttp:
    """Async HTTP to token endpoints: hard deadline, capped body, no redirects."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.deadline_seconds = settings.provider_deadline
        self.max_response_bytes = settings.provider_max_response_bytes
        # Checked on every send, whoever built the request (defence in depth: a grant that
        # forgot to carry the policy still cannot send a secret where production forbids).
        self.outbound = OutboundPolicy.from_settings(settings)
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            s = self.settings
            # Per-phase timeouts stay as a first line; the overall deadline in send() is the bound.
            timeout = httpx.Timeout(
                connect=s.http_connect_timeout,
                read=s.http_read_timeout,
                write=s.http_read_timeout,
                pool=s.http_connect_timeout,
            )
            client = httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                headers={"User-Agent": "freshtoken"},
                transport=self._transport,
            )
            self._clients[loop] = client
        return client

    async def send(
        self, request: ProviderRequest, *, deadline: float | None = None
    ) -> ProviderResponse:
        """Send ``request`` and read the whole answer within ``deadline`` seconds (or the default).

        Raises :class:`ProviderCallError` with ``timeout`` (deadline or per-phase timeout),
        ``connection_error``, ``response_too_large``, ``invalid_token_url`` or
        ``outbound_denied`` (the outbound policy refused the URL; nothing was sent).
        """
        budget = self.deadline_seconds if deadline is None else min(deadline, self.deadline_seconds)
        if budget <= 0:
            raise ProviderCallError("timeout")
        await check_outbound(self.outbound, request.url)
        client = self._client()
        try:
            async with asyncio.timeout(budget):
                async with client.stream(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=dict(request.form) if request.form is not None else None,
                    json=request.json,
                    params=dict(request.params) if request.params is not None else None,
                ) as response:
                    content = await self._read_capped(response)
                    return ProviderResponse(response.status_code, response.headers, content)
        except TimeoutError:
            raise ProviderCallError("timeout") from None
        except httpx.TimeoutException:
            raise ProviderCallError("timeout") from None
        except httpx.TransportError:
            raise ProviderCallError("connection_error") from None
        except httpx.InvalidURL:
            # A URL httpx cannot send (e.g. CR/LF in a configured token URL): no retry fixes it.
            raise ProviderCallError("invalid_token_url") from None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ProviderCallError("response_too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise ProviderCallError("response_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the client of the running loop (others close with their loops)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
