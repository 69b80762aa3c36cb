# ruff: noqa: S603, S607 - starts local tools and freshtoken processes with fixed argv
"""What the benchmarks ran on: CPU, cores, memory, Python, PostgreSQL, Redis, package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks.common import PG_BASE_URL, REPO_ROOT

PACKAGES = (
    "freshtoken",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "psycopg",
    "asyncpg",
    "aiosqlite",
    "httpx",
    "celery",
    "kombu",
    "redis",
    "orjson",
    "structlog",
    "cryptography",
    "pydantic",
)
PG_SETTINGS = ("shared_buffers", "synchronous_commit", "fsync", "max_connections", "work_mem")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        return None
    return None


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load averages."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def _git() -> dict[str, Any]:
    # Read-only: rev-parse, and status without taking optional locks (no index refresh write).
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head or None, "dirty": bool(dirty)}


def describe(
    pg_url: str = PG_BASE_URL, redis_url: str | None = None, wrk: str | None = None
) -> dict[str, Any]:
    """Everything the report's "Machine" section shows."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {},
        "git": _git(),
    }
    for name in PACKAGES:
        try:
            info["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info["packages"][name] = None
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            info["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
            info["postgresql_settings"] = {
                name: conn.execute(text(f"SHOW {name}")).scalar_one() for name in PG_SETTINGS
            }
    finally:
        engine.dispose()
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            info["redis"] = client.info("server").get("redis_version")
        finally:
            client.close()
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        info["load_generator"] = (out.stdout or out.stderr).splitlines()[0].strip()
    else:
        info["load_generator"] = "python asyncio client (benchmarks/loadgen.py)"
    return info
