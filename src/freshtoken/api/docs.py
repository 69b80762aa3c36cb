"""The API docs pages (/docs Swagger UI, /redoc ReDoc) served with their assets from the package.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so /docs is a blank page wherever the
browser cannot reach one (air-gapped hosts, strict egress: where a secrets service often runs).
The JavaScript and CSS come from ``fastapi-offline`` instead (a maintained PyPI package that
bundles Swagger UI and ReDoc), mounted under :data:`ASSETS_URL`; the pages name no other host.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS_URL = "/docs-assets"

# Belt and braces: even a hard-coded URL inside a bundle (ReDoc's "powered by" logo is one)
# cannot make the browser contact another host from these pages.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'"
)


def assets_directory() -> str:
    """The directory with swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon."""
    return str(resources.files("fastapi_offline") / "static")


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` without any external request.

    The app must be created with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off);
    both pages read the schema from ``app.openapi_url``.
    """
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="docs-assets")

    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # Swagger UI would otherwise ask validator.swagger.io about the schema.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API reference",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
