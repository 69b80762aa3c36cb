"""Popup-free connections (Nango's ``/api-auth/api-key``, ``/api-auth/basic``, ``/oauth2/auth``).

The browser posts the credentials itself with a connect session token; the connection is stored
like a flow's (session tags and end user, creation or override). For client credentials the
grant is run first, through the refresh engine's grant code, and nothing is stored if it fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from freshtoken.connect.sessions import config_defaults, connection_end_user, connection_tags
from freshtoken.logs import get_logger
from freshtoken.refresh import grants
from freshtoken.runtime import Runtime
from freshtoken.store.models import ConnectSession

log = get_logger("freshtoken.connect")


class DirectError(Exception):
    """A refused request: HTTP status, Nango-style error code and a safe message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def save(
    runtime: Runtime,
    session: ConnectSession,
    provider_config_key: str,
    connection_id: str,
    expected_mode: str,
    build: Any,
    params: Mapping[str, str],
) -> bool:
    """Check the integration's auth mode, build the credentials and store; returns created.

    ``build(spec, integration_secret_pair, connection_config)`` returns the credentials dict (it
    may call the provider); it runs outside any database transaction.
    """
    with runtime.store() as store:
        integration = store.get_integration(provider_config_key)
        if integration is None:
            raise DirectError(404, "unknown_provider_config", "Integration does not exist")
        spec = runtime.catalog.get(integration.provider)
        if spec is None or spec.auth_mode != expected_mode:
            raise DirectError(
                400,
                "invalid_auth_mode",
                f"Integration {provider_config_key} does not use {expected_mode}",
            )
        defaults = config_defaults(session, provider_config_key)
        connection_config: dict[str, Any] = {k: v for k, v in params.items() if k != "webhook_url"}
        session_config = defaults.get("connection_config")
        if isinstance(session_config, dict):
            connection_config.update(
                {k: v for k, v in session_config.items() if k != "oauth_scopes_override"}
            )
        tags = connection_tags(session)
        end_user = connection_end_user(session)
        webhook_url_override = session.webhook_url_override
    credentials = build(spec, connection_config)
    with runtime.store() as store:
        integration = store.get_integration(provider_config_key)
        if integration is None:
            raise DirectError(404, "unknown_provider_config", "Integration does not exist")
        _conn, created = store.upsert_connection(
            integration,
            connection_id=connection_id,
            credentials=credentials,
            connection_config=connection_config,
            tags=tags,
            end_user=end_user,
            # Nango writes the session's override even when empty (a reconnect clears an old one).
            webhook_url_override=webhook_url_override,
        )
    log.info(
        "oauth.connection_saved",
        provider_config_key=provider_config_key,
        provider=spec.name,
        connection_id=connection_id,
        operation="creation" if created else "override",
    )
    return created


def client_credentials_builder(
    runtime: Runtime, http: httpx.Client, client_id: str, client_secret: str
) -> Any:
    """A ``build`` for ``save`` that runs the client-credentials grant with the given client."""

    def build(spec: Any, connection_config: Mapping[str, Any]) -> dict[str, Any]:
        request = grants.GrantRequest.for_settings(
            runtime.settings, spec, connection_config, client_id, client_secret
        )
        try:
            return grants.client_credentials(
                http,
                request,
                {"client_id": client_id, "client_secret": client_secret},
                sent_at=runtime.clock.now(),
                default_lifetime=float(
                    spec.default_token_lifetime_seconds
                    or runtime.settings.default_token_lifetime_seconds
                ),
            )
        except grants.GrantError as exc:
            raise DirectError(
                400,
                "invalid_credentials",
                f"The provider refused the client credentials: {exc.error_code}",
            ) from None

    return build
