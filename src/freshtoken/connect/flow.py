"""The OAuth 2 authorization-code flow: start (state, PKCE, URL) and callback (exchange, store).

Nothing is stored on failure: the flow row is deleted first (single use) and the connection is
written only after a successful exchange, in one transaction. Errors carry Nango's error types
(``url_param_err``, ``callback_err``, ``token_err``, ``state_err``, ...) and messages that never
hold a code, token or secret.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from freshtoken.connect import authurl, oauth1
from freshtoken.connect.sessions import (
    config_defaults,
    connection_end_user,
    connection_tags,
)
from freshtoken.connect.sessions import digest as sha256_hex
from freshtoken.crypto import aad_for
from freshtoken.logs import get_logger
from freshtoken.outbound import OutboundPolicy
from freshtoken.refresh import grants
from freshtoken.runtime import Runtime
from freshtoken.store import connect as store_connect
from freshtoken.store.models import ConnectSession, Integration, OAuthSession

log = get_logger("freshtoken.connect")

CALLBACK_PATH = "/oauth/callback"
STATE_COOKIE_PREFIX = "oauth2-"
# Query parameters of the callback that carry the authorization response; nothing else of the
# callback query is kept, so nothing unexpected reaches connection_config.
_PROVIDER_ERROR_KEYS = ("error", "error_description")


class FlowError(Exception):
    """A failed flow step, with Nango's ``error_type``; the message is safe to show and log."""

    def __init__(
        self,
        error_type: str,
        message: str,
        ctx: Mapping[str, str | None] | None = None,
    ) -> None:
        super().__init__(message)
        ctx = ctx or {}
        self.error_type = error_type
        self.message = message
        self.provider_config_key = ctx.get("provider_config_key") or ""
        self.connection_id = ctx.get("connection_id") or ""
        self.ws_client_id = ctx.get("ws_client_id")


@dataclass(frozen=True)
class StartRequest:
    """The parsed query of ``GET /oauth/connect/{providerConfigKey}``."""

    provider_config_key: str
    ws_client_id: str | None = None
    connection_id: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    authorization_params: Mapping[str, str | None] = field(default_factory=dict)
    user_scope: str | None = None


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the state its cookie is named after."""

    url: str
    state: str
    connection_id: str


@dataclass(frozen=True)
class Finished:
    """A stored connection."""

    provider_config_key: str
    connection_id: str
    ws_client_id: str | None
    created: bool


def redirect_uri(runtime: Runtime) -> str:
    """``<FRESHTOKEN_PUBLIC_URL>/oauth/callback``."""
    return runtime.settings.resolved_public_url + CALLBACK_PATH


def _whole_url_keys(spec: Any) -> set[str]:
    """connection_config keys that fill a whole endpoint URL (the generic ``oauth2`` entry).

    The browser may not choose them: they decide where the code and the client secret are sent.
    Only the server (a connect session's defaults) may.
    """
    keys: set[str] = set()
    for template in (spec.authorization_url, spec.token_url, spec.refresh_url):
        if template and template.startswith("${"):
            inner = template[2 : template.find("}")]
            for part in inner.split("||"):
                keys.add(authurl._strip(part.strip()))
    return keys


def start(
    runtime: Runtime,
    session: ConnectSession,
    req: StartRequest,
    http: httpx.Client | None = None,
) -> Started:
    """Validate, store the flow (state hashed, verifier encrypted) and build the provider URL."""
    key = req.provider_config_key
    fail_ctx: dict[str, str | None] = {"provider_config_key": key, "ws_client_id": req.ws_client_id}
    now = runtime.clock.now()
    with runtime.store() as store:
        integration = store.get_integration(key)
        if integration is None:
            raise FlowError(
                "provider_config_err",
                f'Could not find a Provider Config matching the "{key}" key.',
                ctx=fail_ctx,
            )
        spec = runtime.catalog.get(integration.provider)
        if spec is None:
            raise FlowError(
                "unknown_config_key",
                f'No Provider Configuration with key "{integration.provider}".',
                ctx=fail_ctx,
            )
        if spec.auth_mode not in ("OAUTH2", "OAUTH1") or (
            spec.auth_mode == "OAUTH1" and http is None
        ):
            raise FlowError(
                "auth_mode_err", f"Auth mode {spec.auth_mode} not supported.", ctx=fail_ctx
            )
        client_secret = store.client_secret(integration)
        if not integration.client_id or not client_secret:
            raise FlowError(
                "provider_config_err",
                f'Provider Config "{key}" is missing client ID, secret and/or scopes.',
                ctx=fail_ctx,
            )
        defaults = config_defaults(session, key)
        connection_id = _connection_id(session, req)
        fail_ctx_conn = {**fail_ctx, "connection_id": connection_id}
        connection_config = _connection_config(spec, req.params, defaults)
        scopes = _scopes(integration, defaults)
        extra = _authorization_params(spec, req, defaults)
        try:
            authurl.check_templates(spec, connection_config)
        except authurl.MissingConnectionConfig as exc:
            raise FlowError(
                "url_param_err",
                "Missing Connection Config param(s) in Auth request to interpolate url "
                f"{exc.template}. Missing: {', '.join(exc.missing)}",
                ctx=fail_ctx_conn,
            ) from None
        state = authurl.new_state()
        oauth1_mode = spec.auth_mode == "OAUTH1"
        verifier = (
            None if oauth1_mode or authurl.disables_pkce(spec) else authurl.new_code_verifier()
        )
        callback = redirect_uri(runtime)
        temporary_secret: str | None = None
        try:
            if oauth1_mode:
                assert http is not None
                url, temporary_secret = _start_oauth1(
                    spec,
                    integration.client_id,
                    client_secret,
                    callback + "?" + urllib.parse.urlencode({"state": state}),
                    connection_config,
                    extra,
                    http,
                    fail_ctx_conn,
                    OutboundPolicy.from_settings(runtime.settings),
                )
            else:
                url = authurl.authorization_url(
                    authurl.AuthorizationRequest(
                        spec=spec,
                        client_id=integration.client_id,
                        redirect_uri=callback,
                        state=state,
                        scopes=scopes,
                        connection_config=connection_config,
                        code_verifier=verifier,
                        extra_params=extra,
                    )
                )
        except authurl.MissingConnectionConfig as exc:
            raise FlowError("url_param_err", str(exc), ctx=fail_ctx_conn) from None
        row = OAuthSession(
            state_hash=sha256_hex(state),
            provider_config_key=key,
            provider=integration.provider,
            auth_mode=spec.auth_mode,
            connection_id=connection_id,
            connection_config=connection_config,
            redirect_uri=callback,
            connect_session_id=session.id,
            ws_client_id=req.ws_client_id,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=runtime.settings.oauth_state_ttl_seconds),
        )
        store_connect.add_oauth_session(store.session, row)
        if verifier is not None:
            row.code_verifier_enc = runtime.cipher.encrypt(
                verifier.encode(), aad_for("oauth_sessions", row.id, "code_verifier")
            )
        if temporary_secret is not None:
            row.request_token_secret_enc = runtime.cipher.encrypt(
                temporary_secret.encode(),
                aad_for("oauth_sessions", row.id, "request_token_secret"),
            )
    log.info(
        "oauth.flow_started",
        provider_config_key=key,
        provider=integration.provider,
        pkce=verifier is not None,
    )
    return Started(url=url, state=state, connection_id=connection_id)


def _start_oauth1(
    spec: Any,
    client_id: str,
    client_secret: str,
    callback: str,
    connection_config: Mapping[str, Any],
    extra: Mapping[str, str | None],
    http: httpx.Client,
    ctx: Mapping[str, str | None],
    outbound: OutboundPolicy,
) -> tuple[str, str]:
    """OAuth 1.0a legs 1 and 2: get a temporary token, build the authorization URL."""
    request_template = spec.raw.get("request_url")
    if not isinstance(request_template, str) or not spec.authorization_url:
        raise FlowError("provider_config_err", "The OAUTH1 provider has no request_url.", ctx=ctx)
    request_url = authurl.render(request_template, connection_config)
    try:
        temporary = oauth1.request_token(
            http, request_url, client_id, client_secret, callback, outbound=outbound
        )
    except oauth1.OAuth1Error as exc:
        raise FlowError(
            "unknown_err",
            f"Unknown error during the Oauth flow. Request token: {exc}",
            ctx=ctx,
        ) from None
    query: dict[str, str] = {"oauth_token": temporary["oauth_token"]}
    raw_params = spec.raw.get("authorization_params")
    if isinstance(raw_params, Mapping):
        for k, v in raw_params.items():
            query[str(k)] = authurl.interpolate(str(v), connection_config)
    for k, v in extra.items():
        if k == "oauth_token":
            continue
        if v is None:
            query.pop(k, None)
        else:
            query[k] = v
    base = authurl.render(spec.authorization_url, connection_config)
    sep = "&" if urllib.parse.urlsplit(base).query else "?"
    return base + sep + urllib.parse.urlencode(query), temporary["oauth_token_secret"]


def _connection_id(session: ConnectSession, req: StartRequest) -> str:
    # A reconnect session (or one made by `freshtoken connect`) fixes the connection id.
    if session.connection_id:
        return session.connection_id
    return req.connection_id or str(uuid.uuid4())


def _connection_config(
    spec: Any, params: Mapping[str, str], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    blocked = _whole_url_keys(spec)
    config: dict[str, Any] = {
        k: v for k, v in params.items() if k != "webhook_url" and k not in blocked
    }
    session_config = defaults.get("connection_config")
    if isinstance(session_config, dict):
        for k, v in session_config.items():
            if k != "oauth_scopes_override":
                config[k] = v
    return config


def _scopes(integration: Integration, defaults: Mapping[str, Any]) -> str | None:
    session_config = defaults.get("connection_config")
    if isinstance(session_config, dict):
        override = session_config.get("oauth_scopes_override")
        if isinstance(override, str | list) and override:
            return override if isinstance(override, str) else ",".join(map(str, override))
    return integration.scopes


def _authorization_params(
    spec: Any, req: StartRequest, defaults: Mapping[str, Any]
) -> dict[str, str | None]:
    session_params = defaults.get("authorization_params")
    params: dict[str, str | None] = (
        {str(k): (None if v is None else str(v)) for k, v in session_params.items()}
        if isinstance(session_params, dict) and session_params
        else dict(req.authorization_params)
    )
    user_scopes = defaults.get("user_scopes")
    user_scope = user_scopes if isinstance(user_scopes, str) and user_scopes else req.user_scope
    if user_scope and spec.name == "slack":  # Nango sends user_scope for Slack only
        params["user_scope"] = user_scope
    return params


# -- callback -----------------------------------------------------------------------------------


def _claim(runtime: Runtime, state: str) -> OAuthSession | None:
    """Delete the flow row for this state and return it (None if unknown or already used).

    The DELETE's row count decides who owns a state used twice at once: exactly one caller.
    """
    with runtime.store() as store:
        return store_connect.claim_oauth_session(store.session, sha256_hex(state))


def abort_flows_of_cookies(runtime: Runtime, cookie_states: list[str]) -> list[OAuthSession]:
    """Delete the pending flows this browser started (its ``oauth2-<state>`` cookies).

    Called when a callback arrives with a state the server does not know: the flow the browser
    was in cannot complete safely, so it ends now and its page learns why (RFC 9700 §4.7).
    """
    aborted = []
    for state in cookie_states[:10]:
        row = _claim(runtime, state)
        if row is not None:
            aborted.append(row)
    return aborted


def callback(runtime: Runtime, query: Mapping[str, str], http: httpx.Client) -> Finished:
    """Finish a flow: claim the state, check the session, exchange the code, store the connection.

    Raises FlowError (with the flow's ws_client_id when it is known).
    """
    state = query.get("state") or ""
    if not state:
        raise FlowError("state_err", "Invalid state parameter passed in the callback: (none)")
    row = _claim(runtime, state)
    if row is None:
        raise FlowError("state_err", "Invalid state parameter passed in the callback.")
    ctx: dict[str, str | None] = {
        "provider_config_key": row.provider_config_key,
        "connection_id": row.connection_id,
        "ws_client_id": row.ws_client_id,
    }
    now = runtime.clock.now()
    if row.expires_at <= now:
        raise FlowError("state_err", "The authorization flow expired; start it again.", ctx=ctx)
    code = query.get("code")
    if row.auth_mode == "OAUTH1":
        if not query.get("oauth_token") or not query.get("oauth_verifier"):
            raise FlowError(
                "callback_err",
                "Did not get oauth_token and/or oauth_verifier in the callback.",
                ctx=ctx,
            )
    elif not code:
        context = "; ".join(f"{k}: {query[k][:200]}" for k in _PROVIDER_ERROR_KEYS if query.get(k))
        message = "Did not get authorization code in the callback."
        if context:
            message += f" Provider error: {context}"
        raise FlowError("callback_err", message, ctx=ctx)
    with runtime.store() as store:
        session = store_connect.connect_session_by_id(store.session, row.connect_session_id)
        if session is None or session.expires_at <= now:
            raise FlowError(
                "unknown_err",
                "Unknown error during the Oauth flow. The connect session that started it ended.",
                ctx=ctx,
            )
        integration = store.get_integration(row.provider_config_key)
        spec = runtime.catalog.get(row.provider)
        if integration is None or spec is None or integration.provider != row.provider:
            raise FlowError(
                "provider_config_err",
                f'Could not find a Provider Config matching the "{row.provider_config_key}" key.',
                ctx=ctx,
            )
        client_secret = store.client_secret(integration)
        verifier = (
            runtime.cipher.decrypt(
                row.code_verifier_enc, aad_for("oauth_sessions", row.id, "code_verifier")
            ).decode()
            if row.code_verifier_enc
            else None
        )
        try:
            exchange_spec = authurl.with_interpolated_token_params(spec, row.connection_config)
        except authurl.MissingConnectionConfig as exc:
            raise FlowError("url_param_err", str(exc), ctx=ctx) from None
        # The settings' outbound policy, body cap and deadline, as for refreshes: the code
        # and the client secret go only where production allows.
        request = grants.GrantRequest.for_settings(
            runtime.settings,
            exchange_spec,
            row.connection_config,
            integration.client_id,
            client_secret,
        )
        tags = connection_tags(session)
        end_user = connection_end_user(session)
        webhook_url_override = session.webhook_url_override
        temporary_secret = (
            runtime.cipher.decrypt(
                row.request_token_secret_enc,
                aad_for("oauth_sessions", row.id, "request_token_secret"),
            ).decode()
            if row.request_token_secret_enc
            else ""
        )
    if row.auth_mode == "OAUTH1":
        credentials, body = _finish_oauth1(spec, request, query, temporary_secret, http, ctx)
    else:
        credentials, body = _exchange_code(
            runtime, spec, request, row, code or "", verifier, http, ctx
        )
    connection_config = dict(row.connection_config)
    connection_config.update(token_response_metadata(spec.raw.get("token_response_metadata"), body))
    return _save(
        runtime, row, credentials, connection_config, tags, end_user, webhook_url_override, ctx
    )


def _finish_oauth1(
    spec: Any,
    request: grants.GrantRequest,
    query: Mapping[str, str],
    temporary_secret: str,
    http: httpx.Client,
    ctx: Mapping[str, str | None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """OAuth 1.0a leg 3: the verifier and temporary token for the token credentials."""
    if not spec.token_url:
        raise FlowError("provider_config_err", "The OAUTH1 provider has no token_url.", ctx=ctx)
    try:
        values = oauth1.access_token(
            http,
            authurl.render(spec.token_url, request.connection_config),
            request.client_id or "",
            request.client_secret or "",
            query["oauth_token"],
            temporary_secret,
            query["oauth_verifier"],
            outbound=request.outbound,
        )
    except oauth1.OAuth1Error as exc:
        raise FlowError(
            "token_err", f"Error storing/retrieving the token. {exc}", ctx=ctx
        ) from None
    credentials = {
        "type": "OAUTH1",
        "oauth_token": values["oauth_token"],
        "oauth_token_secret": values["oauth_token_secret"],
        "raw": dict(values),
    }
    return credentials, dict(values)


def _exchange_code(
    runtime: Runtime,
    spec: Any,
    request: grants.GrantRequest,
    row: OAuthSession,
    code: str,
    verifier: str | None,
    http: httpx.Client,
    ctx: Mapping[str, str | None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """OAuth 2 code exchange through the refresh engine's grant code."""
    sent_at = runtime.clock.now()
    try:
        return grants.authorization_code(
            http,
            request,
            code=code,
            redirect_uri=row.redirect_uri,
            code_verifier=verifier,
            sent_at=sent_at,
            default_lifetime=float(
                spec.default_token_lifetime_seconds
                or runtime.settings.default_token_lifetime_seconds
            ),
        )
    except grants.GrantError as exc:
        raise FlowError(
            "token_err",
            f"Error storing/retrieving the token. Provider answered: {exc.error_code}",
            ctx=ctx,
        ) from None


def _save(
    runtime: Runtime,
    row: OAuthSession,
    credentials: dict[str, Any],
    connection_config: dict[str, Any],
    tags: dict[str, str],
    end_user: dict[str, Any] | None,
    webhook_url_override: str | None,
    ctx: Mapping[str, str | None],
) -> Finished:
    """Store the connection (creation or override) through the import API's store function."""
    with runtime.store() as store:
        integration = store.get_integration(row.provider_config_key)
        if integration is None:
            raise FlowError("provider_config_err", "The integration was deleted.", ctx=ctx)
        _conn, created = store.upsert_connection(
            integration,
            connection_id=row.connection_id,
            credentials=credentials,
            connection_config=connection_config,
            tags=tags,
            end_user=end_user,
            # Nango writes the session's override even when empty (a reconnect clears an old one).
            webhook_url_override=webhook_url_override,
        )
    log.info(
        "oauth.connection_saved",
        provider_config_key=row.provider_config_key,
        provider=row.provider,
        connection_id=row.connection_id,
        operation="creation" if created else "override",
    )
    return Finished(
        provider_config_key=row.provider_config_key,
        connection_id=row.connection_id,
        ws_client_id=row.ws_client_id,
        created=created,
    )


def token_response_metadata(paths: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """Nango's ``token_response_metadata``: dot paths of the token JSON kept in connection_config.

    The key stored is the path's last segment; only string and boolean values are kept.
    """
    out: dict[str, Any] = {}
    if not isinstance(paths, list | tuple):
        return out
    for path in paths:
        if not isinstance(path, str) or not path:
            continue
        value: Any = body
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str | bool):
            out[path.rsplit(".", 1)[-1]] = value
    return out
