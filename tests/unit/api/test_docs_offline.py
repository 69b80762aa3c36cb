"""/docs and /redoc work offline: assets come from the package, checked in headless Chromium."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.browser import chromium, serve_app

from freshtoken.api.docs import ASSETS_URL


def test_docs_pages_name_no_other_host(anon_client: TestClient) -> None:
    """The pages reference only this server's paths, and every asset they name is served."""
    for page in ("/docs", "/redoc"):
        response = anon_client.get(page)
        assert response.status_code == 200
        html = response.text
        assert not re.search(r"""(?:src|href|url)\s*[=:(]\s*["']?(?:https?:)?//""", html), html
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html
        for asset in re.findall(re.escape(ASSETS_URL) + r"/[\w.\-]+", html):
            served = anon_client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000, asset


def _watch(page: Any, base: str) -> tuple[list[str], list[str]]:
    """Abort and record every request that leaves ``base``; record page errors."""
    external: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base + "/"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A request the page's CSP blocks never reaches the network (nor the route above): record
    # those too, so the CSP cannot hide a dependency on another host.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return external, errors


def test_docs_render_the_api_in_chromium_without_external_requests(app: FastAPI) -> None:
    """Swagger UI and ReDoc render freshtoken's operations with no request to another host."""
    with serve_app(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        external, errors = _watch(page, base)

        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))"
        )
        assert "/connections" in paths and "/connections/{connectionId}" in paths, paths
        assert "freshtoken" in page.inner_text(".info .title")

        assert errors == [], errors  # Swagger UI: not even a blocked attempt

        page.goto(f"{base}/redoc")
        page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
        operations = page.eval_on_selector_all(
            "[data-section-id^='operation/']", "els => els.length"
        )
        assert operations >= len([p for p in paths if p]), operations
        assert "freshtoken" in page.inner_text("h1")

        assert external == [], external
        # ReDoc's bundle always renders a "by Redocly" logo from its CDN; the page's CSP blocks
        # it before any request is made (the alt text shows instead). Nothing else is tried.
        blocked = [e for e in errors if "cdn.redoc.ly/redoc/logo-mini.svg" not in e]
        assert blocked == [], errors
