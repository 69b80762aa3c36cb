"""The lean path for the hot read, ``GET /connection(s)/{id}``, in front of FastAPI.

FastAPI's and Starlette's per-request work (the middleware chain, route matching, dependency
solving, building and validating the query model) cost more CPU than the read itself.
:class:`HotReadMiddleware` answers *plain* reads before any of it runs: a GET without a body to
one of the two read paths, known query parameters each given once, ``true``/``false`` booleans,
a key and an id matching their documented patterns. Everything else, including every request
that would be a validation error, goes on to FastAPI's route unchanged, so OpenAPI, validation
errors and the error envelope come from FastAPI as before. Both paths authenticate with the same
function and end in the same read, :func:`freshtoken.api.routes.connections.read_connection`,
and an exception on the lean path is answered by the app's own exception handlers.

The middleware sits inside :class:`freshtoken.api.app.RequestContextMiddleware`, so a lean read
gets the same request id, ``api.request`` line and last-resort 500 as any other request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from freshtoken.api.deps import authorize
from freshtoken.api.schemas import CONNECTION_ID_PATTERN, PROVIDER_CONFIG_KEY_PATTERN
from freshtoken.runtime import Runtime

_BOOLEANS = {"true": True, "false": False}
_QUERY_KEYS = frozenset(
    {"provider_config_key", "refresh_token", "force_refresh", "refresh_github_app_jwt_token"}
)
_KEY = re.compile(PROVIDER_CONFIG_KEY_PATTERN)
_ID = re.compile(CONNECTION_ID_PATTERN)
# The two read templates and the path prefix each matches (see api.routes.connections).
READ_TEMPLATES = {
    "/connections/{connectionId}": "/connections/",
    "/connection/{connectionId}": "/connection/",
}
# Headers that announce a body: such a request takes FastAPI's route (and its body limit).
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})

# (runtime, connection id, provider config key, force refresh, include refresh token, fresh
# GitHub App JWT) -> response
ReadHandler = Callable[[Runtime, str, str, bool, bool, bool], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def plain_read(
    connection_id: str, query: list[tuple[str, str]]
) -> tuple[str, str, bool, bool, bool] | None:
    """(id, key, force_refresh, refresh_token, refresh_github_app_jwt_token) when the inputs need
    no validator, else None."""
    params = dict(query)
    if len(params) != len(query) or not params.keys() <= _QUERY_KEYS:
        return None
    key = params.get("provider_config_key")
    if key is None:
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


def read_route_for(path: str, routes: Mapping[str, APIRoute]) -> tuple[APIRoute, str] | None:
    """The read route a GET of ``path`` reaches, and the connection id in it, or None.

    Mirrors Starlette's matching for these paths: no other GET route starts with either prefix
    (``/connections`` alone is the list), and ``/connection/{id}`` never matches an id ending in
    ``/metadata`` (its convertor), whose GET is a 405 FastAPI answers.
    """
    for template, prefix in READ_TEMPLATES.items():
        if path.startswith(prefix):
            connection_id = path[len(prefix) :]
            if template == "/connection/{connectionId}" and connection_id.endswith("/metadata"):
                return None
            route = routes.get(template)
            return None if route is None else (route, connection_id)
    return None


def lookup_handler(
    handlers: Mapping[Any, Callable[..., Any]], exc: Exception
) -> tuple[ExceptionHandler, type] | None:
    """The app's handler for ``exc`` and the class it is registered for: the nearest class in
    the exception's MRO, as Starlette looks it up."""
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return handler, cls
    return None


class HotReadMiddleware:
    """Answer plain ``GET /connection(s)/{id}`` reads without FastAPI's per-request machinery.

    ``routes`` maps the read templates to their FastAPI routes (logged as the request's route);
    ``exception_handlers`` are the app's, applied as Starlette's exception middlewares would.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        read: ReadHandler,
        routes: Mapping[str, APIRoute],
        exception_handlers: Mapping[Any, Callable[..., Any]],
        max_header_bytes: int,
    ) -> None:
        self.app = app
        self.read = read
        self.routes = routes
        self.exception_handlers = exception_handlers
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a plain read here; pass anything else on to the app."""
        lean = self._plain(scope) if scope["type"] == "http" else None
        if lean is None:
            await self.app(scope, receive, send)
            return
        route, args = lean
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {"connectionId": args[0]}
        request = Request(scope, receive)
        try:
            # As AuthedRoute does, before anything else is looked at: the key, then its scope.
            await authorize(request, route.path_format)
            runtime: Runtime = scope["app"].state.runtime
            response = await self.read(runtime, *args)
        except Exception as exc:
            found = lookup_handler(self.exception_handlers, exc)
            if found is None or found[1] is Exception:
                # Unexpected: as on FastAPI's route, where the catch-all belongs to Starlette's
                # outermost ServerErrorMiddleware, the request-context middleware in between
                # logs it once and answers the generic 500.
                raise
            response = await found[0](request, exc)
        await response(scope, receive, send)

    def _plain(self, scope: Scope) -> tuple[APIRoute, tuple[str, str, bool, bool, bool]] | None:
        if scope["method"] != "GET" or scope.get("root_path"):
            return None
        found = read_route_for(scope["path"], self.routes)
        if found is None:
            return None
        size = 0
        for name, value in scope["headers"]:
            if name in _BODY_HEADERS:
                return None
            size += len(name) + len(value) + 4
        if size > self.max_header_bytes:
            return None  # HeaderLimitMiddleware answers 431
        route, connection_id = found
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        plain = plain_read(connection_id, query)
        return None if plain is None else (route, plain)
