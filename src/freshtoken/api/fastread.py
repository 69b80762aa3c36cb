"""A lean handler for the hot path, ``GET /connection(s)/{id}``, behind the same FastAPI route.

FastAPI's per-request work (dependency solving, building and validating the query model) was
the largest CPU cost of a read after the database itself. :func:`fast_read_route` keeps the route
exactly as declared (OpenAPI, validation errors and the error envelope come from FastAPI as
before) and only short-cuts requests whose inputs are unambiguously valid: known query parameters
each given once, ``true``/``false`` booleans, a key and an id matching their documented
patterns. Everything else, including every request that would be a validation error, goes
through FastAPI's own handler. Both paths end in the same function,
:func:`freshtoken.api.routes.connections.read_connection`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from freshtoken.api.deps import AuthedRoute, authorize
from freshtoken.api.schemas import CONNECTION_ID_PATTERN, PROVIDER_CONFIG_KEY_PATTERN
from freshtoken.runtime import Runtime

_BOOLEANS = {"true": True, "false": False}
_QUERY_KEYS = frozenset(
    {"provider_config_key", "refresh_token", "force_refresh", "refresh_github_app_jwt_token"}
)
_KEY = re.compile(PROVIDER_CONFIG_KEY_PATTERN)
_ID = re.compile(CONNECTION_ID_PATTERN)

# (runtime, connection id, provider config key, force refresh, include refresh token, fresh
# GitHub App JWT) -> response
ReadHandler = Callable[[Runtime, str, str, bool, bool, bool], Awaitable[Response]]


def plain_read(request: Request) -> tuple[str, str, bool, bool, bool] | None:
    """(id, key, force_refresh, refresh_token, refresh_github_app_jwt_token) when the inputs need
    no validator."""
    items = request.query_params.multi_items()
    params = dict(items)
    if len(params) != len(items) or not params.keys() <= _QUERY_KEYS:
        return None
    key = params.get("provider_config_key")
    connection_id = request.path_params.get("connectionId")
    if key is None or not isinstance(connection_id, str):
        return None
    if not (len(key) <= 255 and _KEY.fullmatch(key)):
        return None
    if not (len(connection_id) <= 255 and _ID.fullmatch(connection_id)):
        return None
    flags = []
    for name in ("force_refresh", "refresh_token", "refresh_github_app_jwt_token"):
        value = _BOOLEANS.get(params.get(name, "false"))
        if value is None:
            return None
        flags.append(value)
    return connection_id, key, flags[0], flags[1], flags[2]


def fast_read_route(read: ReadHandler) -> type[AuthedRoute]:
    """An authenticated route class whose plain requests skip FastAPI's parameter machinery."""

    class FastReadRoute(AuthedRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            """FastAPI's handler, preceded by the short cut for plain requests."""
            full = super().get_route_handler()
            path_format = self.path_format

            async def route_handler(request: Request) -> Response:
                plain = plain_read(request)
                if plain is None:
                    return await full(request)
                # As AuthedRoute does, before anything else is looked at: the key, then its
                # scope (a read key may read; the check is the same function, not a copy).
                await authorize(request, path_format)
                runtime: Runtime = request.app.state.runtime
                return await read(runtime, *plain)

            return route_handler

    return FastReadRoute
