"""``refresh_github_app_jwt_token=true`` on the read API, as Nango serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from freshtoken.refresh.authmodes.github_app import fresh_jwt_credentials
from freshtoken.refresh.grants import GrantError
from freshtoken.store.models import Connection

if TYPE_CHECKING:
    from freshtoken.runtime import Runtime

APP_TYPES = frozenset({"APP", "CUSTOM"})


def with_fresh_app_jwt(
    runtime: Runtime, conn: Connection, credentials: dict[str, Any]
) -> dict[str, Any]:
    """The credentials to serve with a newly minted GitHub App JWT in ``jwtToken``.

    Nango's buffer (15 min) exceeds the JWT's life (10 min), so with the flag set Nango always
    mints one; freshtoken does the same. The JWT is not stored: it is derived from the app key
    and stored-write traffic on every flagged read would only contend with refreshes. A key that
    cannot sign leaves the credentials as they are.
    """
    service = runtime.refresh_service
    spec = runtime.catalog.get(conn.provider)
    if service is None or spec is None or conn.credentials_type not in APP_TYPES:
        return credentials
    now = runtime.clock.now()
    context = service.authmode_context(conn, credentials, spec, now, 3600.0)
    try:
        return fresh_jwt_credentials(context, credentials, now)
    except GrantError:
        return credentials
