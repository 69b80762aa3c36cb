"""Benchmark 8: early warning. How long before a broken connection's token expires does freshtoken
know (and say) that the connection needs re-authorisation?

``connections`` connections are imported through ``POST /connections``; each one's grant is
revoked at the provider (:mod:`benchmarks.provider`) at a random time at least
``revoke_before_s`` before the imported expiry: before the proactive refresh would first be due
(the refresh lead of an imported token is half its lifetime as imported, at most
``(expiry_from_s + expiry_spread_s) / 2``). Reads of random connections arrive at
``read_rate`` per second throughout, as a product would send them. Two modes, each on a fresh
schema and provider:

* **on**: ``freshtoken api`` + ``worker`` + ``beat`` (proactive refresh);
* **off**: ``freshtoken api`` only (refresh-on-read, Nango's model); a ``worker`` without
  ``beat`` is added when webhooks are delivered, since delivery runs on Celery.

When freshtoken knows: if the code measured has auth webhooks (its settings have
``webhook_url``), the receipt of the refresh-failure webhook (``success: false``) at a receiver
run by the benchmark; otherwise the first ``token.refresh`` line of that connection with a
permanent failure (``error_class: permanent``, the needs-re-authorisation state). The report
says which. **Early warning** = the expiry of the last token freshtoken holds for the connection
(the import's expiry, or the provider's issue time of the last token it handed out + the token
lifetime) minus that moment; negative = the token had already expired.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.api_client import connection_body, create_integration, import_connections
from benchmarks.common import Context, free_port, http_json, log, median, parse_ts
from benchmarks.freshness import open_loop_reads
from benchmarks.read_path import db_upgrade
from freshtoken.settings import Settings

CHUNK_S = 5.0


@dataclass(frozen=True)
class EarlyWarningSizes:
    """Workload of one mode."""

    connections: int = 20
    lifetime_s: float = 60.0
    read_rate: float = 10.0
    latency_s: float = 0.1
    scan_interval_s: float = 3.0
    expiry_from_s: float = 40.0  # imported tokens expire uniformly in [from, from + spread]
    expiry_spread_s: float = 30.0
    revoke_before_s: float = 36.0  # revoked at least this long before the imported expiry
    tail_s: float = 15.0  # the run ends this long after the last expiry (or when all are known)


def webhooks_supported() -> bool:
    """True when the code measured has auth webhooks (``FRESHTOKEN_WEBHOOK_URL``)."""
    return "webhook_url" in Settings.model_fields


class _Receiver:
    """A webhook receiver on 127.0.0.1: records (arrival time, parsed body), answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[float, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = None
                outer.received.append((time.time(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where freshtoken sends webhooks."""
        return f"http://127.0.0.1:{self.port}/hooks"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def bench_early_warning(ctx: Context, sizes: EarlyWarningSizes) -> dict[str, Any]:
    """Both modes, identical workloads (same expiries and revocation times)."""
    source = "webhook" if webhooks_supported() else "log"
    modes = {name: _mode(ctx, sizes, name, source) for name in ("on", "off")}
    return {"sizes": asdict(sizes), "source": source, "modes": modes}


def _mode(ctx: Context, sizes: EarlyWarningSizes, name: str, source: str) -> dict[str, Any]:
    url = ctx.new_schema(f"bench_warn_{name}")
    ctx.redis.clear()
    receiver = _Receiver() if source == "webhook" else None
    extra: dict[str, Any] = {"scan_interval_seconds": sizes.scan_interval_s}
    if receiver is not None:
        extra["webhook_url"] = receiver.url
    env = ctx.env(url, **extra)
    db_upgrade(env)
    provider, provider_url = ctx.bench_provider(
        f"warn-provider-{name}", latency=sizes.latency_s, lifetime=sizes.lifetime_s
    )
    api, base = ctx.api(f"warn-api-{name}", env)
    procs = [api]
    if name == "on" or receiver is not None:
        procs.append(ctx.worker(f"warn-worker-{name}", env, concurrency=4, pool="threads"))
    if name == "on":
        procs.append(ctx.beat(f"warn-beat-{name}", env))
    create_integration(base, ctx.secret_key)
    families = http_json(
        provider_url + "/_bench/seed", {"count": sizes.connections, "lifetime": sizes.lifetime_s}
    )
    rng = random.Random(8)  # the same expiries and revocation times in both modes
    start = time.time()
    expiries = [
        start + sizes.expiry_from_s + rng.uniform(0, sizes.expiry_spread_s)
        for _ in range(sizes.connections)
    ]
    revoke_at = [rng.uniform(start + 1, e - sizes.revoke_before_s) for e in expiries]
    bodies = [
        connection_body(
            f"w{i + 1}",
            access_token=f["access_token"],
            refresh_token=f["refresh_token"],
            expires_at=e,
            token_url=provider_url + "/oauth/token",
        )
        for i, (f, e) in enumerate(zip(families, expiries, strict=True))
    ]
    import_connections(base, ctx.secret_key, bodies)
    duration = max(expiries) + sizes.tail_s - time.time()
    log(f"early warning ({name}): {sizes.connections} connections, up to {duration:.0f}s")

    def revoke_all() -> None:
        for when, family in sorted(zip(revoke_at, families, strict=True), key=lambda x: x[0]):
            time.sleep(max(0.0, when - time.time()))
            http_json(provider_url + "/_bench/revoke", {"family": family["family"]})

    revoker = threading.Thread(target=revoke_all, daemon=True)
    revoker.start()
    deadline = time.time() + duration
    cids = [f"w{i + 1}" for i in range(sizes.connections)]
    chunk = 0
    while time.time() < deadline:
        # Reads in short chunks, so the mode ends as soon as every failure is known.
        chunk += 1
        asyncio.run(
            open_loop_reads(
                base,
                ids=sizes.connections,
                rate=sizes.read_rate,
                duration=min(CHUNK_S, max(0.5, deadline - time.time())),
                auth=f"Bearer {ctx.secret_key}",
                pool_size=8,
                seed=chunk,
                prefix="/connections/w",
            )
        )
        if not revoker.is_alive():
            time.sleep(0.5)  # deliveries in flight
            lines, received = _evidence(procs, receiver)
            if all(_known_at(c, source, lines, received) is not None for c in cids):
                break
    revoker.join(timeout=5)
    time.sleep(1.0)  # the last log lines and deliveries
    issued = http_json(provider_url + "/_bench/issued")
    lines, received = _evidence(procs, receiver)
    for proc in reversed(procs):
        ctx.stop(proc)
    ctx.stop(provider)
    if receiver is not None:
        receiver.close()
    ctx.drop_schema(url)
    ctx.redis.clear()

    per_connection: list[dict[str, Any]] = []
    for i, family in enumerate(families):
        cid = f"w{i + 1}"
        refreshes = issued.get(family["family"], [])[1:]  # [0] is the seeded token
        expiry = refreshes[-1][0] + sizes.lifetime_s if refreshes else expiries[i]
        known = _known_at(cid, source, lines, received)
        trigger = next(
            (
                str(e.get("trigger"))
                for e in lines
                if e.get("connection_id") == cid and e.get("error_class") == "permanent"
            ),
            None,
        )
        per_connection.append(
            {
                "connection": cid,
                "revoked_after_s": revoke_at[i] - start,
                "expiry_after_s": expiry - start,
                "known_after_s": None if known is None else known - start,
                "warning_s": None if known is None else expiry - known,
                "trigger": trigger,
            }
        )
    warnings = [float(c["warning_s"]) for c in per_connection if c["warning_s"] is not None]
    triggers: dict[str, int] = {}
    for c in per_connection:
        triggers[str(c["trigger"])] = triggers.get(str(c["trigger"]), 0) + 1
    return {
        "connections": per_connection,
        "known": len(warnings),
        "not_known": sizes.connections - len(warnings),
        "warning_s_median": median(warnings) if warnings else None,
        "warning_s_min": min(warnings) if warnings else None,
        "expired_before_known": sum(1 for w in warnings if w <= 0),
        "failure_triggers": triggers,
    }


def _evidence(
    procs: list[Any], receiver: _Receiver | None
) -> tuple[list[dict[str, Any]], list[tuple[float, Any]]]:
    lines = [e for p in procs for e in p.json_lines() if e.get("event") == "token.refresh"]
    return lines, list(receiver.received) if receiver is not None else []


def _known_at(
    cid: str, source: str, lines: list[dict[str, Any]], received: list[tuple[float, Any]]
) -> float | None:
    """When freshtoken first said this connection needs re-authorisation."""
    if source == "webhook":
        times = [
            t
            for t, body in received
            if isinstance(body, dict)
            and body.get("connectionId") == cid
            and body.get("success") is False
        ]
        return min(times) if times else None
    times = [
        parse_ts(e["timestamp"])
        for e in lines
        if e.get("connection_id") == cid and e.get("error_class") == "permanent"
    ]
    return min(times) if times else None
