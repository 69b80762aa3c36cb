"""``GET /health``: unauthenticated liveness plus a database round-trip."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from freshtoken.api.deps import PublicRoute, RuntimeDep
from freshtoken.api.errors import DATABASE_UNAVAILABLE_MESSAGE, error_response, error_responses
from freshtoken.api.schemas import HealthOut
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.logs import get_logger

router = APIRouter(route_class=PublicRoute, tags=["health"])
log = get_logger("freshtoken.api")


@router.get("/health", response_model=HealthOut, responses=error_responses(503))
async def get_health(runtime: RuntimeDep) -> Response:
    """Report whether the API can reach its database (no authentication)."""
    try:
        # One autocommit round trip on the async engine: no BEGIN, so SQLite takes no write
        # lock, and no thread is held (slow refreshes elsewhere cannot starve it).
        await runtime.reader.ping()
    except Exception as exc:
        log.warning("api.health.database_unavailable", error=type(exc).__name__)
        return error_response(503, "database_unavailable", DATABASE_UNAVAILABLE_MESSAGE)
    return JSONBytesResponse({"status": "ok"})
