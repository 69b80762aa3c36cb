"""FRESHTOKEN_PUBLIC_URL: the default, and https required in production except on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.support import make_settings


def test_default_is_where_the_api_listens(tmp_path: Path) -> None:
    """Unset: http://<api_host>:<api_port> (IPv6 bracketed); set: used without a trailing slash."""
    assert make_settings(tmp_path).resolved_public_url == "http://127.0.0.1:3003"
    v6 = make_settings(tmp_path, api_host="::1", api_port=8080)
    assert v6.resolved_public_url == "http://[::1]:8080"
    given = make_settings(tmp_path, public_url="https://ft.example.com/")
    assert given.resolved_public_url == "https://ft.example.com"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3003", "http://localhost:8000", "http://[::1]:3003", "https://x.io"]
)
def test_production_allows_https_and_loopback_http(tmp_path: Path, url: str) -> None:
    """https anywhere, plain http only on loopback hosts."""
    assert make_settings(tmp_path, env="production", public_url=url).public_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://ft.example.com",
        "http://10.0.0.5:3003",
        "ftp://ft.example.com",
        "https://ft.example.com/?next=x",
        "https://user:pw@ft.example.com",
        "ft.example.com",
    ],
)
def test_production_refuses_the_rest(tmp_path: Path, url: str) -> None:
    """Plain http to a non-loopback host, other schemes, queries and credentials are refused."""
    with pytest.raises(ValidationError, match="FRESHTOKEN_PUBLIC_URL"):
        make_settings(tmp_path, env="production", public_url=url)


def test_development_allows_plain_http_anywhere(tmp_path: Path) -> None:
    """Development does not insist on https (a LAN demo), but still wants a well-formed URL."""
    assert make_settings(tmp_path, public_url="http://10.0.0.5:3003").public_url
    with pytest.raises(ValidationError):
        make_settings(tmp_path, public_url="not a url")
