"""Connect sessions (Nango's ``/connect/sessions`` API): short-lived tokens for browsers.

``POST /connect/sessions`` and ``POST /connect/sessions/reconnect`` take the secret key;
``GET`` and ``DELETE /connect/session`` take the session token itself as the bearer.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from starlette.responses import Response

from freshtoken.api.deps import AuthedRoute, PublicRoute, RuntimeDep, strict_query
from freshtoken.api.errors import ApiError, error_responses, invalid_body
from freshtoken.api.schemas import (
    ConnectionIdStr,
    ProviderConfigKey,
    ShortText,
    StrictModel,
    WebhookUrl,
)
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.connect import sessions
from freshtoken.logs import get_logger
from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso
from freshtoken.store.models import ConnectSession

log = get_logger("freshtoken.connect")

router = APIRouter(route_class=AuthedRoute, tags=["connect"])
session_router = APIRouter(route_class=PublicRoute, tags=["connect"])

# Nango's tag rules (SH/services/tags/schema.ts): ≤ 10 tags, keys start with a letter.
_TAG_KEY_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_\-./]*$"
_TAG_KEY = re.compile(_TAG_KEY_PATTERN)
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=255)]


def _check_tags(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 10:
        raise ValueError("at most 10 tags")
    out: dict[str, str] = {}
    for key, tag in value.items():
        if len(key) > 64 or not _TAG_KEY.match(key):
            raise ValueError("tag keys start with a letter and have at most 64 characters")
        if not 1 <= len(tag) <= 255:
            raise ValueError("tag values have 1 to 255 characters")
        out[key.lower()] = tag
    return out


SessionTags = Annotated[
    dict[str, str],
    AfterValidator(_check_tags),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 10,
            "propertyNames": {"pattern": _TAG_KEY_PATTERN, "maxLength": 64},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ),
]


class SessionEndUser(StrictModel):
    """The end user a connect session creates connections for."""

    id: NonEmpty
    email: ShortText | None = None
    display_name: ShortText | None = None
    tags: SessionTags | None = None


class SessionOrganization(StrictModel):
    """The end user's organisation."""

    id: NonEmpty
    display_name: ShortText | None = None


class SessionConnectionConfig(StrictModel):
    """``integrations_config_defaults.<key>.connection_config``: values beat the browser's."""

    model_config = {"extra": "allow"}
    oauth_scopes_override: str | None = None


class IntegrationDefaults(StrictModel):
    """Per-integration defaults (Nango's ``integrations_config_defaults`` entry)."""

    user_scopes: str | None = None
    authorization_params: dict[str, str] | None = None
    connection_config: SessionConnectionConfig | None = None


class PostConnectSessionBody(StrictModel):
    """Body of ``POST /connect/sessions``."""

    end_user: SessionEndUser | None = None
    organization: SessionOrganization | None = None
    allowed_integrations: list[ProviderConfigKey] | None = Field(default=None, max_length=1000)
    integrations_config_defaults: dict[str, IntegrationDefaults] | None = None
    overrides: dict[str, Any] | None = None
    webhook_url_override: WebhookUrl | None = None
    tags: SessionTags | None = None

    # Documented so that a schema-valid body is never refused for it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["end_user"]}, {"required": ["tags"]}]},
    )

    @model_validator(mode="after")
    def _user_or_tags(self) -> PostConnectSessionBody:
        if not {"end_user", "tags"} & self.model_fields_set:
            raise ValueError("end_user is required unless tags are given")
        return self


class PostReconnectSessionBody(StrictModel):
    """Body of ``POST /connect/sessions/reconnect``: the session may re-authorise one connection."""

    connection_id: ConnectionIdStr
    integration_id: ProviderConfigKey
    end_user: SessionEndUser | None = None
    organization: SessionOrganization | None = None
    integrations_config_defaults: dict[str, IntegrationDefaults] | None = None
    overrides: dict[str, Any] | None = None
    webhook_url_override: WebhookUrl | None = None
    tags: SessionTags | None = None


def connect_link(runtime: Runtime, token: str) -> str:
    """The link a person opens to connect (freshtoken's minimal connect page)."""
    query = urllib.parse.urlencode({"session_token": token})
    return f"{runtime.settings.resolved_public_url}/connect?{query}"


def _created(runtime: Runtime, row: ConnectSession, token: str) -> Response:
    return JSONBytesResponse(
        {
            "data": {
                "token": token,
                "connect_link": connect_link(runtime, token),
                "expires_at": iso(row.expires_at),
            }
        },
        status_code=201,
    )


def _defaults(body: Any) -> dict[str, Any] | None:
    value = body.integrations_config_defaults
    if value is None:
        return None
    return {k: v.model_dump(exclude_none=True) for k, v in value.items()}


def _reject_overrides(body: Any) -> None:
    # Nango gates ``overrides`` (docs_connect) behind a paid plan; freshtoken has no Connect UI
    # to apply them to, so it says so instead of silently dropping them.
    if body.overrides:
        raise ApiError(403, "forbidden", "overrides are not supported by this server")


@router.post(
    "/connect/sessions",
    status_code=201,
    responses=error_responses(400, 401, 403, 500, 503),
    dependencies=[Depends(strict_query())],
)
def post_connect_session(body: PostConnectSessionBody, runtime: RuntimeDep) -> Response:
    """Create a connect session for an end user; its token is shown once."""
    _reject_overrides(body)
    now = runtime.clock.now()
    with runtime.store() as store:
        for key in body.allowed_integrations or ():
            if store.get_integration(key) is None:
                raise invalid_body(f"Integration does not exist: {key}", ["allowed_integrations"])
        sessions.purge_expired(store.session, now=now)
        row, token = sessions.create_session(
            store.session,
            sessions.SessionSpec(
                end_user=body.end_user.model_dump() if body.end_user else None,
                organization=body.organization.model_dump() if body.organization else None,
                allowed_integrations=list(body.allowed_integrations)
                if body.allowed_integrations
                else None,
                integrations_config_defaults=_defaults(body),
                tags=body.tags,
                webhook_url_override=body.webhook_url_override or None,
            ),
            now=now,
            ttl_seconds=runtime.settings.connect_session_ttl_seconds,
        )
    log.info("connect.session_created", reconnect=False)
    return _created(runtime, row, token)


@router.post(
    "/connect/sessions/reconnect",
    status_code=201,
    responses=error_responses(400, 401, 403, 500, 503),
    dependencies=[Depends(strict_query())],
)
def post_reconnect_session(body: PostReconnectSessionBody, runtime: RuntimeDep) -> Response:
    """Create a session bound to one existing connection (to re-authorise it)."""
    _reject_overrides(body)
    now = runtime.clock.now()
    with runtime.store() as store:
        conn = store.get_connection(body.integration_id, body.connection_id)
        if conn is None:
            raise invalid_body("ConnectionID or IntegrationId does not exist", ["connection_id"])
        end_user = body.end_user.model_dump() if body.end_user else None
        organization = body.organization.model_dump() if body.organization else None
        if end_user is None and conn.end_user:
            # Keep the connection's own end user, so the reconnect keeps its tags.
            stored = dict(conn.end_user)
            org = stored.pop("organization", None)
            end_user = {k: stored.get(k) for k in ("id", "email", "display_name", "tags")}
            organization = organization or (org if isinstance(org, dict) else None)
        row, token = sessions.create_session(
            store.session,
            sessions.SessionSpec(
                end_user=end_user,
                organization=organization,
                allowed_integrations=[body.integration_id],
                integrations_config_defaults=_defaults(body),
                tags=body.tags,
                webhook_url_override=body.webhook_url_override or None,
                connection_id=body.connection_id,
                provider_config_key=body.integration_id,
            ),
            now=now,
            ttl_seconds=runtime.settings.connect_session_ttl_seconds,
        )
    log.info("connect.session_created", reconnect=True)
    return _created(runtime, row, token)


def session_token_of(request: Request) -> str:
    """The connect session token from ``Authorization: Bearer``, or a 401."""
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if not header:
        raise ApiError(401, "missing_auth_header", "Missing Authorization header.")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "malformed_auth_header", "Malformed Authorization header.")
    return token.strip()


def require_session(runtime: Runtime, token: str | None, store_session: Any) -> ConnectSession:
    """The live connect session for a token, or a 401 (missing, unknown or expired)."""
    if not token:
        raise ApiError(401, "missing_connect_session_token", "A connect session token is required.")
    row = sessions.find_session(store_session, token, now=runtime.clock.now())
    if row is None:
        raise ApiError(
            401, "unknown_connect_session_token", "The connect session token is not valid."
        )
    return row


# Browser routes (a session token, not the secret key): left out of the OpenAPI document, which
# describes the secret-key API.
@session_router.get(
    "/connect/session", include_in_schema=False, dependencies=[Depends(strict_query())]
)
def get_connect_session(request: Request, runtime: RuntimeDep) -> Response:
    """What the connect session allows (Nango's shape, for a Connect UI)."""
    token = session_token_of(request)
    with runtime.store() as store:
        row = require_session(runtime, token, store.session)
        user = row.end_user or {}
        end_user: dict[str, Any] = {
            "id": user.get("id"),
            "email": user.get("email"),
            "display_name": user.get("display_name"),
            "tags": user.get("tags"),
        }
        if row.organization:
            end_user["organization"] = row.organization
        data = {
            "endUser": {k: v for k, v in end_user.items() if v is not None},
            "allowed_integrations": row.allowed_integrations,
            "integrations_config_defaults": row.integrations_config_defaults,
            "isReconnecting": row.connection_id is not None and row.provider_config_key is not None,
            "connectUISettings": {"showWatermark": False},
            "websocketsPath": "/",
        }
    return JSONBytesResponse({"data": {k: v for k, v in data.items() if v is not None}})


@session_router.delete(
    "/connect/session",
    status_code=204,
    include_in_schema=False,
    dependencies=[Depends(strict_query())],
)
def delete_connect_session(request: Request, runtime: RuntimeDep) -> Response:
    """End the session now; flows it started can no longer complete."""
    token = session_token_of(request)
    with runtime.store() as store:
        row = require_session(runtime, token, store.session)
        sessions.delete_session(store.session, row)
    return Response(status_code=204)
