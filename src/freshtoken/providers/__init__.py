"""Provider catalog: per-provider OAuth endpoints, auth style and refresh quirks."""

from freshtoken.providers.catalog import (
    AUTH_MODES,
    REFRESHABLE_MODES,
    ProviderCatalog,
    ProviderCatalogError,
    ProviderSpec,
    UrlTemplateError,
    load_catalog,
    render_url,
)

__all__ = [
    "AUTH_MODES",
    "REFRESHABLE_MODES",
    "ProviderCatalog",
    "ProviderCatalogError",
    "ProviderSpec",
    "UrlTemplateError",
    "load_catalog",
    "render_url",
]
