"""Importing connections of Nango's other auth modes (TBA, APP, CUSTOM, NONE, JWT, TWO_STEP,
BILL, SIGNATURE): the stored credential shapes, and minting a GitHub App token on import.

Shapes are Nango's (``packages/types/lib/auth/api.ts``); APP and CUSTOM imports carry only
``app_id`` and ``installation_id``, as in Nango, and the installation token is minted right away
through the refresh core (Nango's ``postConnection.ts`` calls ``githubAppClient`` the same way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from freshtoken.api.errors import ApiError, invalid_body
from freshtoken.api.schemas import (
    BillCredentialsIn,
    DynamicCredentialsIn,
    GithubAppCredentialsIn,
    NoneCredentialsIn,
    SignatureCredentialsIn,
    TbaCredentialsIn,
)
from freshtoken.store.models import Connection

if TYPE_CHECKING:
    from freshtoken.runtime import Runtime

MINTED_ON_IMPORT = frozenset({"APP", "CUSTOM"})


def authmode_credentials(creds: Any) -> dict[str, Any]:
    """The stored credentials dict for an import of one of the non-OAuth auth modes."""
    if isinstance(creds, TbaCredentialsIn):
        out: dict[str, Any] = {
            "type": "TBA",
            "token_id": creds.token_id,
            "token_secret": creds.token_secret,
        }
        if creds.config_override is not None:
            out["config_override"] = creds.config_override.model_dump(exclude_none=True)
        return out
    if isinstance(creds, GithubAppCredentialsIn):
        # No token yet: minted right after the row is written (see mint_on_import).
        if creds.type == "APP":
            return {"type": "APP", "access_token": None, "expires_at": None, "raw": {}}
        return {"type": "CUSTOM", "app": None, "user": None, "raw": {}}
    if isinstance(creds, NoneCredentialsIn):
        return {"type": "NONE"}
    if isinstance(creds, DynamicCredentialsIn):
        fields = creds.model_dump(exclude_none=True)
        fields.setdefault("raw", {})
        return fields
    if isinstance(creds, BillCredentialsIn | SignatureCredentialsIn):
        return creds.model_dump(exclude_none=True)
    raise TypeError(f"unexpected credentials model {type(creds).__name__}")


def import_connection_config(creds: Any, connection_config: dict[str, Any] | None) -> Any:
    """The connection_config to store; checks Nango's import preconditions.

    APP/CUSTOM: ``app_id`` and ``installation_id`` go into connection_config, where the catalog's
    ``token_url`` template (``.../installations/${connectionConfig.installation_id}/...``) reads
    them. TBA requires ``connection_config.accountId`` (Nango's rule).
    """
    if isinstance(creds, GithubAppCredentialsIn):
        return {
            **(connection_config or {}),
            "app_id": creds.app_id,
            "installation_id": creds.installation_id,
        }
    if isinstance(creds, TbaCredentialsIn) and not (connection_config or {}).get("accountId"):
        raise invalid_body(
            "Missing accountId in connection_config. This is required to create a TBA connection.",
            ["connection_config", "accountId"],
        )
    return connection_config


def mint_on_import(runtime: Runtime, conn: Connection) -> tuple[Connection, dict[str, Any]]:
    """Mint the installation token of a just-imported APP/CUSTOM connection via the core."""
    service = runtime.refresh_service
    if service is None:
        with runtime.store() as store:
            return conn, store.credentials(conn)
    result = service.refresh(conn.id, trigger="manual", force=True)
    if not result.ok or result.connection is None:
        code = result.error.error_code if result.error is not None else "unknown"
        raise ApiError(500, "server_error", f"GitHub App credentials creation failed ({code})")
    return result.connection, result.credentials
