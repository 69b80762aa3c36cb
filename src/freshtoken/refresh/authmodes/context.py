"""What an auth-mode grant gets from the refresh core (secrets stay in memory only)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from freshtoken.providers.catalog import ProviderSpec
from freshtoken.refresh.http import ProviderHttp


@dataclass(frozen=True)
class AuthModeContext:
    """One refresh of one connection: its entry, config, credentials and integration secrets."""

    # The core passes its ProviderHttp: grants.send then goes through the one choke point.
    http: httpx.Client | ProviderHttp
    spec: ProviderSpec
    connection_config: Mapping[str, Any]
    credentials: Mapping[str, Any]
    sent_at: dt.datetime
    default_lifetime: float
    client_id: str | None = None
    client_secret: str | None = None
    # The integration's GitHub App: {app_id, app_link, private_key} (Nango's ``custom``).
    integration_custom: Mapping[str, Any] = field(default_factory=dict)
