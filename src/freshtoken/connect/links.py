"""Connect links for people without a frontend, and the demo's connection made through the flow.

``freshtoken connect <integration> <connection_id>`` creates a connect session bound to that
integration and connection id and prints ``<public_url>/oauth/connect/<key>?connect_session_token=
...``: opening it runs the authorization flow and stores (or re-authorises) the connection.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx

from freshtoken.connect import flow, sessions
from freshtoken.runtime import Runtime


class LinkError(Exception):
    """The link cannot be made (unknown integration, not an OAuth 2 integration)."""


def connect_link(
    runtime: Runtime,
    provider_config_key: str,
    connection_id: str,
    connection_config: Mapping[str, Any] | None = None,
) -> tuple[str, dt.datetime]:
    """A link that creates (or re-authorises) one connection; returns (link, expires_at)."""
    with runtime.store() as store:
        integration = store.get_integration(provider_config_key)
        if integration is None:
            raise LinkError(f"no integration with unique key {provider_config_key!r}")
        spec = runtime.catalog.get(integration.provider)
        if spec is None or spec.auth_mode != "OAUTH2":
            mode = spec.auth_mode if spec is not None else "unknown"
            raise LinkError(f"integration {provider_config_key!r} is {mode}, not OAUTH2")
        defaults = (
            {provider_config_key: {"connection_config": dict(connection_config)}}
            if connection_config
            else None
        )
        row, token = sessions.create_session(
            store.session,
            sessions.SessionSpec(
                allowed_integrations=[provider_config_key],
                integrations_config_defaults=defaults,
                connection_id=connection_id,
                provider_config_key=provider_config_key,
            ),
            now=runtime.clock.now(),
            ttl_seconds=runtime.settings.connect_session_ttl_seconds,
        )
        expires_at = row.expires_at
    query = urllib.parse.urlencode({"connect_session_token": token})
    key = urllib.parse.quote(provider_config_key, safe="")
    return f"{runtime.settings.resolved_public_url}/oauth/connect/{key}?{query}", expires_at


def connect_headless(
    runtime: Runtime,
    provider_config_key: str,
    connection_id: str,
    http: httpx.Client,
    connection_config: Mapping[str, Any] | None = None,
) -> flow.Finished:
    """Run the whole flow without a browser against an auto-consenting provider (the demo).

    Same code path as a browser: the session, ``flow.start``, the provider's ``/authorize``
    redirect, ``flow.callback`` with the code exchange.
    """
    link, _ = connect_link(runtime, provider_config_key, connection_id, connection_config)
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["connect_session_token"][0]
    with runtime.store() as store:
        session = sessions.find_session(store.session, token, now=runtime.clock.now())
        assert session is not None
        store.session.expunge(session)
    started = flow.start(runtime, session, flow.StartRequest(provider_config_key))
    consent = http.get(started.url)
    location = consent.headers.get("location", "")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    return flow.callback(runtime, query, http)
