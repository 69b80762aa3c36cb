"""The error envelope and the exception handlers that produce it.

Every error leaves the API as ``{"error": {"code", "message", "payload"?, "errors"?}}`` (Nango's
shape). Messages are fixed text: they never echo request input, headers or exception details, so
an error body cannot leak a token or reflect an attacker's string. Unexpected exceptions become a
generic 500 and are logged (redacted) with their traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from freshtoken.api.schemas import ErrorEnvelope
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.errors import DecryptionError
from freshtoken.logs import get_logger

log = get_logger("freshtoken.api")

SERVER_ERROR_MESSAGE = "An unexpected error occurred. It has been logged."
DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable. Retry later."


class ApiError(Exception):
    """An error answered with the envelope; raise it anywhere in a handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        payload: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.payload = payload
        self.errors = errors
        self.headers = headers


def invalid_body(message: str, path: Sequence[str | int] = ()) -> ApiError:
    """A 400 ``invalid_body`` with one ``errors[]`` item (a rule beyond the schema)."""
    return ApiError(
        400,
        "invalid_body",
        "Invalid request body.",
        errors=[{"code": "custom", "message": message, "path": list(path)}],
    )


def invalid_query(message: str, path: Sequence[str | int] = ()) -> ApiError:
    """A 400 ``invalid_query_params`` with one ``errors[]`` item."""
    return ApiError(
        400,
        "invalid_query_params",
        "Invalid query parameters.",
        errors=[{"code": "unrecognized_keys", "message": message, "path": list(path)}],
    )


def envelope(
    code: str,
    message: str | None,
    *,
    payload: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``{"error": {...}}`` body (optional keys only when set)."""
    body: dict[str, Any] = {"code": code}
    if message is not None:
        body["message"] = message
    if payload is not None:
        body["payload"] = payload
    if errors is not None:
        body["errors"] = errors
    return {"error": body}


def error_response(
    status: int,
    code: str,
    message: str | None,
    *,
    payload: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An envelope response."""
    return JSONBytesResponse(
        envelope(code, message, payload=payload, errors=errors),
        status_code=status,
        headers=headers,
    )


# Where a validation error was → Nango's code and message, in the order they are reported.
_LOCATIONS: dict[str, tuple[str, str]] = {
    "path": ("invalid_uri_params", "Invalid URI parameters."),
    "query": ("invalid_query_params", "Invalid query parameters."),
    "header": ("invalid_headers", "Invalid headers."),
    "body": ("invalid_body", "Invalid request body."),
}


def _error_item(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error → ``{code, message, path}`` without the offending value."""
    code = str(error.get("type", "invalid"))
    message = str(error.get("msg", "Invalid value"))
    ctx = error.get("ctx") or {}
    if code == "union_tag_invalid":
        # pydantic's message quotes the tag that was sent; name only the expected ones.
        message = f"Invalid discriminator; expected one of: {ctx.get('expected_tags', '')}"
    elif code == "json_invalid":
        # loc holds a character offset, not a path into the document.
        reason = ctx.get("error")
        detail = f": {reason}" if isinstance(reason, str) and reason else ""
        return {"code": code, "message": f"Body is not valid JSON{detail}", "path": []}
    elif isinstance(error.get("input"), bytes):
        # FastAPI hands the raw bytes to the model when the content type is not JSON.
        message = "The body must be JSON sent with Content-Type: application/json"
    path = [p for p in error.get("loc", ())[1:] if isinstance(p, str | int)]
    return {"code": code, "message": message, "path": path}


def validation_envelope(errors: Iterable[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """Group validation errors by location; report the first location's code and errors."""
    by_location: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        loc = error.get("loc") or ("body",)
        by_location.setdefault(str(loc[0]), []).append(error)
    for location, (code, message) in _LOCATIONS.items():
        if location in by_location:
            return code, message, [_error_item(e) for e in by_location[location]]
    code, message = _LOCATIONS["body"]
    flat = [e for group in by_location.values() for e in group]
    return code, message, [_error_item(e) for e in flat]


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status,
        exc.code,
        exc.message,
        payload=exc.payload,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    code, message, items = validation_envelope(exc.errors())
    return error_response(400, code, message, errors=items)


_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("invalid_body", "The request body could not be parsed."),
    401: ("unauthorized", "Authentication failed."),
    403: ("forbidden", "Forbidden."),
    404: ("not_found", "The requested resource does not exist."),
    405: ("method_not_allowed", "Method not allowed on this route."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("invalid_body", "Unsupported content type."),
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    route = request.scope.get("route")
    if exc.status_code == 404 or (exc.status_code == 405 and getattr(route, "requires_auth", True)):
        # An unknown route or method tells an unauthenticated caller nothing: 401 first, so the
        # API's shape cannot be mapped without a key. (A public route, /health, keeps its 405.)
        from freshtoken.api.deps import authenticate  # deps imports this module

        try:
            await authenticate(request)
        except ApiError as denied:
            return await _api_error(request, denied)
    code, message = _HTTP_CODES.get(
        exc.status_code, (f"http_{exc.status_code}", "The request failed.")
    )
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method served on the matched path template.

    Starlette's 405 lists only the methods of the first route that matched the path, but one
    template (``/connections/metadata``) is served by several routes, one per method.
    """
    template = getattr(request.scope.get("route"), "path_format", None)
    by_template: dict[str, list[str]] = getattr(request.app.state, "methods_by_template", {})
    return by_template.get(template, []) if isinstance(template, str) else []


async def _database_error(request: Request, exc: Exception) -> Response:
    log.warning("api.database_unavailable", path=_route_of(request), error=type(exc).__name__)
    return error_response(503, "database_unavailable", DATABASE_UNAVAILABLE_MESSAGE)


async def _integrity_error(request: Request, exc: Exception) -> Response:
    # A unique index caught a concurrent write (two imports of one id at once): retryable.
    log.warning("api.conflict", path=_route_of(request), error=type(exc).__name__)
    return error_response(
        409, "conflict", "The request conflicted with a concurrent change. Retry it."
    )


async def _integrity_error_response(request: Request, exc: Exception) -> Response:
    # The store already logged credentials.integrity_failed with the row; this names the route.
    log.error("api.integrity_failed", path=_route_of(request), error=type(exc).__name__)
    return error_response(
        500,
        "integrity_check_failed",
        "The stored credentials failed their integrity check (the row was changed outside "
        "freshtoken, or its key is not configured); they are neither served nor refreshed.",
    )


async def server_error_handler(request: Request, exc: Exception) -> Response:
    """Catch-all: log with traceback (redacted by the log pipeline), answer a generic 500."""
    log.exception("api.error", path=_route_of(request), error=type(exc).__name__)
    return server_error_response()


def server_error_response() -> Response:
    """The generic 500 body: no traceback, no exception text."""
    return error_response(500, "server_error", SERVER_ERROR_MESSAGE)


def _route_of(request: Request) -> str | None:
    """The route template (never the raw path, which can hold a connection id)."""
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)
    return path if isinstance(path, str) else None


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DecryptionError, _integrity_error_response)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(Exception, server_error_handler)


def _describe(status: int) -> str:
    return {
        400: "Invalid request (see error.code and error.errors)",
        401: "Missing, malformed or unknown secret key",
        403: "The API key's scope does not allow this request",
        404: "Not found",
        409: "Conflict with a concurrent change",
        413: "Request body larger than 1 MiB",
        424: "Credentials cannot be served (refresh exhausted or backing off)",
        429: "The provider's refresh rate limit is reached; retry shortly",
        500: "Unexpected error",
        503: "Database unavailable",
    }.get(status, "Error")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the envelope for these statuses."""
    return {
        status: {"model": ErrorEnvelope, "description": _describe(status)} for status in statuses
    }
