"""Connections: read with credentials (the hot path), list, import, patch and delete.

Both Nango spellings are served: ``/connections/...`` and the deprecated ``/connection/...``.
The path parameter uses Starlette's ``path`` convertor (``connection_id`` for the singular
routes, see :class:`~freshtoken.api.deps.ConnectionIdConvertor`) so that ids containing ``/``
(sent as ``%2F``, which servers decode before routing) still reach the handler, as in Nango.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from freshtoken.api.authmode_import import (
    MINTED_ON_IMPORT,
    authmode_credentials,
    import_connection_config,
    mint_on_import,
)
from freshtoken.api.deps import AuthedRoute, RuntimeDep, strict_query, tag_filters
from freshtoken.api.errors import ApiError, error_response, error_responses, invalid_body
from freshtoken.api.schemas import (
    CONNECTION_ID_PATTERN,
    ApiKeyCredentialsIn,
    BasicCredentialsIn,
    ConnectionFullOut,
    ConnectionListOut,
    CredentialsIn,
    GetConnectionQuery,
    OAuth1CredentialsIn,
    OAuth2ClientCredentialsIn,
    OAuth2CredentialsIn,
    PatchConnectionBody,
    PostConnectionBody,
    ProviderConfigKeyQuery,
    SuccessOut,
)
from freshtoken.api.serialize import (
    JSONBytesResponse,
    connection_denied,
    connection_full,
    connection_list_item,
)
from freshtoken.refresh.authmodes.read import APP_TYPES, with_fresh_app_jwt
from freshtoken.refresh.seam import ReadRefresher, RefreshDenied
from freshtoken.runtime import Runtime
from freshtoken.store.asyncread import decrypt_credentials
from freshtoken.store.connection_list import ListQuery, list_connection_rows
from freshtoken.store.models import Connection

router = APIRouter(route_class=AuthedRoute, tags=["connections"])

ConnectionIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)]

UNKNOWN_CONNECTION_MESSAGE = (
    "No connection matching the provided params of 'connection_id' and 'provider_config_key'."
)
LIST_PARAMS = (
    "connectionId",
    "search",
    "integrationId",
    "endUserId",
    "endUserOrganizationId",
    "limit",
    "page",
)
_TAGS_PARAMETER = {
    "name": "tags",
    "in": "query",
    "required": False,
    "style": "deepObject",
    "explode": True,
    "description": (
        "Filter on tags: tags[key]=value (keys are compared lower-cased; no brackets in a key)."
    ),
    "schema": {
        "type": "object",
        # No brackets: on the wire a key with one is a nested deepObject (tags[a][b]=v).
        "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": "^[^\\[\\]]*$"},
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 255},
    },
}


# -- GET one ------------------------------------------------------------------------------------


async def read_connection(
    runtime: Runtime,
    connection_id: str,
    provider_config_key: str,
    force_refresh: bool,
    include_refresh_token: bool,
    refresh_app_jwt: bool = False,
) -> Response:
    """The read itself, shared by FastAPI's handler and the lean one (:mod:`..fastread`)."""
    # Async end to end: one indexed SELECT on the async path (autocommit, no ORM session),
    # no write (last_fetched_at is stamped behind the read by FetchStamps), and a refresh, if
    # one is needed, is awaited without holding a thread.
    conn = await runtime.reader.fetch_for_read(provider_config_key, connection_id)
    if conn is None:
        if not await runtime.reader.integration_exists(provider_config_key):
            raise ApiError(400, "unknown_provider_config", "Provider does not exist")
        raise ApiError(404, "not_found", "Failed to find connection")
    now = runtime.clock.now()
    conn.last_fetched_at = now  # detached row: changes the response, not the database
    runtime.fetch_stamps.record(conn.id, now)
    credentials = decrypt_credentials(runtime.cipher, conn)
    try:
        conn, credentials = await _refresh_for_read(
            runtime.refresher, conn, credentials, force_refresh
        )
    except RefreshDenied as exc:
        shown = exc.connection if exc.connection is not None else conn
        return error_response(
            exc.http_status,
            exc.code,
            exc.message,
            payload={"connection": connection_denied(shown, exc.log_id)},
        )
    if refresh_app_jwt and conn.credentials_type in APP_TYPES:
        # Signs locally after a database read: a worker thread, off the event loop.
        credentials = await run_in_threadpool(with_fresh_app_jwt, runtime, conn, credentials)
    return JSONBytesResponse(
        connection_full(conn, credentials, include_refresh_token=include_refresh_token)
    )


async def get_connection(
    connectionId: ConnectionIdPath,
    query: Annotated[GetConnectionQuery, Query()],
    runtime: RuntimeDep,
) -> Response:
    """Return a connection and its credentials, refreshing them first when they are due."""
    return await read_connection(
        runtime,
        connectionId,
        query.provider_config_key,
        query.force_refresh,
        query.refresh_token,
        query.refresh_github_app_jwt_token,
    )


# Plain reads of these two routes are answered in front of FastAPI by the lean path
# (freshtoken.api.fastread.HotReadMiddleware), which ends in read_connection too.
router.add_api_route(
    "/connection/{connectionId:connection_id}",
    get_connection,
    methods=["GET"],
    response_model=ConnectionFullOut,
    responses=error_responses(400, 401, 404, 424, 429, 500, 503),
    deprecated=True,
)
router.add_api_route(
    "/connections/{connectionId:path}",
    get_connection,
    methods=["GET"],
    response_model=ConnectionFullOut,
    responses=error_responses(400, 401, 404, 424, 429, 500, 503),
)


async def _refresh_for_read(
    refresher: ReadRefresher, conn: Connection, credentials: dict[str, Any], force: bool
) -> tuple[Connection, dict[str, Any]]:
    """Await the refresher's async seam; a sync-only refresher (a plugin, a fake) gets a thread."""
    seam = getattr(refresher, "arefresh_for_read", None)
    if seam is not None:
        result: tuple[Connection, dict[str, Any]] = await seam(conn, credentials, force=force)
        return result
    return await run_in_threadpool(refresher.refresh_for_read, conn, credentials, force=force)


# -- list ---------------------------------------------------------------------------------------


@router.get(
    "/connections",
    response_model=ConnectionListOut,
    responses=error_responses(400, 401, 500, 503),
    dependencies=[Depends(strict_query(*LIST_PARAMS, tags=True))],
    openapi_extra={"parameters": [_TAGS_PARAMETER]},
)
@router.get(
    "/connection",
    response_model=ConnectionListOut,
    responses=error_responses(400, 401, 500, 503),
    dependencies=[Depends(strict_query(*LIST_PARAMS, tags=True))],
    openapi_extra={"parameters": [_TAGS_PARAMETER]},
    deprecated=True,
)
def list_connections(
    request: Request,
    runtime: RuntimeDep,
    connectionId: Annotated[str | None, Query(max_length=255)] = None,
    search: Annotated[str | None, Query(max_length=255)] = None,
    integrationId: Annotated[str | None, Query(max_length=8192)] = None,
    endUserId: Annotated[str | None, Query(max_length=255)] = None,
    endUserOrganizationId: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int | None, Query(ge=1, le=2000)] = None,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """List connections (without credentials), newest first."""
    integration_ids = tuple(p.strip() for p in (integrationId or "").split(",") if p.strip())
    # Every filter and the page run in SQL (store/connection_list.py): one indexed query that
    # reads only the list's columns, however many connections there are.
    query = ListQuery(
        connection_id=connectionId or None,
        search=search or None,
        integration_ids=integration_ids,
        end_user_id=endUserId or None,
        organization_id=endUserOrganizationId or None,
        tags=tag_filters(request),
        limit=limit if limit is not None else 10_000,  # Nango's default
        page=page,
    )
    with runtime.store() as store:
        rows = list_connection_rows(store.session, query)
    return JSONBytesResponse({"connections": [connection_list_item(r) for r in rows]})


# -- import -------------------------------------------------------------------------------------


def stored_credentials(creds: CredentialsIn) -> dict[str, Any]:
    """The credentials dict as stored (``expires_at`` already ISO); ``raw`` built if absent."""
    if isinstance(creds, OAuth2CredentialsIn):
        token = _present(
            access_token=creds.access_token,
            refresh_token=creds.refresh_token,
            expires_at=creds.expires_at,
        )
        out: dict[str, Any] = {
            "type": "OAUTH2",
            **token,
            "raw": creds.raw if creds.raw is not None else dict(token),
        }
        if creds.config_override is not None:
            out["config_override"] = creds.config_override.model_dump(exclude_none=True)
        return out
    if isinstance(creds, OAuth2ClientCredentialsIn):
        return {
            "type": "OAUTH2_CC",
            **_present(token=creds.token, expires_at=creds.expires_at),
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            **_present(
                client_certificate=creds.client_certificate,
                client_private_key=creds.client_private_key,
            ),
            "raw": (
                creds.raw
                if creds.raw is not None
                else _present(access_token=creds.token, expires_at=creds.expires_at)
            ),
        }
    if isinstance(creds, OAuth1CredentialsIn):
        token = {"oauth_token": creds.oauth_token, "oauth_token_secret": creds.oauth_token_secret}
        return {"type": "OAUTH1", **token, "raw": dict(token)}
    if isinstance(creds, ApiKeyCredentialsIn):
        return {"type": "API_KEY", "apiKey": creds.apiKey}
    if isinstance(creds, BasicCredentialsIn):
        return {"type": "BASIC", "username": creds.username, "password": creds.password}
    return authmode_credentials(creds)


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@router.post(
    "/connections",
    status_code=201,
    response_model=ConnectionFullOut,
    responses=error_responses(400, 401, 404, 409, 413, 500, 503),
    dependencies=[Depends(strict_query())],
)
@router.post(
    "/connection",
    status_code=201,
    response_model=ConnectionFullOut,
    responses=error_responses(400, 401, 404, 409, 413, 500, 503),
    dependencies=[Depends(strict_query())],
    deprecated=True,
)
def post_connection(body: PostConnectionBody, runtime: RuntimeDep) -> Response:
    """Import a connection, or override the live one with the same id."""
    with runtime.store() as store:
        integration = store.get_integration(body.provider_config_key)
        if integration is None:
            raise ApiError(404, "not_found", "Integration does not exist")
        spec = runtime.catalog.get(integration.provider)
        if spec is not None and body.credentials.type != spec.auth_mode:
            raise invalid_body(
                f"credentials.type must be {spec.auth_mode} for provider {integration.provider}",
                ["credentials", "type"],
            )
        credentials = stored_credentials(body.credentials)
        connection_config = import_connection_config(body.credentials, body.connection_config)
        conn, _created = store.upsert_connection(
            integration,
            connection_id=body.connection_id or str(uuid.uuid4()),
            credentials=credentials,
            connection_config=connection_config,
            metadata=body.metadata,
            tags=dict(body.tags) if body.tags is not None else None,
            end_user=body.end_user.model_dump() if body.end_user is not None else None,
        )
        if body.webhook_url_override is not None:
            conn.webhook_url_override = body.webhook_url_override or None
        store.session.flush()
    if body.credentials.type in MINTED_ON_IMPORT:
        # Nango mints a GitHub App installation token on import; here through the refresh core.
        conn, credentials = mint_on_import(runtime, conn)
    return JSONBytesResponse(
        connection_full(conn, credentials, include_refresh_token=False), status_code=201
    )


# -- patch and delete ---------------------------------------------------------------------------


@router.patch(
    "/connections/{connectionId:path}",
    response_model=SuccessOut,
    responses=error_responses(400, 401, 404, 413, 500, 503),
)
def patch_connection(
    connectionId: ConnectionIdPath,
    query: Annotated[ProviderConfigKeyQuery, Query()],
    body: PatchConnectionBody,
    runtime: RuntimeDep,
) -> Response:
    """Update a connection's end user, tags or webhook URL override ("" clears it)."""
    given = body.model_fields_set
    with runtime.store() as store:
        conn = store.get_connection(query.provider_config_key, connectionId)
        if conn is None:
            raise ApiError(404, "unknown_connection", UNKNOWN_CONNECTION_MESSAGE)
        if "end_user" in given:
            conn.end_user = body.end_user.model_dump() if body.end_user is not None else None
        if "tags" in given:
            conn.tags = dict(body.tags) if body.tags is not None else {}
        if "webhook_url_override" in given:
            conn.webhook_url_override = body.webhook_url_override or None
        conn.updated_at = runtime.clock.now()
    return JSONBytesResponse({"success": True})


@router.delete(
    "/connections/{connectionId:path}",
    response_model=SuccessOut,
    responses=error_responses(400, 401, 404, 500, 503),
)
@router.delete(
    "/connection/{connectionId:connection_id}",
    response_model=SuccessOut,
    responses=error_responses(400, 401, 404, 500, 503),
    deprecated=True,
)
def delete_connection(
    connectionId: ConnectionIdPath,
    query: Annotated[ProviderConfigKeyQuery, Query()],
    runtime: RuntimeDep,
) -> Response:
    """Delete a connection (soft delete; its credentials are wiped)."""
    with runtime.store() as store:
        conn = store.get_connection(query.provider_config_key, connectionId)
        if conn is None:
            raise ApiError(404, "unknown_connection", UNKNOWN_CONNECTION_MESSAGE)
        store.soft_delete(conn)
    return JSONBytesResponse({"success": True})
