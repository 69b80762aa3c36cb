"""Request and response models of the HTTP API (Nango's shapes and validation rules).

Request models mirror Nango's zod ``.strict()`` schemas: ``extra="forbid"``, so an unknown field
or query parameter is a 400, never silently ignored. Response models exist for ``/openapi.json``;
handlers build plain dicts (see :mod:`freshtoken.api.serialize`) and serialise them with orjson.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
)

from freshtoken.store.credentials import iso, parse_datetime

# Nango's providerConfigKeySchema and connectionIdSchema.
PROVIDER_CONFIG_KEY_PATTERN = r"^[a-zA-Z0-9~:.@ _-]+$"
CONNECTION_ID_PATTERN = r"""^[a-zA-Z0-9,.;:=+~\[\]|@${}"'\\/_ -]+$"""

ProviderConfigKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=PROVIDER_CONFIG_KEY_PATTERN)
]
ConnectionIdStr = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)
]
ShortText = Annotated[str, StringConstraints(max_length=255)]
NonEmptyText = Annotated[str, StringConstraints(min_length=1)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TagValue = Annotated[str, StringConstraints(max_length=255)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=64)]


def _bool_string(value: object) -> object:
    """Accept Nango's boolean query strings ``"true"`` / ``"false"`` (and real booleans)."""
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    raise ValueError("must be 'true' or 'false'")


BoolString = Annotated[bool, BeforeValidator(_bool_string)]


# Epoch values above this are milliseconds (as in store.credentials); the cap is 9999-12-31.
_MAX_EPOCH_MS = 253_402_300_799_999
# Expiries before the epoch are refused: they are mistakes, and leave no room for the refresh
# engine's date arithmetic near datetime.min.
_MIN_EXPIRY = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EXPIRY_STRING_PATTERN = r"^(19[7-9][0-9]|[2-9][0-9]{3})-"


def _normalise_expiry(value: str | int | float) -> str:
    """Parse an ISO 8601 date-time, or epoch seconds/milliseconds (a number), into ISO."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        # A number in a string is ambiguous (Nango's Date coercion rejects it): send a number.
        raise ValueError("must be an ISO 8601 date-time string or a number")
    try:
        parsed = parse_datetime(value)
        text = iso(parsed) if parsed is not None and parsed >= _MIN_EXPIRY else None
    except OverflowError:  # an offset pushing 9999-12-31 past datetime.max
        text = None
    if text is None:
        raise ValueError(
            "must be an ISO 8601 date-time or epoch seconds or milliseconds, from 1970 to 9999"
        )
    return text


EpochNumber = (
    Annotated[int, Field(strict=True, gt=0, le=_MAX_EPOCH_MS)]
    | Annotated[float, Field(strict=True, gt=0, le=_MAX_EPOCH_MS)]
)
IsoDateTime = Annotated[
    StrictStr,
    StringConstraints(max_length=64),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "maxLength": 64,
            "pattern": EXPIRY_STRING_PATTERN,
        }
    ),
]
ExpiresAt = Annotated[IsoDateTime | EpochNumber, AfterValidator(_normalise_expiry)]

# "" clears an override; otherwise an absolute http(s) URL without spaces or control characters
# (an explicit ASCII class: ``\s`` differs between JSON Schema's and pydantic's regex engines).
WEBHOOK_URL_PATTERN = r"^(https?://[^\x00-\x20]+)?$"
WebhookUrl = Annotated[str, StringConstraints(max_length=2048, pattern=WEBHOOK_URL_PATTERN)]


class StrictModel(BaseModel):
    """A model that rejects unknown fields (Nango's zod ``.strict()``)."""

    model_config = ConfigDict(extra="forbid")


# -- query parameters ---------------------------------------------------------------------------


class GetConnectionQuery(StrictModel):
    """Query of ``GET /connection(s)/{connectionId}``."""

    provider_config_key: ProviderConfigKey
    refresh_token: BoolString = False
    force_refresh: BoolString = False
    refresh_github_app_jwt_token: BoolString = False


class ProviderConfigKeyQuery(StrictModel):
    """A query made of ``provider_config_key`` alone (PATCH and DELETE of a connection)."""

    provider_config_key: ProviderConfigKey


class GetIntegrationQuery(StrictModel):
    """Query of ``GET /integrations/{uniqueKey}``."""

    include: list[Literal["webhook", "credentials"]] = Field(default_factory=list)


# -- connection bodies --------------------------------------------------------------------------


class EndUserOrganizationIn(StrictModel):
    """The organisation an end user belongs to."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    display_name: ShortText | None = None


class EndUserIn(StrictModel):
    """The end user a connection belongs to."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    email: ShortText | None = None
    display_name: ShortText | None = None
    tags: Tags | None = None
    organization: EndUserOrganizationIn | None = None


class OAuth2ConfigOverride(StrictModel):
    """Per-connection OAuth client override."""

    client_id: str | None = None
    client_secret: str | None = None


class OAuth2CredentialsIn(StrictModel):
    """Imported OAuth 2.0 (authorization code) credentials."""

    type: Literal["OAUTH2"]
    access_token: NonEmptyText
    refresh_token: NonEmptyText | None = None
    expires_at: ExpiresAt | None = None
    raw: dict[str, Any] | None = None
    config_override: OAuth2ConfigOverride | None = None


class OAuth2ClientCredentialsIn(StrictModel):
    """Imported OAuth 2.0 client-credentials credentials."""

    type: Literal["OAUTH2_CC"]
    token: NonEmptyText
    client_id: NonEmptyText
    client_secret: NonEmptyText
    # Nango: a PEM certificate/key for mTLS, or a JWK private key for private_key_jwt.
    client_certificate: Annotated[str, StringConstraints(min_length=1, max_length=10000)] | None = (
        None
    )
    client_private_key: Annotated[str, StringConstraints(min_length=1, max_length=10000)] | None = (
        None
    )
    expires_at: ExpiresAt | None = None
    raw: dict[str, Any] | None = None


class OAuth1CredentialsIn(StrictModel):
    """Imported OAuth 1.0a credentials."""

    type: Literal["OAUTH1"]
    oauth_token: NonEmptyText
    oauth_token_secret: NonEmptyText


class ApiKeyCredentialsIn(StrictModel):
    """Imported API key."""

    type: Literal["API_KEY"]
    apiKey: NonEmptyText  # Nango's wire name


class BasicCredentialsIn(StrictModel):
    """Imported HTTP Basic credentials (either part may be empty, as in Nango)."""

    type: Literal["BASIC"]
    username: str
    password: str


class TbaCredentialsIn(StrictModel):
    """Imported NetSuite token-based-auth credentials (needs ``connection_config.accountId``)."""

    type: Literal["TBA"]
    token_id: NonEmptyText
    token_secret: NonEmptyText
    config_override: OAuth2ConfigOverride | None = None


class GithubAppCredentialsIn(StrictModel):
    """An APP or CUSTOM (GitHub App) import: freshtoken mints the installation token itself."""

    type: Literal["APP", "CUSTOM"]
    app_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    installation_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]


class NoneCredentialsIn(StrictModel):
    """An unauthenticated connection."""

    type: Literal["NONE"]


class DynamicCredentialsIn(BaseModel):
    """JWT and TWO_STEP credentials: Nango's fixed fields plus the provider's own keys.

    freshtoken extension: Nango's ``POST /connections`` does not import these types; the shape is
    Nango's stored one (``packages/types/lib/auth/api.ts``), so what is imported reads back alike.
    """

    model_config = ConfigDict(extra="allow")

    type: Literal["JWT", "TWO_STEP"]
    token: str | None = None
    refresh_token: str | None = None
    expires_at: ExpiresAt | None = None
    raw: dict[str, Any] | None = None


class BillCredentialsIn(StrictModel):
    """BILL credentials (freshtoken extension to Nango's import; Nango's stored shape)."""

    type: Literal["BILL"]
    username: NonEmptyText
    password: NonEmptyText
    organization_id: NonEmptyText
    dev_key: NonEmptyText
    session_id: str | None = None
    user_id: str | None = None
    expires_at: ExpiresAt | None = None


class SignatureCredentialsIn(StrictModel):
    """SIGNATURE (WSSE) credentials (freshtoken extension to Nango's import)."""

    type: Literal["SIGNATURE"]
    username: NonEmptyText
    password: NonEmptyText
    token: str | None = None
    expires_at: ExpiresAt | None = None


CredentialsIn = Annotated[
    OAuth2CredentialsIn
    | OAuth2ClientCredentialsIn
    | OAuth1CredentialsIn
    | ApiKeyCredentialsIn
    | BasicCredentialsIn
    | TbaCredentialsIn
    | GithubAppCredentialsIn
    | NoneCredentialsIn
    | DynamicCredentialsIn
    | BillCredentialsIn
    | SignatureCredentialsIn,
    Field(discriminator="type"),
]


class PostConnectionBody(StrictModel):
    """Body of ``POST /connections`` (import or override a connection)."""

    provider_config_key: ProviderConfigKey
    connection_id: ConnectionIdStr | None = None
    metadata: dict[str, Any] | None = None
    connection_config: dict[str, Any] | None = None
    webhook_url_override: WebhookUrl | None = None
    end_user: EndUserIn | None = None
    tags: Tags | None = None
    credentials: CredentialsIn


class PatchConnectionBody(StrictModel):
    """Body of ``PATCH /connections/{connectionId}``."""

    end_user: EndUserIn | None = None
    tags: Tags | None = None
    webhook_url_override: WebhookUrl | None = None


class MetadataBody(StrictModel):
    """Body of ``POST``/``PATCH /connections/metadata``."""

    connection_id: ConnectionIdStr | Annotated[list[ConnectionIdStr], Field(min_length=1)]
    provider_config_key: ProviderConfigKey
    metadata: dict[str, Any]


# -- integration bodies -------------------------------------------------------------------------


class OAuthIntegrationCredentialsIn(StrictModel):
    """OAuth client credentials of an integration."""

    type: Literal["OAUTH1", "OAUTH2", "OAUTH2_CC", "TBA"]
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    scopes: Annotated[str, StringConstraints(max_length=8192)] | None = None


# Nango requires a PEM private key (packages/server/lib/helpers/validation.ts privateKeySchema
# wants PKCS#1 "RSA PRIVATE KEY"); PKCS#8 "PRIVATE KEY" is accepted here too.
PrivateKeyPem = Annotated[
    str,
    StringConstraints(
        min_length=64,
        max_length=16384,
        pattern=(
            r"^-----BEGIN (RSA )?PRIVATE KEY-----[A-Za-z0-9+/=\r\n ]+"
            r"-----END (RSA )?PRIVATE KEY-----\s*$"
        ),
    ),
]


class AppIntegrationCredentialsIn(StrictModel):
    """A GitHub App integration: the app id, its public link and its private key."""

    type: Literal["APP"]
    app_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    app_link: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    private_key: PrivateKeyPem


class CustomIntegrationCredentialsIn(StrictModel):
    """A GitHub App with user OAuth (Nango's CUSTOM): OAuth client plus the app."""

    type: Literal["CUSTOM"]
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    app_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    app_link: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    private_key: PrivateKeyPem


IntegrationCredentialsIn = Annotated[
    OAuthIntegrationCredentialsIn | AppIntegrationCredentialsIn | CustomIntegrationCredentialsIn,
    Field(discriminator="type"),
]


class PostIntegrationBody(StrictModel):
    """Body of ``POST /integrations``."""

    provider: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    unique_key: ProviderConfigKey
    display_name: ShortText | None = None
    credentials: IntegrationCredentialsIn | None = None


class PatchIntegrationBody(StrictModel):
    """Body of ``PATCH /integrations/{uniqueKey}``."""

    unique_key: ProviderConfigKey | None = None
    display_name: ShortText | None = None
    credentials: IntegrationCredentialsIn | None = None


# -- responses ----------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    """One validation failure: a machine code, a message and where in the input it was."""

    code: str
    message: str
    path: list[str | int]


class ErrorBody(BaseModel):
    """The ``error`` object of every error response."""

    code: str
    message: str | None = None
    payload: dict[str, Any] | None = None
    errors: list[ErrorItem] | None = None


class ErrorEnvelope(BaseModel):
    """Every error response: ``{"error": {...}}``."""

    error: ErrorBody


class ConnectionErrorOut(BaseModel):
    """An active error of a connection (``type`` ``auth`` for a failed refresh)."""

    type: str
    log_id: str


class EndUserOrganizationOut(BaseModel):
    """An end user's organisation."""

    id: str
    display_name: str | None = None


class EndUserOut(BaseModel):
    """The end user a connection belongs to."""

    id: str
    email: str | None = None
    display_name: str | None = None
    tags: dict[str, str] | None = None
    organization: EndUserOrganizationOut | None = None


class ConnectionFullOut(BaseModel):
    """Nango's ``ApiPublicConnectionFull``: a connection with its credentials."""

    id: int
    connection_id: str
    provider_config_key: str
    provider: str
    errors: list[ConnectionErrorOut]
    end_user: EndUserOut | None
    tags: dict[str, str]
    metadata: dict[str, Any] | None
    connection_config: dict[str, Any]
    webhook_url_override: str | None
    created_at: str
    updated_at: str
    last_fetched_at: str | None
    credentials: dict[str, Any]


class ConnectionListItemOut(BaseModel):
    """A connection in a list (no credentials)."""

    id: int
    connection_id: str
    provider_config_key: str
    provider: str
    errors: list[ConnectionErrorOut]
    end_user: EndUserOut | None
    tags: dict[str, str]
    metadata: dict[str, Any] | None
    created: str


class ConnectionListOut(BaseModel):
    """Response of ``GET /connections``."""

    connections: list[ConnectionListItemOut]


class SuccessOut(BaseModel):
    """``{"success": true}``."""

    success: bool


class MetadataEchoOut(BaseModel):
    """The metadata request body, echoed back."""

    connection_id: str | list[str]
    provider_config_key: str
    metadata: dict[str, Any]


class IntegrationCredentialsOut(BaseModel):
    """An integration's OAuth client (``include=credentials`` only); APP/CUSTOM add the app."""

    type: str | None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: str | None = None
    app_id: str | None = None
    app_link: str | None = None
    private_key: str | None = None


class IntegrationOut(BaseModel):
    """A public integration."""

    unique_key: str
    provider: str
    display_name: str
    logo: str | None
    forward_webhooks: bool
    created_at: str
    updated_at: str
    credentials: IntegrationCredentialsOut | None = None
    webhook_url: str | None = None


class IntegrationDataOut(BaseModel):
    """``{"data": integration}``."""

    data: IntegrationOut


class IntegrationListOut(BaseModel):
    """``{"data": [integration, ...]}``."""

    data: list[IntegrationOut]


class ProviderDataOut(BaseModel):
    """``{"data": provider}``: the catalog entry as written in the providers file."""

    data: dict[str, Any]


class ProviderListOut(BaseModel):
    """``{"data": [provider, ...]}``."""

    data: list[dict[str, Any]]


class HealthOut(BaseModel):
    """``{"status": "ok"}``."""

    status: str
