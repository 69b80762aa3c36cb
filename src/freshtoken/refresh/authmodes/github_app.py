"""APP and CUSTOM (GitHub App) grants: an RS256 app JWT exchanged for an installation token.

As Nango's ``packages/shared/lib/auth/githubApp.ts``: the app id (``iss``) and private key come
from the integration, the installation id from ``connection_config`` (it fills the catalog's
``token_url``, ``.../app/installations/${connectionConfig.installation_id}/access_tokens``), and
the answer ``{token, expires_at}`` becomes ``{type: APP, access_token, expires_at, raw,
jwtToken}``. An installation token always lives one hour, so the proactive scan replaces it
well before then.

CUSTOM (GitHub App OAuth) refreshes both parts: the app part as above and, when it has a
refresh token, the user's OAuth 2.0 token at ``token_url.OAUTH2``. Unlike Nango, a failed user
refresh keeps the previous user part instead of dropping it (Nango then stores ``user: null``
and the connection breaks on its next refresh, nango#6136).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from freshtoken.providers.catalog import UrlTemplateError, render_url
from freshtoken.refresh.authmodes.context import AuthModeContext
from freshtoken.refresh.authmodes.jws import SigningKeyError, load_private_key, sign
from freshtoken.refresh.grants import (
    PERMANENT,
    TRANSIENT,
    GrantError,
    GrantRequest,
    TokenRequest,
    expiry_from,
    refresh_oauth2,
    send,
)
from freshtoken.store.credentials import iso

# GitHub accepts an app JWT for at most 10 minutes; iat is set 60 s back against clock drift
# (GitHub's documented advice), so the JWT expires 9 minutes after it is minted.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 540
GITHUB_ACCEPT = "application/vnd.github.v3+json"


def app_jwt(ctx: AuthModeContext, now: dt.datetime) -> str:
    """The app's RS256 JWT (``iss`` = app id) signed with the integration's private key."""
    custom = ctx.integration_custom
    app_id = custom.get("app_id") or ctx.client_id or ctx.connection_config.get("app_id")
    private_key = custom.get("private_key") or ctx.client_secret
    if not app_id or not private_key:
        raise GrantError(PERMANENT, "missing_app_credentials")
    try:
        key = load_private_key(str(private_key))
    except SigningKeyError:
        raise GrantError(PERMANENT, "invalid_private_key") from None
    issued = int(now.timestamp()) - JWT_BACKDATE_SECONDS
    payload = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(app_id)}
    try:
        return sign(payload, key, "RS256")
    except SigningKeyError:
        raise GrantError(PERMANENT, "invalid_private_key") from None


def installation_token(ctx: AuthModeContext) -> dict[str, Any]:
    """Exchange a fresh app JWT for an installation token; the APP credentials dict."""
    template = ctx.spec.token_url_for("APP")
    if not template:
        raise GrantError(PERMANENT, "missing_token_url")
    try:
        url = render_url(template, ctx.connection_config)
    except UrlTemplateError:
        raise GrantError(PERMANENT, "missing_connection_config") from None
    jwt = app_jwt(ctx, ctx.sent_at)
    request = TokenRequest(
        url=url,
        headers={"Accept": GITHUB_ACCEPT, "Authorization": f"Bearer {jwt}"},
        params={},
        body_format="json",
    )
    try:
        body = send(ctx.http, ctx.spec, request)
    except GrantError as error:
        if error.http_status == 404:
            # GitHub answers 404 when the app was uninstalled or the installation id is wrong:
            # no retry brings it back, the connection needs a new installation.
            raise GrantError(PERMANENT, "installation_not_found", http_status=404) from None
        raise
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise GrantError(TRANSIENT, "invalid_response", http_status=200)
    return {
        "type": "APP",
        "access_token": token,
        "expires_at": iso(expiry_from(body, ctx.sent_at, ctx.default_lifetime)),
        "raw": body,
        "jwtToken": jwt,
    }


def refresh_app(ctx: AuthModeContext) -> tuple[dict[str, Any], bool]:
    """APP: a new installation token (nothing rotates: there is no refresh token)."""
    return installation_token(ctx), False


def refresh_custom(ctx: AuthModeContext) -> tuple[dict[str, Any], bool]:
    """CUSTOM: a new installation token, and the user's OAuth token when it can be refreshed."""
    app = installation_token(ctx)
    old_user = ctx.credentials.get("user")
    user: Any = old_user if isinstance(old_user, dict) else None
    rotated = False
    if user is not None and user.get("refresh_token"):
        oauth_spec = dataclasses.replace(
            ctx.spec,
            auth_mode="OAUTH2",
            token_url=ctx.spec.token_url_for("OAUTH2"),
            refresh_url=None,
        )
        request = GrantRequest(oauth_spec, ctx.connection_config, ctx.client_id, ctx.client_secret)
        try:
            user, rotated = refresh_oauth2(
                ctx.http,
                request,
                user,
                sent_at=ctx.sent_at,
                default_lifetime=ctx.default_lifetime,
            )
        except GrantError as error:
            if error.permanent:
                raise
            user = old_user  # a provider hiccup on the user part keeps the working user token
    return {"type": "CUSTOM", "app": app, "user": user, "raw": app}, rotated


def fresh_jwt_credentials(
    ctx: AuthModeContext, credentials: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """``refresh_github_app_jwt_token=true``: the stored credentials with a newly minted app JWT.

    As Nango, no provider call: only the app JWT (``jwtToken``, valid 9 minutes) is renewed.
    """
    jwt = app_jwt(ctx, now)
    out = dict(credentials)
    if out.get("type") == "CUSTOM" and isinstance(out.get("app"), dict):
        out["app"] = {**out["app"], "jwtToken": jwt}
    else:
        out["jwtToken"] = jwt
    return out
