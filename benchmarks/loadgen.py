# ruff: noqa: S603, S607 - starts local tools and freshtoken processes with fixed argv
"""Closed-loop HTTP load: ``wrk`` (C, one thread) when available, else a small asyncio client.

Both keep ``concurrency`` keep-alive connections busy for ``duration`` seconds, each request a GET
of ``prefix + <random int in 1..ids> + suffix``, and report requests/s and latency percentiles.
``wrk`` is preferred on a 2-core machine: a Python generator competes with the server for CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import log, percentile

_WRK_SCRIPT = r"""
local n = tonumber(os.getenv("BENCH_IDS"))
local prefix = os.getenv("BENCH_PREFIX")
local suffix = os.getenv("BENCH_SUFFIX")
local auth = os.getenv("BENCH_AUTH")
local headers = {}
if auth ~= nil and auth ~= "" then headers["Authorization"] = auth end
math.randomseed(tonumber(os.getenv("BENCH_SEED")))
request = function()
  return wrk.format("GET", prefix .. math.random(1, n) .. suffix, headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class LoadResult:
    """One closed-loop run."""

    tool: str
    concurrency: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    def as_dict(self) -> dict[str, object]:
        """Plain dict for the report."""
        return asdict(self)


def ensure_wrk(install: bool) -> str | None:
    """The path of ``wrk``; installed with apt-get when missing and ``install`` (root only)."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    log("wrk not found: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = ["apt-get", "install", "-y", "-qq", "wrk"]
    subprocess.run(install_cmd, env=env, capture_output=True, timeout=300, check=False)
    if shutil.which("wrk") is None:
        # A machine whose package lists were never fetched finds nothing to install.
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(install_cmd, env=env, capture_output=True, timeout=300, check=False)
    return shutil.which("wrk")


def run_load(
    base_url: str,
    *,
    prefix: str,
    suffix: str,
    ids: int,
    concurrency: int,
    duration: float,
    auth: str | None,
    wrk: str | None,
    seed: int = 1,
) -> LoadResult:
    """Run one closed-loop load with wrk if given, else with the asyncio client."""
    if wrk:
        return _run_wrk(wrk, base_url, prefix, suffix, ids, concurrency, duration, auth, seed)
    return asyncio.run(
        _run_python(base_url, prefix, suffix, ids, concurrency, duration, auth, seed)
    )


def _run_wrk(
    wrk: str,
    base_url: str,
    prefix: str,
    suffix: str,
    ids: int,
    concurrency: int,
    duration: float,
    auth: str | None,
    seed: int,
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_SCRIPT)
        script = fh.name
    env = {
        **os.environ,
        "BENCH_IDS": str(ids),
        "BENCH_PREFIX": prefix,
        "BENCH_SUFFIX": suffix,
        "BENCH_AUTH": auth or "",
        "BENCH_SEED": str(seed),
    }
    try:
        proc = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "10s",
                "-s",
                script,
                base_url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    seconds = data["duration_us"] / 1e6
    errors = sum(data[k] for k in data if k.startswith("err_"))
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        requests=data["requests"],
        duration_s=round(seconds, 3),
        rps=data["requests"] / seconds,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
    )


class RawClient:
    """A minimal HTTP/1.1 keep-alive client over one asyncio connection (GET only)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Send one GET and read the response (Content-Length framed, as uvicorn sends)."""
        if self.writer is None or self.reader is None:
            await self.connect()
        assert self.writer is not None and self.reader is not None
        head = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write((head + "\r\n").encode())
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        response_headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                response_headers[key.strip().lower()] = value.strip()
        length = int(response_headers.get("content-length", "0"))
        body = await self.reader.readexactly(length) if length else b""
        return status, response_headers, body

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


def split_url(base_url: str) -> tuple[str, int]:
    """``http://host:port`` → (host, port)."""
    hostport = base_url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


async def _run_python(
    base_url: str,
    prefix: str,
    suffix: str,
    ids: int,
    concurrency: int,
    duration: float,
    auth: str | None,
    seed: int,
) -> LoadResult:
    host, port = split_url(base_url)
    headers = {"Authorization": auth} if auth else {}
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + duration

    async def worker() -> None:
        nonlocal errors
        client = RawClient(host, port)
        try:
            while time.perf_counter() < deadline:
                path = f"{prefix}{rng.randint(1, ids)}{suffix}"
                t0 = time.perf_counter()
                try:
                    status, _, _ = await client.get(path, headers)
                except (OSError, asyncio.IncompleteReadError):
                    errors += 1
                    await client.close()
                    client = RawClient(host, port)
                    continue
                latencies.append(time.perf_counter() - t0)
                if status >= 400:
                    errors += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return LoadResult(
        tool="python-asyncio",
        concurrency=concurrency,
        requests=len(latencies),
        duration_s=round(seconds, 3),
        rps=len(latencies) / seconds,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=(max(latencies) * 1000) if latencies else float("nan"),
        errors=errors,
    )
