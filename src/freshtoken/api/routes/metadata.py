"""Connection metadata: replace (POST) or shallow-merge (PATCH), for one or many connections.

Every id is checked before anything is written, in one transaction: one unknown id means a 404
and no connection changed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query
from starlette.responses import Response

from freshtoken.api.deps import AuthedRoute, RuntimeDep, strict_query
from freshtoken.api.errors import ApiError, error_responses
from freshtoken.api.schemas import (
    CONNECTION_ID_PATTERN,
    PROVIDER_CONFIG_KEY_PATTERN,
    MetadataBody,
    MetadataEchoOut,
)
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection

router = APIRouter(route_class=AuthedRoute, tags=["metadata"])

_PROVIDER_CONFIG_KEY = re.compile(PROVIDER_CONFIG_KEY_PATTERN)


def _missing_message(connection_id: str, provider_config_key: str, many: bool) -> str:
    message = (
        f"Connection with connection id {connection_id} and provider config key "
        f"{provider_config_key} not found. Please make sure the connection exists."
    )
    if many:
        message += " No actions were taken on any of the connections as a result of this failure."
    return message


def apply_metadata(
    runtime: Runtime,
    provider_config_key: str,
    connection_ids: list[str],
    metadata: dict[str, Any],
    *,
    merge: bool,
) -> None:
    """Replace or merge ``metadata`` on every connection, or on none if one is missing."""
    ids = list(dict.fromkeys(connection_ids))  # de-duplicated, order kept
    with runtime.store() as store:
        rows: list[Connection] = []
        for connection_id in ids:
            conn = store.get_connection(provider_config_key, connection_id)
            if conn is None:
                raise ApiError(
                    404,
                    "unknown_connection",
                    _missing_message(connection_id, provider_config_key, len(ids) > 1),
                )
            rows.append(conn)
        store.set_metadata(rows, metadata, merge=merge)


def _ids(body: MetadataBody) -> list[str]:
    return [body.connection_id] if isinstance(body.connection_id, str) else body.connection_id


_RESPONSES = error_responses(400, 401, 404, 413, 500, 503)
# Nango's metadata controllers call requireEmptyQuery: any query parameter is a 400. Without
# this, ``POST /connections/metadata?anything=1`` was accepted and the parameter ignored.
_EMPTY_QUERY = [Depends(strict_query())]


@router.post(
    "/connections/metadata",
    status_code=201,
    response_model=MetadataEchoOut,
    responses=_RESPONSES,
    dependencies=_EMPTY_QUERY,
)
@router.post(
    "/connection/metadata",
    status_code=201,
    response_model=MetadataEchoOut,
    responses=_RESPONSES,
    dependencies=_EMPTY_QUERY,
    deprecated=True,
)
def set_metadata(body: MetadataBody, runtime: RuntimeDep) -> Response:
    """Replace the metadata of one or more connections."""
    apply_metadata(runtime, body.provider_config_key, _ids(body), body.metadata, merge=False)
    return JSONBytesResponse(body.model_dump(mode="json"), status_code=201)


@router.patch(
    "/connections/metadata",
    response_model=MetadataEchoOut,
    responses=_RESPONSES,
    dependencies=_EMPTY_QUERY,
)
@router.patch(
    "/connection/metadata",
    response_model=MetadataEchoOut,
    responses=_RESPONSES,
    dependencies=_EMPTY_QUERY,
    deprecated=True,
)
def update_metadata(body: MetadataBody, runtime: RuntimeDep) -> Response:
    """Merge keys into the metadata of one or more connections (shallow)."""
    apply_metadata(runtime, body.provider_config_key, _ids(body), body.metadata, merge=True)
    return JSONBytesResponse(body.model_dump(mode="json"))


# -- legacy: /connection/{connectionId}/metadata ------------------------------------------------
#
# The body is the metadata object itself. provider_config_key comes from the query or, for old
# SDKs, the Provider-Config-Key header (kept out of the OpenAPI document: the query is the
# documented way). Nango also reads a Connection-Id header, but only when the path id is empty,
# which its router never matches, so the path id is simply required here.

LegacyConnectionId = Annotated[
    str, Path(min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)
]
LegacyQueryKey = Annotated[str | None, Query(max_length=255, pattern=PROVIDER_CONFIG_KEY_PATTERN)]
LegacyHeaderKey = Annotated[
    str | None, Header(alias="Provider-Config-Key", include_in_schema=False)
]
LegacyBody = Annotated[dict[str, Any], Body()]
# Documented as required (the header alternative is not documented).
_LEGACY_EXTRA = {"x-required-query": ["provider_config_key"]}


def _legacy_key(query_key: str | None, header_key: str | None) -> str:
    """provider_config_key from the query, else from the legacy header."""
    if query_key:
        return query_key
    if not header_key:
        raise ApiError(400, "missing_provider_config", "Missing param 'provider_config_key'.")
    if len(header_key) > 255 or not _PROVIDER_CONFIG_KEY.match(header_key):
        raise ApiError(
            400,
            "invalid_headers",
            "Invalid headers.",
            errors=[
                {
                    "code": "string_pattern_mismatch",
                    "message": "Invalid provider config key",
                    "path": ["Provider-Config-Key"],
                }
            ],
        )
    return header_key


@router.post(
    "/connection/{connectionId:path}/metadata",
    status_code=201,
    response_model=dict[str, Any],
    responses=_RESPONSES,
    deprecated=True,
    openapi_extra=_LEGACY_EXTRA,
)
def legacy_set_metadata(
    connectionId: LegacyConnectionId,
    body: LegacyBody,
    runtime: RuntimeDep,
    provider_config_key: LegacyQueryKey = None,
    provider_config_key_header: LegacyHeaderKey = None,
) -> Response:
    """Replace one connection's metadata (the body is the metadata object)."""
    key = _legacy_key(provider_config_key, provider_config_key_header)
    apply_metadata(runtime, key, [connectionId], body, merge=False)
    return JSONBytesResponse(body, status_code=201)


@router.patch(
    "/connection/{connectionId:path}/metadata",
    response_model=dict[str, Any],
    responses=_RESPONSES,
    deprecated=True,
    openapi_extra=_LEGACY_EXTRA,
)
def legacy_update_metadata(
    connectionId: LegacyConnectionId,
    body: LegacyBody,
    runtime: RuntimeDep,
    provider_config_key: LegacyQueryKey = None,
    provider_config_key_header: LegacyHeaderKey = None,
) -> Response:
    """Merge keys into one connection's metadata (the body is the metadata object)."""
    key = _legacy_key(provider_config_key, provider_config_key_header)
    apply_metadata(runtime, key, [connectionId], body, merge=True)
    return JSONBytesResponse(body)
