"""The application factory and the two pure-ASGI middlewares (request context, body limit)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, HTTPException
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freshtoken import __version__
from freshtoken.api.deps import BEARER_SCHEME, key_digest
from freshtoken.api.docs import install_docs
from freshtoken.api.errors import (
    SERVER_ERROR_MESSAGE,
    envelope,
    install_error_handlers,
)
from freshtoken.api.fastread import READ_TEMPLATES, HotReadMiddleware
from freshtoken.api.routes import (
    connect,
    connections,
    health,
    integrations,
    metadata,
    oauth,
    providers,
    refresh,
)
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.apikeys import KeyRing
from freshtoken.logs import get_logger
from freshtoken.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024
# Node's (so Nango's) default limit on a request's header section; over it, Node answers 431.
MAX_HEADER_BYTES = 16 * 1024

log = get_logger("freshtoken.api")


def _json_start(status: int, body: bytes) -> tuple[Message, Message]:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes``: 413 ``payload_too_large``.

    A declared ``Content-Length`` over the limit is refused before the app runs; a body streamed
    without one is counted as it is read, and the read that crosses the limit raises a 413
    ``HTTPException`` that the error handlers turn into the envelope.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._refuse(send, 413 if declared > self.max_bytes else 400)
                    return
                break
        received = 0
        limit = self.max_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, counting_receive, send)

    @staticmethod
    async def _refuse(send: Send, status: int) -> None:
        code, message = (
            ("payload_too_large", "The request body is too large.")
            if status == 413
            else ("invalid_body", "Invalid Content-Length header.")
        )
        start, body = _json_start(status, orjson.dumps(envelope(code, message)))
        await send(start)
        await send(body)


class HeaderLimitMiddleware:
    """Reject requests whose headers total over ``max_bytes``: 431 ``header_too_large``.

    uvicorn's default parser (httptools) puts no limit on header size (h11's is 16 KiB), so
    without this check a 100 KiB or 64 MiB header reaches the app and is processed (an
    Authorization header hashed, a health check answered 200). The size counted is each
    ``name: value`` line with its CRLF, as a server sees it. This bounds the app's work and makes
    the answer the same behind any server; the memory a server spends buffering an oversized
    header must still be bounded in front of the app (a proxy, or uvicorn's h11 parser).
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse oversized header sections before anything else reads them."""
        if scope["type"] == "http":
            size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > self.max_bytes:
                payload = envelope("header_too_large", "The request headers are too large.")
                start, body = _json_start(431, orjson.dumps(payload))
                await send(start)
                await send(body)
                return
        await self.app(scope, receive, send)


class RequestContextMiddleware:
    """Request id, the ``api.request`` access event, and the last-resort 500.

    The access event carries the route template (never the raw path or query string, which can
    hold connection ids) and never headers. ``request_id`` is bound in structlog's contextvars for
    everything logged during the request and cleared afterwards. An exception that escapes the
    app is logged once as ``api.error`` and answered with the generic 500 envelope.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request, log it, and guard against escaping exceptions."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            log.exception(
                "api.error",
                route=_route_template(scope),
                error=type(exc).__name__,
                request_id=request_id,
            )
            if response_started:
                raise
            status = 500
            start, body = _json_start(
                500, orjson.dumps(envelope("server_error", SERVER_ERROR_MESSAGE))
            )
            await send_wrapper(start)
            await send(body)
        finally:
            log.info(
                "api.request",
                method=scope.get("method"),
                route=_route_template(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                request_id=request_id,
            )
            structlog.contextvars.reset_contextvars(**tokens)


def _route_template(scope: Scope) -> str | None:
    """The matched route's template (``/connections/{connectionId}``), None when unmatched."""
    route = scope.get("route")
    path = getattr(route, "path_format", None)
    return path if isinstance(path, str) else None


def create_app(runtime: Runtime) -> FastAPI:
    """Build the API around a runtime (which the caller owns and closes)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # Write the last second of read stamps on a graceful shutdown (the runtime itself
        # belongs to the caller, who closes it).
        runtime.fetch_stamps.close()
        # The async pools opened on this loop close with it.
        await runtime.reader.dispose()
        if runtime.provider_http is not None:
            await runtime.provider_http.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="freshtoken",
        version=__version__,
        description=(
            "Self-hosted OAuth credentials service with a Nango-compatible API. Every route "
            "except /health needs `Authorization: Bearer <secret key>`."
        ),
        default_response_class=JSONBytesResponse,
        # FastAPI's pages load their assets from a CDN: install_docs serves them from the package.
        # FRESHTOKEN_PUBLIC_DOCS (on in development, off in production): off, none of the docs
        # (pages, assets, /openapi.json) is served, and a caller without a key gets 401.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if runtime.settings.docs_public else None,
    )
    if runtime.settings.docs_public:
        install_docs(app)
    app.state.runtime = runtime
    app.state.secret_key_digest = key_digest(runtime.settings.secret_key_value())
    app.state.key_ring = KeyRing(runtime.settings.secret_key_value(), runtime.session_factory)
    install_error_handlers(app)
    # Order matters: connection metadata routes before /connections/{connectionId:path}.
    routers = (
        health.router,
        metadata.router,
        refresh.router,  # POST /connections/{id}/refresh before the catch-all id path
        connections.router,
        integrations.router,
        providers.router,
        connect.router,  # connect sessions and the browser flows (issue 13)
        connect.session_router,
        oauth.router,
    )
    methods: dict[str, set[str]] = {}
    read_routes: dict[str, APIRoute] = {}
    for router in routers:
        app.include_router(router)
        for route in router.routes:
            if isinstance(route, APIRoute):
                methods.setdefault(route.path_format, set()).update(route.methods or ())
                if route.path_format in READ_TEMPLATES and "GET" in (route.methods or ()):
                    read_routes[route.path_format] = route
    # @nangohq/frontend opens its result WebSocket at the API's root path.
    app.add_api_websocket_route("/", oauth.websocket_endpoint)
    # One template can be served by several routes (one per method): a 405 lists them all.
    app.state.methods_by_template = {path: sorted(m) for path, m in methods.items()}
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(HeaderLimitMiddleware, max_bytes=MAX_HEADER_BYTES)
    app.add_middleware(oauth.BrowserCorsMiddleware)
    # The hot read's lean path: inside the request context (id, access line, last-resort 500),
    # in front of everything else (see freshtoken.api.fastread).
    app.add_middleware(
        HotReadMiddleware,
        read=connections.read_connection,
        routes=read_routes,
        exception_handlers=app.exception_handlers,
        max_header_bytes=MAX_HEADER_BYTES,
    )
    app.add_middleware(RequestContextMiddleware)  # added last = outermost
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _tidy_operation(operation: dict[str, Any]) -> None:
    """Drop the 422 FastAPI documents (never sent) and ``null`` from parameter schemas.

    Also applies ``x-required-query`` (from ``openapi_extra``): query parameters documented as
    required although the handler has a legacy fallback for them.
    """
    operation.get("responses", {}).pop("422", None)
    required = set(operation.pop("x-required-query", ()))
    for parameter in operation.get("parameters", ()):
        schema = parameter.get("schema", {})
        # A query string has no null: ``anyOf [string, null]`` is just ``string``.
        variants = schema.get("anyOf")
        if isinstance(variants, list):
            concrete = [v for v in variants if v.get("type") != "null"]
            if len(concrete) == 1 and len(concrete) < len(variants):
                schema.pop("anyOf")
                schema.update(concrete[0])
        if parameter.get("in") == "query" and parameter.get("name") in required:
            parameter["required"] = True


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: bearer scheme declared, FastAPI's unused 422 responses removed."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The secret key (FRESHTOKEN_SECRET_KEY).",
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                _tidy_operation(operation)
    component_schemas = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        component_schemas.pop(unused, None)
    # The providers an integration may name are this process's catalog.
    runtime: Runtime = app.state.runtime
    create_body = component_schemas.get("PostIntegrationBody", {}).get("properties", {})
    if "provider" in create_body:
        create_body["provider"]["enum"] = runtime.catalog.names()
    app.openapi_schema = schema
    return schema


__all__ = ["BodyLimitMiddleware", "HeaderLimitMiddleware", "RequestContextMiddleware", "create_app"]
