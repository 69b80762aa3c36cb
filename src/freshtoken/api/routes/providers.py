"""The provider catalog, read-only: ``GET /providers`` and ``GET /providers/{provider}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from freshtoken.api.deps import AuthedRoute, RuntimeDep, strict_query
from freshtoken.api.errors import ApiError, error_responses
from freshtoken.api.schemas import ProviderDataOut, ProviderListOut
from freshtoken.api.serialize import JSONBytesResponse

router = APIRouter(route_class=AuthedRoute, tags=["providers"])


@router.get(
    "/providers",
    response_model=ProviderListOut,
    responses=error_responses(400, 401, 500),
    dependencies=[Depends(strict_query("search"))],
)
def list_providers(
    runtime: RuntimeDep,
    search: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """List the providers of the catalog (``search`` filters on name and display name)."""
    specs = runtime.catalog.all()
    if search:
        needle = search.lower()
        specs = [s for s in specs if needle in s.name.lower() or needle in s.display_name.lower()]
    return JSONBytesResponse({"data": [spec.to_public() for spec in specs]})


@router.get(
    "/providers/{provider}",
    response_model=ProviderDataOut,
    responses=error_responses(400, 401, 404, 500),
    dependencies=[Depends(strict_query())],
)
def get_provider(
    provider: Annotated[str, Path(min_length=1, max_length=255)],
    runtime: RuntimeDep,
) -> Response:
    """Return one provider of the catalog."""
    spec = runtime.catalog.get(provider)
    if spec is None:
        raise ApiError(404, "not_found", "Provider does not exist")
    return JSONBytesResponse({"data": spec.to_public()})
