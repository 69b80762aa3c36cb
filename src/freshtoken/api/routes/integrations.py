"""Integrations (Nango's provider configs): list, create, read, update, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from freshtoken.api.deps import AuthedRoute, RuntimeDep, strict_query
from freshtoken.api.errors import ApiError, error_responses, invalid_body
from freshtoken.api.schemas import (
    PROVIDER_CONFIG_KEY_PATTERN,
    AppIntegrationCredentialsIn,
    CustomIntegrationCredentialsIn,
    GetIntegrationQuery,
    IntegrationCredentialsIn,
    IntegrationDataOut,
    IntegrationListOut,
    OAuthIntegrationCredentialsIn,
    PatchIntegrationBody,
    PostIntegrationBody,
    SuccessOut,
)
from freshtoken.api.serialize import JSONBytesResponse, integration
from freshtoken.providers.catalog import ProviderSpec
from freshtoken.store.models import Integration
from freshtoken.store.repository import KEEP, ConnectionStore, IntegrationClient

router = APIRouter(route_class=AuthedRoute, tags=["integrations"])

UniqueKeyPath = Annotated[
    str, Path(min_length=1, max_length=255, pattern=PROVIDER_CONFIG_KEY_PATTERN)
]
NOT_FOUND_MESSAGE = "Integration does not exist"
DUPLICATE_MESSAGE = "Unique key already exists"


def _check_credentials_type(
    credentials: IntegrationCredentialsIn | None, spec: ProviderSpec | None
) -> None:
    if credentials is not None and spec is not None and credentials.type != spec.auth_mode:
        raise invalid_body(
            f"credentials.type must be {spec.auth_mode} for provider {spec.name}",
            ["credentials", "type"],
        )


def _credentials_out(
    store: ConnectionStore, row: Integration, spec: ProviderSpec | None
) -> dict[str, Any]:
    mode = spec.auth_mode if spec is not None else None
    custom = store.custom(row) or {}
    app = {k: custom.get(k) for k in ("app_id", "app_link", "private_key")}
    if mode == "APP":
        return {"type": mode, **app}
    out: dict[str, Any] = {
        "type": mode,
        "client_id": row.client_id,
        "client_secret": store.client_secret(row),
        "scopes": row.scopes,
    }
    if mode == "CUSTOM":
        out.update(app)
    return out


def _client(creds: IntegrationCredentialsIn) -> IntegrationClient:
    """What the store keeps of an integration's credentials body (encrypted there)."""
    app = None
    if isinstance(creds, AppIntegrationCredentialsIn | CustomIntegrationCredentialsIn):
        app = {"app_id": creds.app_id, "app_link": creds.app_link, "private_key": creds.private_key}
    if isinstance(creds, AppIntegrationCredentialsIn):
        # Nango keeps the app id as the integration's client id for APP.
        return IntegrationClient(client_id=creds.app_id, client_secret=None, scopes=None, app=app)
    scopes = creds.scopes if isinstance(creds, OAuthIntegrationCredentialsIn) else None
    return IntegrationClient(
        client_id=creds.client_id, client_secret=creds.client_secret, scopes=scopes, app=app
    )


@router.get(
    "/integrations",
    response_model=IntegrationListOut,
    responses=error_responses(400, 401, 500, 503),
    dependencies=[Depends(strict_query())],
)
def list_integrations(runtime: RuntimeDep) -> Response:
    """List integrations (without credentials)."""
    with runtime.store() as store:
        rows = store.list_integrations()
    catalog = runtime.catalog
    return JSONBytesResponse({"data": [integration(r, catalog.get(r.provider)) for r in rows]})


@router.post(
    "/integrations",
    response_model=IntegrationDataOut,
    responses=error_responses(400, 401, 409, 413, 500, 503),
    dependencies=[Depends(strict_query())],
)
def create_integration(body: PostIntegrationBody, runtime: RuntimeDep) -> Response:
    """Create an integration for a provider of the catalog."""
    spec = runtime.catalog.get(body.provider)
    if spec is None:
        raise invalid_body("Invalid provider: not in the provider catalog", ["provider"])
    _check_credentials_type(body.credentials, spec)
    creds = body.credentials
    with runtime.store() as store:
        if store.get_integration(body.unique_key) is not None:
            raise invalid_body(DUPLICATE_MESSAGE, ["unique_key"])
        row = store.create_integration(
            unique_key=body.unique_key, provider=body.provider, display_name=body.display_name
        )
        if creds is not None:
            store.set_integration_client(row, _client(creds))
    return JSONBytesResponse({"data": integration(row, spec)})


@router.get(
    "/integrations/{uniqueKey}",
    response_model=IntegrationDataOut,
    responses=error_responses(400, 401, 404, 500, 503),
)
def get_integration(
    uniqueKey: UniqueKeyPath,
    query: Annotated[GetIntegrationQuery, Query()],
    runtime: RuntimeDep,
) -> Response:
    """Return an integration; ``include=credentials`` adds its OAuth client."""
    with runtime.store() as store:
        row = store.get_integration(uniqueKey)
        if row is None:
            raise ApiError(404, "not_found", NOT_FOUND_MESSAGE)
        spec = runtime.catalog.get(row.provider)
        credentials = _credentials_out(store, row, spec) if "credentials" in query.include else None
    return JSONBytesResponse(
        {
            "data": integration(
                row, spec, credentials=credentials, include_webhook="webhook" in query.include
            )
        }
    )


@router.patch(
    "/integrations/{uniqueKey}",
    response_model=IntegrationDataOut,
    responses=error_responses(400, 401, 404, 409, 413, 500, 503),
    dependencies=[Depends(strict_query())],
)
def patch_integration(
    uniqueKey: UniqueKeyPath,
    body: PatchIntegrationBody,
    runtime: RuntimeDep,
) -> Response:
    """Update an integration; renaming its key also re-keys its connections."""
    given = body.model_fields_set
    with runtime.store() as store:
        row = store.get_integration(uniqueKey)
        if row is None:
            raise ApiError(404, "not_found", NOT_FOUND_MESSAGE)
        spec = runtime.catalog.get(row.provider)
        _check_credentials_type(body.credentials, spec)
        new_key = body.unique_key
        if (
            new_key is not None
            and new_key != row.unique_key
            and store.get_integration(new_key) is not None
        ):
            raise invalid_body(DUPLICATE_MESSAGE, ["unique_key"])
        store.update_integration(
            row,
            unique_key=new_key,
            display_name=body.display_name if "display_name" in given else KEEP,
            client=_client(body.credentials) if body.credentials is not None else None,
        )
    return JSONBytesResponse({"data": integration(row, spec)})


@router.delete(
    "/integrations/{uniqueKey}",
    response_model=SuccessOut,
    responses=error_responses(400, 401, 404, 500, 503),
    dependencies=[Depends(strict_query())],
)
def delete_integration(
    uniqueKey: UniqueKeyPath,
    runtime: RuntimeDep,
) -> Response:
    """Delete an integration; its connections are deleted with it."""
    with runtime.store() as store:
        row = store.get_integration(uniqueKey)
        if row is None:
            raise ApiError(404, "not_found", NOT_FOUND_MESSAGE)
        store.delete_integration(row)
    return JSONBytesResponse({"success": True})
