"""A benchmark OAuth2 token endpoint that keeps the evidence the storm benchmarks need.

``python -m benchmarks.provider --port N [--latency S] [--lifetime S]`` serves, with uvicorn
(one process, asyncio, so hundreds of slow calls cost no threads):

* ``POST /oauth/token`` (``grant_type=refresh_token``): refresh-token rotation and reuse detection
  as ``freshtoken mock-provider`` has them (every refresh spends the presented refresh token and
  issues a new pair; presenting a spent one is ``400 invalid_grant`` and revokes the family; a
  revoked family answers ``invalid_grant``). The state change happens when the request arrives;
  the answer is sent ``latency`` seconds later, or trickled one byte every ``trickle_interval``
  seconds for up to ``trickle_for`` seconds (then the rest at once), as a slow or hostile
  provider would. Client authentication is not checked (the benchmarks measure freshtoken, not
  the client's credentials).
* ``POST /_bench/seed`` ``{"count", "lifetime"}``: new token families.
* ``POST /_bench/revoke`` ``{"family"}``: revoke a family now (its user withdrew the grant).
* ``POST /_bench/config`` ``{"latency", "lifetime", "trickle_interval", "trickle_for"}``.
* ``GET /_bench/stats``: counters (calls, ``invalid_grant``, reuse, largest number of calls in
  flight at once, and of calls presenting the *same* refresh token at once) and every token call
  (start, end, outcome, whether the client hung up first).
* ``GET /_bench/issued``: per family, every access token issued and when (epoch seconds), so a
  client can tell whether the token it was handed was still the family's current one when the
  response arrived.

Why not ``freshtoken mock-provider``: it keeps no issue timeline, cannot trickle and has no
per-family revocation, and it belongs to the product (other work changes it); the benchmarks
need an instrument that stays put. Tokens are random and prefixed ``bench-at-``/``bench-rt-``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path


@dataclass
class Family:
    """One grant: its live refresh token and every access token it issued (time, token)."""

    name: str
    refresh_token: str
    issued: list[tuple[float, str]] = field(default_factory=list)
    revoked_at: float | None = None


@dataclass
class State:
    """Everything the endpoint knows; one event loop, so no locks."""

    latency: float = 0.0
    lifetime: float = 3600.0
    trickle_interval: float = 0.0
    trickle_for: float = 0.0
    families: dict[str, Family] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    in_flight: int = 0
    in_flight_by_rt: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    presented: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Zero the counters and forget the calls (tokens and families are kept)."""
        self.stats = {
            "refresh_calls": 0,
            "successes": 0,
            "invalid_grant": 0,
            "reuse_detected": 0,
            "families_revoked": 0,
            "max_concurrent": self.in_flight,
            "max_concurrent_same_refresh_token": 0,
            "max_presentations_of_one_refresh_token": 0,
        }
        self.calls = []
        self.presented = {}

    def seed(self, lifetime: float) -> dict[str, Any]:
        """A new family with a live access token valid for ``lifetime`` seconds."""
        name = f"fam-{len(self.families) + 1}"
        rt, at = _token("bench-rt-"), _token("bench-at-")
        family = Family(name, rt, [(time.time(), at)])
        self.families[name] = family
        self.refresh_tokens[rt] = (name, None)
        return {
            "family": name,
            "access_token": at,
            "refresh_token": rt,
            "expires_at": time.time() + lifetime,
        }

    def refresh(self, presented: str) -> tuple[int, dict[str, Any]]:
        """Decide the answer to a refresh and apply its state change (rotation, revocation)."""
        self.stats["refresh_calls"] += 1
        count = self.presented.get(presented, 0) + 1
        self.presented[presented] = count
        self.stats["max_presentations_of_one_refresh_token"] = max(
            self.stats["max_presentations_of_one_refresh_token"], count
        )
        entry = self.refresh_tokens.get(presented)
        if entry is None:
            self.stats["invalid_grant"] += 1
            return 400, {"error": "invalid_grant", "error_description": "unknown refresh token"}
        name, spent_at = entry
        family = self.families[name]
        if spent_at is not None:
            self.stats["invalid_grant"] += 1
            self.stats["reuse_detected"] += 1
            if family.revoked_at is None:
                family.revoked_at = time.time()
                self.stats["families_revoked"] += 1
            return 400, {"error": "invalid_grant", "error_description": "refresh token reused"}
        if family.revoked_at is not None:
            self.stats["invalid_grant"] += 1
            return 400, {"error": "invalid_grant", "error_description": "grant revoked"}
        now = time.time()
        self.refresh_tokens[presented] = (name, now)
        new_rt, new_at = _token("bench-rt-"), _token("bench-at-")
        self.refresh_tokens[new_rt] = (name, None)
        family.refresh_token = new_rt
        family.issued.append((now, new_at))
        self.stats["successes"] += 1
        return 200, {
            "access_token": new_at,
            "refresh_token": new_rt,
            "token_type": "Bearer",
            "expires_in": int(self.lifetime),
            "scope": "read write",
        }


def _token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18)


STATE = State()
STATE.reset()


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Any, status: int, payload: Any) -> None:
    data = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _token_call(receive: Any, send: Any) -> None:
    params = dict(parse_qsl((await _body(receive)).decode("utf-8", "replace")))
    started = time.time()
    call: dict[str, Any] = {"start": started, "end": None, "status": None, "hung_up": False}
    STATE.calls.append(call)
    STATE.in_flight += 1
    STATE.stats["max_concurrent"] = max(STATE.stats["max_concurrent"], STATE.in_flight)
    presented = params.get("refresh_token", "")
    same = STATE.in_flight_by_rt.get(presented, 0) + 1
    STATE.in_flight_by_rt[presented] = same
    STATE.stats["max_concurrent_same_refresh_token"] = max(
        STATE.stats["max_concurrent_same_refresh_token"], same
    )
    hung_up = asyncio.Event()

    async def watch() -> None:
        # After the body, receive() returns only when the client goes away.
        while (await receive())["type"] != "http.disconnect":
            pass
        hung_up.set()

    watcher = asyncio.create_task(watch())
    try:
        if params.get("grant_type") != "refresh_token" or not presented:
            status, payload = 400, {"error": "unsupported_grant_type"}
        else:
            status, payload = STATE.refresh(presented)
        call["status"] = status
        call["family"] = STATE.refresh_tokens.get(presented, ("?", None))[0]
        data = orjson.dumps(payload)
        if STATE.trickle_interval > 0:
            await _trickle(send, status, data, hung_up)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hung_up.wait(), STATE.latency)
            if not hung_up.is_set():
                await _send_json(send, status, payload)
    except OSError:
        hung_up.set()
    finally:
        watcher.cancel()
        call["end"] = time.time()
        call["hung_up"] = hung_up.is_set()
        STATE.in_flight -= 1
        STATE.in_flight_by_rt[presented] -= 1


async def _trickle(send: Any, status: int, data: bytes, hung_up: asyncio.Event) -> None:
    """Headers at once, then the body one byte every ``trickle_interval`` s (leading spaces,
    which JSON allows), until ``trickle_for`` s have passed; then the rest."""
    padded = b" " * int(STATE.trickle_for / STATE.trickle_interval + 1) + data
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(padded)).encode()),
            ],
        }
    )
    deadline = time.monotonic() + STATE.trickle_for
    sent = 0
    while time.monotonic() < deadline and not hung_up.is_set():
        await send(
            {"type": "http.response.body", "body": padded[sent : sent + 1], "more_body": True}
        )
        sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hung_up.wait(), STATE.trickle_interval)
    if not hung_up.is_set():
        await send({"type": "http.response.body", "body": padded[sent:]})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app (raw: no framework)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    if path == TOKEN_PATH and method == "POST":
        await _token_call(receive, send)
        return
    body = orjson.loads(await _body(receive) or b"{}") if method == "POST" else {}
    if path == "/health":
        await _send_json(send, 200, {"status": "ok"})
    elif path == "/_bench/seed":
        lifetime = float(body.get("lifetime", STATE.lifetime))
        families = [STATE.seed(lifetime) for _ in range(int(body.get("count", 1)))]
        await _send_json(send, 200, families)
    elif path == "/_bench/revoke":
        family = STATE.families[body["family"]]
        if family.revoked_at is None:
            family.revoked_at = time.time()
        await _send_json(send, 200, {"revoked_at": family.revoked_at})
    elif path == "/_bench/config":
        for name in ("latency", "lifetime", "trickle_interval", "trickle_for"):
            if name in body:
                setattr(STATE, name, float(body[name]))
        await _send_json(send, 200, {"ok": True})
    elif path == "/_bench/reset":
        STATE.reset()
        await _send_json(send, 200, {"ok": True})
    elif path == "/_bench/stats":
        await _send_json(send, 200, {**STATE.stats, "calls": STATE.calls})
    elif path == "/_bench/issued":
        issued = {name: f.issued for name, f in STATE.families.items()}
        await _send_json(send, 200, issued)
    else:
        await _send_json(send, 404, {"error": "not_found"})


def main() -> None:
    """Serve on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.provider")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args()
    STATE.latency, STATE.lifetime = args.latency, args.lifetime
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
