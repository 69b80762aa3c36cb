# ruff: noqa: S603, S607 - starts local tools and freshtoken processes with fixed argv
"""Closed-loop HTTP load: ``wrk`` (C, one thread) when available, else a lean asyncio client.

Both keep ``concurrency`` keep-alive connections busy for ``duration`` seconds, each request a GET
of ``prefix + <random int in 1..ids> + suffix``, and report requests/s and latency percentiles.
``wrk`` is preferred on a 2-core machine: a Python generator competes with the server for CPU.
The Python one runs in a process of its own (``python -m benchmarks.loadgen``) on asyncio
Protocols (uvloop when installed), a few µs of CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def log(message: str) -> None:
    """Progress on stderr (lazy import: the load-generator process stays light)."""
    from benchmarks.common import log as common_log

    common_log(message)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile by nearest rank, as :func:`benchmarks.common.percentile` (kept here so
    ``python -m benchmarks.loadgen`` starts without SQLAlchemy and freshtoken: it is spawned for
    every run)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


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
    return _run_python_process(base_url, prefix, suffix, ids, concurrency, duration, auth, seed)


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
    """Closed-loop load from ``concurrency`` keep-alive connections, each an asyncio Protocol
    (no streams, no per-request objects: a few µs of CPU per request, so the client takes little
    of the CPU the server needs). Status and Content-Length are read from the head; anything
    but 2xx counts as an error."""
    host, port = split_url(base_url)
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    head = f" HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
    if auth:
        head += f"Authorization: {auth}\r\n".encode()
    head += b"\r\n"
    get, pre, suf = b"GET ", prefix.encode(), suffix.encode()
    latencies: list[float] = []
    errors = 0
    perf = time.perf_counter
    deadline = perf() + duration
    finished: list[asyncio.Future[None]] = []

    class Conn(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = bytearray()
            self.t0 = 0.0
            self.done: asyncio.Future[None] = loop.create_future()
            finished.append(self.done)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.send()

        def send(self) -> None:
            if perf() >= deadline:
                self.transport.close()
                return
            self.t0 = perf()
            path = pre + str(rng.randint(1, ids)).encode() + suf
            self.transport.write(get + path + head)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            nonlocal errors
            buf = self.buf
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lowered = bytes(buf[: end + 2]).lower()  # every header line ends with CRLF
            at = lowered.find(b"content-length:")
            length = int(lowered[at + 15 : lowered.find(b"\r\n", at)]) if at >= 0 else 0
            if len(buf) < end + 4 + length:
                return
            latencies.append(perf() - self.t0)
            if not buf.startswith(b"HTTP/1.1 2"):
                errors += 1
            del buf[: end + 4 + length]
            self.send()

        def connection_lost(self, exc: Exception | None) -> None:
            nonlocal errors
            if perf() < deadline:
                errors += 1
            if not self.done.done():
                self.done.set_result(None)

    started = perf()
    for _ in range(concurrency):
        await loop.create_connection(Conn, host, port)
    await asyncio.wait_for(asyncio.gather(*finished), duration + 30)
    seconds = perf() - started
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


def _run_python_process(
    base_url: str,
    prefix: str,
    suffix: str,
    ids: int,
    concurrency: int,
    duration: float,
    auth: str | None,
    seed: int,
) -> LoadResult:
    """Run :func:`_run_python` in a process of its own (its own GIL, uvloop when installed)."""
    argv = [sys.executable, "-m", "benchmarks.loadgen", base_url, prefix, suffix]
    argv += [str(ids), str(concurrency), str(duration), str(seed)]
    proc = subprocess.run(
        argv,
        env={**os.environ, "BENCH_AUTH": auth or ""},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return LoadResult(**json.loads(proc.stdout.strip().splitlines()[-1]))


def _main() -> None:
    base_url, prefix, suffix, ids, concurrency, duration, seed = sys.argv[1:8]
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(
        _run_python(
            base_url,
            prefix,
            suffix,
            int(ids),
            int(concurrency),
            float(duration),
            os.environ.get("BENCH_AUTH") or None,
            int(seed),
        )
    )
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")


if __name__ == "__main__":
    _main()
