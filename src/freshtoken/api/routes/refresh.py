"""Force one refresh of a connection and report the outcome (never the token).

``POST /connections/{connectionId}/refresh?provider_config_key=...`` is the HTTP twin of
``freshtoken refresh``: both call the refresh service with ``trigger="manual"``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from starlette.responses import Response

from freshtoken.api.deps import AuthedRoute, RuntimeDep
from freshtoken.api.errors import ApiError, error_responses
from freshtoken.api.read_gate import refused_manual
from freshtoken.api.schemas import CONNECTION_ID_PATTERN, ProviderConfigKeyQuery
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.refresh.policy import is_refreshable

router = APIRouter(route_class=AuthedRoute, tags=["connections"])


class RefreshOut(BaseModel):
    """The outcome of a forced refresh."""

    success: bool
    outcome: Literal["success", "skipped_fresh", "fenced", "lock_timeout"]
    log_id: str
    expires_at: str | None
    rotated_refresh_token: bool | None = None


@router.post(
    "/connections/{connectionId:path}/refresh",
    response_model=RefreshOut,
    responses=error_responses(400, 401, 404, 424, 429, 500, 503),
)
async def refresh_connection(
    connectionId: Annotated[str, Path(min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)],
    query: Annotated[ProviderConfigKeyQuery, Query()],
    runtime: RuntimeDep,
) -> Response:
    """Refresh a connection now, whatever its expiry, and report the outcome."""
    # Async like the read path: the lookup is one SELECT, the refresh is awaited (no thread).
    conn = await runtime.reader.fetch_for_read(query.provider_config_key, connectionId)
    if conn is None:
        if not await runtime.reader.integration_exists(query.provider_config_key):
            raise ApiError(400, "unknown_provider_config", "Provider does not exist")
        raise ApiError(404, "not_found", "Failed to find connection")
    # A forced refresh of credentials that cannot be refreshed (API_KEY, BASIC, OAUTH1, OAUTH2
    # without a refresh token) would reach the grant code, fail "permanently" and record it:
    # the connection would be marked needs_reauth and show an auth error to every reader,
    # although nothing is wrong with it. Refuse it before anything is written.
    if not is_refreshable(conn):
        raise ApiError(
            400,
            "not_refreshable",
            "This connection's credentials cannot be refreshed: only OAUTH2 credentials with "
            "a refresh token, OAUTH2_CC, APP, CUSTOM, JWT, TWO_STEP, BILL and SIGNATURE "
            "credentials can.",
        )
    pk = conn.id
    service = runtime.refresh_service
    if service is None:
        raise ApiError(503, "refresh_unavailable", "The refresh engine is not running.")
    result = await service.arefresh(pk, trigger="manual", force=True)
    shown = result.connection or conn
    if result.ok and result.connection is not None:
        return JSONBytesResponse(
            {
                "success": True,
                "outcome": result.outcome,
                "log_id": result.log_id,
                "expires_at": result.credentials.get("expires_at"),
            }
        )
    return refused_manual(result, shown)
