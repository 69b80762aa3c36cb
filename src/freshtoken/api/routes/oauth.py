"""The browser side of creating a connection: Nango's ``/oauth/connect`` and ``/oauth/callback``.

Also the WebSocket at the API's root path that ``@nangohq/frontend`` waits on, and a minimal
``/connect`` page (the ``connect_link`` of a session) for people without a frontend. These
routes take a connect session token in the query, never the secret key.
"""

from __future__ import annotations

import html
import re
import urllib.parse
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, WebSocket
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from freshtoken.api.deps import PublicRoute, RuntimeDep
from freshtoken.api.errors import ApiError, invalid_query
from freshtoken.api.routes.connect import require_session
from freshtoken.api.schemas import PROVIDER_CONFIG_KEY_PATTERN, StrictModel
from freshtoken.api.serialize import JSONBytesResponse
from freshtoken.connect import direct, flow, pages, sessions
from freshtoken.logs import get_logger
from freshtoken.runtime import Runtime

log = get_logger("freshtoken.connect")

router = APIRouter(route_class=PublicRoute, tags=["connect"])

_NESTED = re.compile(r"^(params|authorization_params|credentials)\[([^\[\]]{1,255})\]$")
_SCALARS = frozenset(
    {"connect_session_token", "ws_client_id", "connection_id", "user_scope", "public_key", "hmac"}
)
_KEY = re.compile(PROVIDER_CONFIG_KEY_PATTERN)


def parse_start_query(
    provider_config_key: str, request: Request
) -> tuple[str | None, flow.StartRequest]:
    """Nango's query (``qs`` style ``params[k]=v``) → (session token, StartRequest); else 400."""
    scalars: dict[str, str] = {}
    nested: dict[str, dict[str, str]] = {
        "params": {},
        "authorization_params": {},
        "credentials": {},
    }
    for key, value in request.query_params.multi_items():
        match = _NESTED.match(key)
        if match is not None:
            nested[match.group(1)][match.group(2)] = value
        elif key in _SCALARS:
            scalars[key] = value
        else:
            raise invalid_query("Unrecognized query parameter", [key])
    if nested["credentials"]:
        # Nango allows per-connection OAuth client overrides only where an integration opts in;
        # freshtoken has no such switch, so it refuses them rather than silently ignoring them.
        raise invalid_query("Credential overrides are not supported", ["credentials"])
    connection_id = scalars.get("connection_id")
    if connection_id is not None and not 1 <= len(connection_id) <= 255:
        raise invalid_query("connection_id must have 1 to 255 characters", ["connection_id"])
    ws_client_id = scalars.get("ws_client_id")
    if ws_client_id is not None and len(ws_client_id) > 64:
        raise invalid_query("ws_client_id is too long", ["ws_client_id"])
    authorization_params: dict[str, str | None] = {
        k: (None if v == "undefined" else v) for k, v in nested["authorization_params"].items()
    }
    return scalars.get("connect_session_token"), flow.StartRequest(
        provider_config_key=provider_config_key,
        ws_client_id=ws_client_id or None,
        connection_id=connection_id,
        params=nested["params"],
        authorization_params=authorization_params,
        user_scope=scalars.get("user_scope"),
    )


def _state_cookie(state: str) -> str:
    return flow.STATE_COOKIE_PREFIX + state


@router.get("/oauth/connect/{providerConfigKey}", include_in_schema=False)
async def oauth_connect(providerConfigKey: str, request: Request, runtime: RuntimeDep) -> Response:
    """Start an authorization-code flow and send the browser to the provider's consent page."""
    if not _KEY.match(providerConfigKey) or len(providerConfigKey) > 255:
        raise ApiError(400, "invalid_uri_params", "Invalid URI parameters.")
    token, start = parse_start_query(providerConfigKey, request)

    def authorize() -> None:
        with runtime.store() as store:
            session = require_session(runtime, token, store.session)
            if start.connection_id is not None:
                raise invalid_query(
                    "connection_id cannot be given with a connect session", ["connection_id"]
                )
            if not sessions.integration_allowed(session, providerConfigKey):
                raise ApiError(
                    400, "integration_not_allowed", "Integration not allowed by this token"
                )
            store.session.expunge(session)
            holder.append(session)

    holder: list[Any] = []
    await run_in_threadpool(authorize)
    try:
        started = await run_in_threadpool(
            flow.start, runtime, holder[0], start, runtime.connect_http_client()
        )
    except flow.FlowError as exc:
        return await _fail(runtime, exc)
    response = RedirectResponse(started.url, status_code=302)
    secure = runtime.settings.resolved_public_url.startswith("https://")
    response.set_cookie(
        _state_cookie(started.state),
        "1",
        max_age=runtime.settings.oauth_state_ttl_seconds,
        httponly=True,
        secure=secure,
        samesite="none" if secure else "lax",
        path="/oauth/callback",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def _fail(runtime: Runtime, exc: flow.FlowError) -> Response:
    """Nango's failure answer: the WebSocket error frame, then the error page."""
    log.info(
        "oauth.flow_failed",
        provider_config_key=exc.provider_config_key or None,
        error_type=exc.error_type,
    )
    await runtime.websocket_hub().error(
        exc.ws_client_id,
        exc.provider_config_key,
        exc.connection_id,
        exc.error_type,
        exc.message,
    )
    return pages.callback_page(exc.error_type, exc.message)


@router.get("/oauth/callback", include_in_schema=False)
async def oauth_callback(request: Request, runtime: RuntimeDep) -> Response:
    """Finish a flow: exchange the code, store the connection, tell the frontend, close the page."""
    query = dict(request.query_params.items())
    try:
        finished = await run_in_threadpool(
            flow.callback, runtime, query, runtime.connect_http_client()
        )
    except flow.FlowError as exc:
        if not exc.ws_client_id and exc.error_type == "state_err":
            # A state this server does not know: end the flows this browser has pending (its
            # state cookies), so the page that waits on them gets the error instead of hanging.
            cookie_states = [
                name[len(flow.STATE_COOKIE_PREFIX) :]
                for name in request.cookies
                if name.startswith(flow.STATE_COOKIE_PREFIX)
            ]
            aborted = await run_in_threadpool(flow.abort_flows_of_cookies, runtime, cookie_states)
            for row in aborted:
                await runtime.websocket_hub().error(
                    row.ws_client_id,
                    row.provider_config_key,
                    row.connection_id,
                    exc.error_type,
                    exc.message,
                )
        response = await _fail(runtime, exc)
    else:
        await runtime.websocket_hub().success(
            finished.ws_client_id, finished.provider_config_key, finished.connection_id
        )
        response = pages.callback_page()
    for name in request.cookies:
        if name.startswith(flow.STATE_COOKIE_PREFIX):
            response.delete_cookie(name, path="/oauth/callback")
    return response


async def websocket_endpoint(websocket: WebSocket) -> None:
    """The frontend's result channel (mounted at ``/``)."""
    runtime: Runtime = websocket.app.state.runtime
    await runtime.websocket_hub().serve(websocket)


@router.get("/connect", response_class=HTMLResponse, include_in_schema=False)
def connect_page(request: Request, runtime: RuntimeDep) -> Response:
    """A minimal connect page: one link per integration the session may connect."""
    token = request.query_params.get("session_token") or ""
    with runtime.store() as store:
        session = require_session(runtime, token, store.session)
        if session.provider_config_key:
            keys = [session.provider_config_key]
        elif session.allowed_integrations:
            keys = list(session.allowed_integrations)
        else:
            keys = [i.unique_key for i in store.list_integrations()]
    items = "".join(
        '<li><a href="/oauth/connect/{}?{}">{}</a></li>'.format(
            urllib.parse.quote(key, safe=""),
            html.escape(urllib.parse.urlencode({"connect_session_token": token})),
            html.escape(key),
        )
        for key in keys
    )
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Connect</title></head>'
        f"<body><h1>Connect an account</h1><ul>{items}</ul></body></html>"
    )
    return HTMLResponse(
        body,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'",
        },
    )


# -- popup-free routes (API key, basic, client credentials) ---------------------------------------


class ApiKeyBody(StrictModel):
    """Body of ``POST /api-auth/api-key/{providerConfigKey}``."""

    apiKey: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class BasicBody(StrictModel):
    """Body of ``POST /api-auth/basic/{providerConfigKey}``."""

    username: Annotated[str, StringConstraints(max_length=8192)]
    password: Annotated[str, StringConstraints(max_length=8192)] = ""


class ClientCredentialsBody(StrictModel):
    """Body of ``POST /oauth2/auth/{providerConfigKey}`` (private-key JWT is not supported)."""

    client_id: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    client_certificate: str | None = None
    client_private_key: None = None


# Where a page on another origin POSTs credentials with fetch (Nango's frontend does): these
# answer CORS for any origin. Safe: they authenticate by the session token in the URL, never by
# cookies, and CORS is not extended to any other route.
CORS_PREFIXES = ("/api-auth/", "/oauth2/auth/")


class BrowserCorsMiddleware:
    """CORS (any origin, no credentials) for the popup-free connect routes only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=["*"], allow_methods=["POST"], allow_headers=["content-type"]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the connect paths through Starlette's CORS handling."""
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(CORS_PREFIXES):
            await self.cors(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _direct(
    providerConfigKey: str, request: Request, runtime: Runtime, mode: str, build: Any
) -> Response:
    """Authenticate the session, then store the credentials ``build`` makes."""
    if not _KEY.match(providerConfigKey) or len(providerConfigKey) > 255:
        raise ApiError(400, "invalid_uri_params", "Invalid URI parameters.")
    token, start = parse_start_query(providerConfigKey, request)

    def run() -> tuple[str, bool]:
        with runtime.store() as store:
            session = require_session(runtime, token, store.session)
            if start.connection_id is not None:
                raise invalid_query(
                    "connection_id cannot be given with a connect session", ["connection_id"]
                )
            if not sessions.integration_allowed(session, providerConfigKey):
                raise ApiError(
                    400, "integration_not_allowed", "Integration not allowed by this token"
                )
            store.session.expunge(session)
        connection_id = session.connection_id or str(uuid.uuid4())
        try:
            created = direct.save(
                runtime, session, providerConfigKey, connection_id, mode, build, start.params
            )
        except direct.DirectError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        return connection_id, created

    connection_id, _created = await run_in_threadpool(run)
    return JSONBytesResponse(
        {"providerConfigKey": providerConfigKey, "connectionId": connection_id}
    )


@router.post("/api-auth/api-key/{providerConfigKey}", include_in_schema=False)
async def api_key_auth(
    providerConfigKey: str, body: ApiKeyBody, request: Request, runtime: RuntimeDep
) -> Response:
    """Create an API-key connection from the browser (Nango's route)."""
    credentials = {"type": "API_KEY", "apiKey": body.apiKey}
    return await _direct(
        providerConfigKey, request, runtime, "API_KEY", lambda _spec, _cfg: credentials
    )


@router.post("/api-auth/basic/{providerConfigKey}", include_in_schema=False)
async def basic_auth(
    providerConfigKey: str, body: BasicBody, request: Request, runtime: RuntimeDep
) -> Response:
    """Create a Basic-auth connection from the browser (Nango's route)."""
    credentials = {"type": "BASIC", "username": body.username, "password": body.password}
    return await _direct(
        providerConfigKey, request, runtime, "BASIC", lambda _spec, _cfg: credentials
    )


@router.post("/oauth2/auth/{providerConfigKey}", include_in_schema=False)
async def client_credentials_auth(
    providerConfigKey: str, body: ClientCredentialsBody, request: Request, runtime: RuntimeDep
) -> Response:
    """Create a client-credentials connection: the grant runs first, nothing stored on failure."""
    build = direct.client_credentials_builder(
        runtime, runtime.connect_http_client(), body.client_id, body.client_secret
    )
    return await _direct(providerConfigKey, request, runtime, "OAUTH2_CC", build)
