"""Request plumbing shared by every route: the runtime, authentication and JSON parsing.

Authentication runs in :class:`AuthedRoute`'s handler wrapper, before FastAPI reads the body or
validates parameters, so an unauthenticated caller learns nothing about a route's inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response

from freshtoken.api.errors import ApiError, error_responses, invalid_query
from freshtoken.apikeys import KeyRing, allows, required_scope
from freshtoken.runtime import Runtime

MAX_JSON_DEPTH = 64
BEARER_SCHEME = "bearerAuth"
# Query parameters declared as arrays; any other parameter given twice is rejected, as Nango's
# zod schemas reject the array Express makes of a repeated key.
REPEATABLE_QUERY = frozenset({"include"})

MISSING_AUTH_MESSAGE = "Authentication failed. The request is missing the Authorization header."
MALFORMED_AUTH_MESSAGE = (
    "Authentication failed. The provided Authorization header is malformed; "
    "expected 'Bearer <secret key>'."
)
UNKNOWN_KEY_MESSAGE = "Authentication failed. The provided secret key is not valid."
SCOPE_MESSAGE = "This API key's scope does not allow this request."


async def get_runtime(request: Request) -> Runtime:
    """The process runtime (async so it does not cost a threadpool hop)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def key_digest(key: str) -> bytes:
    """SHA-256 of a key: comparing digests is constant-time whatever the key's length."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


async def authenticate(request: Request) -> str:
    """Check ``Authorization: Bearer <key>``; return the key's scope or raise a 401 ApiError.

    The settings secret key is ``admin``; scoped keys come from :class:`freshtoken.apikeys.KeyRing`
    (its table is reloaded off the event loop when stale).
    """
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": "Bearer"}
    if not header:
        raise ApiError(401, "missing_auth_header", MISSING_AUTH_MESSAGE, headers=challenge)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise ApiError(401, "malformed_auth_header", MALFORMED_AUTH_MESSAGE, headers=challenge)
    ring: KeyRing | None = getattr(request.app.state, "key_ring", None)
    if ring is None:  # an app built without scoped keys: the settings key only
        expected: bytes = request.app.state.secret_key_digest
        if not hmac.compare_digest(key_digest(token), expected):
            raise ApiError(401, "unknown_account", UNKNOWN_KEY_MESSAGE, headers=challenge)
        return "admin"
    if ring.needs_reload() and not ring.is_settings_key(token):
        await run_in_threadpool(ring.reload)
    scope = ring.scope_of(token)
    if scope is None:
        raise ApiError(401, "unknown_account", UNKNOWN_KEY_MESSAGE, headers=challenge)
    return scope


async def authorize(request: Request, path_format: str) -> None:
    """Authenticate, then 403 ``forbidden`` if the key's scope is below what the route needs."""
    granted = await authenticate(request)
    # Every value of a repeated parameter counts (include=x&include=credentials).
    query = {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}
    needed = required_scope(request.method, path_format, query)
    if not allows(granted, needed):
        raise ApiError(403, "forbidden", SCOPE_MESSAGE)


def _json_problem(value: Any, limit: int) -> str | None:
    """Why a parsed body is refused (too deep, or a string holding NUL), else None.

    Iterative, so no recursion limit. NUL (U+0000, only expressible in JSON as ``\\u0000``)
    is valid JSON but PostgreSQL can store it neither in ``jsonb`` nor in ``text``: letting it
    through turned any such body into a database error, answered 503 database_unavailable.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return "strings must not contain NUL (U+0000)"
            continue
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
            if any("\x00" in key for key in node):
                return "strings must not contain NUL (U+0000)"
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return f"nested deeper than {limit} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def parse_json(body: bytes) -> Any:
    """Parse a request body with orjson; invalid UTF-8, bad JSON, deep nesting or NUL → 400.

    Errors are ``json.JSONDecodeError`` (orjson's subclasses it), which FastAPI turns into a
    ``json_invalid`` validation error and the handlers into 400 ``invalid_body``.
    """
    value = orjson.loads(body)
    problem = _json_problem(value, MAX_JSON_DEPTH)
    if problem is not None:
        raise json.JSONDecodeError(problem, "", 0)
    return value


class ApiRequest(Request):
    """A request whose JSON body is parsed by :func:`parse_json`."""

    async def json(self) -> Any:
        """The parsed body (cached)."""
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class PublicRoute(APIRoute):
    """A route without authentication (health); JSON bodies still go through orjson."""

    requires_auth = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler: authenticate first, then parse with :class:`ApiRequest`."""
        handler = super().get_route_handler()
        requires_auth = self.requires_auth
        path_format = self.path_format

        async def route_handler(request: Request) -> Response:
            if requires_auth:
                await authorize(request, path_format)
            reject_repeated_query(request)
            reject_nul_in_query(request)
            return await handler(ApiRequest(request.scope, request.receive))

        return route_handler


class AuthedRoute(PublicRoute):
    """A route that requires the bearer secret key (documented in OpenAPI)."""

    requires_auth = True

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = dict(kwargs.pop("openapi_extra", None) or {})
        extra.setdefault("security", [{BEARER_SCHEME: []}])
        # Any authed route can answer 403 to a key whose scope is too small.
        kwargs["responses"] = {**error_responses(403), **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, openapi_extra=extra, **kwargs)


QueryCheck = Callable[[Request], Coroutine[Any, Any, None]]


def reject_repeated_query(request: Request) -> None:
    """400 ``invalid_query_params`` when a scalar query parameter is given more than once."""
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key in seen and key not in REPEATABLE_QUERY:
            raise invalid_query("Query parameter given more than once", [key])
        seen.add(key)


def reject_nul_in_query(request: Request) -> None:
    """400 ``invalid_query_params`` when a query parameter's name or value holds NUL (U+0000).

    No parameter of this API can meaningfully hold one, and PostgreSQL rejects NUL in text
    parameters: ``GET /connections?connectionId=%00`` was answered 503 database_unavailable.
    """
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            item = {"code": "invalid_string", "message": "Must not contain NUL", "path": [key]}
            raise ApiError(400, "invalid_query_params", "Invalid query parameters.", errors=[item])


def _is_tag_param(key: str) -> bool:
    return key.startswith("tags[") and key.endswith("]")


def strict_query(*allowed: str, tags: bool = False) -> QueryCheck:
    """A dependency rejecting query parameters outside ``allowed`` (``tags[...]`` if ``tags``)."""
    allowed_set = frozenset(allowed)

    async def check(request: Request) -> None:
        for key in request.query_params:
            if key in allowed_set:
                continue
            if tags and _is_tag_param(key):
                continue
            raise invalid_query("Unrecognized query parameter", [key])

    return check


def tag_filters(request: Request) -> dict[str, str]:
    """``tags[key]=value`` query parameters → ``{key (lower-cased): value}``.

    Keys are 1 to 64 characters without brackets and values 1 to 255, as for stored tags;
    others are a 400.
    """
    tags: dict[str, str] = {}
    for param, value in request.query_params.multi_items():
        if not _is_tag_param(param):
            continue
        key = param[5:-1]
        # A bracket in the key is a nested deepObject (tags[a][b]=v), not a tag: refused, or
        # `{"a": {"b": v}}` would silently filter on a key "a][b" that no tag can have.
        nested = "[" in key or "]" in key
        if nested or not 1 <= len(key) <= 64 or not 1 <= len(value) <= 255:
            raise ApiError(
                400,
                "invalid_query_params",
                "Invalid query parameters.",
                errors=[
                    {
                        "code": "invalid_tag",
                        "message": "Tag keys must be 1-64 and values 1-255 characters",
                        "path": [param],
                    }
                ],
            )
        tags[key.lower()] = value
    return tags


class ConnectionIdConvertor(Convertor[str]):
    """Like Starlette's ``path`` (ids may contain ``/``) but never ending in ``/metadata``.

    ``/connection/{connectionId}`` (GET, DELETE) would otherwise also match the legacy
    ``/connection/{connectionId}/metadata`` URLs, answering their other methods as a read of an
    id ending in ``/metadata`` instead of 405, which Nango's router does not do either.
    """

    regex = r"(?!.*/metadata$).*"

    def convert(self, value: str) -> str:
        """Return the matched text."""
        return value

    def to_string(self, value: str) -> str:
        """Return the id as URL text."""
        return value


CONNECTION_ID_CONVERTOR = "connection_id"
register_url_convertor(CONNECTION_ID_CONVERTOR, ConnectionIdConvertor())
