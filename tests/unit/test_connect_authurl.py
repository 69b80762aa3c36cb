"""Authorization URLs from real catalog entries: order, scopes, separators, interpolation, PKCE.

The expected URLs are written out in full (Nango's parameter order: response_type, client_id,
redirect_uri, scope, state, the entry's authorization_params, the PKCE pair, the request's own
parameters). ``scope_separator`` and ``disable_pkce`` are Nango fields that the built-in file
does not use today; they are exercised through an operator's providers file overriding entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from freshtoken.connect import authurl
from freshtoken.providers.catalog import ProviderCatalog, load_catalog

REDIRECT = "https://ft.example.com/oauth/callback"
STATE = "st4te"
VERIFIER = "v" * 64
CHALLENGE = authurl.code_challenge(VERIFIER)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> ProviderCatalog:
    """The built-in catalog plus two entries overridden with Nango's scope/PKCE fields."""
    extra = tmp_path_factory.mktemp("catalog") / "providers.yaml"
    extra.write_text(
        """
linear:
    auth_mode: OAUTH2
    authorization_url: https://linear.app/oauth/authorize
    token_url: https://api.linear.app/oauth/token
    scope_separator: ","
stripe:
    auth_mode: OAUTH2
    authorization_url: https://connect.stripe.com/oauth/authorize
    token_url: https://connect.stripe.com/oauth/token
    disable_pkce: true
""",
        encoding="utf-8",
    )
    return load_catalog(extra)


def build(
    catalog: ProviderCatalog,
    name: str,
    *,
    scopes: str | None = "a,b",
    config: dict[str, Any] | None = None,
    extra: dict[str, str | None] | None = None,
) -> tuple[str, list[tuple[str, str]]]:
    """The URL's base and its query pairs in order."""
    spec = catalog.get(name)
    assert spec is not None
    url = authurl.authorization_url(
        authurl.AuthorizationRequest(
            spec=spec,
            client_id="cid",
            redirect_uri=REDIRECT,
            state=STATE,
            scopes=scopes,
            connection_config=config or {},
            code_verifier=None if authurl.disables_pkce(spec) else VERIFIER,
            extra_params=extra or {},
        )
    )
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qsl(
        parts.query, keep_blank_values=True
    )


HEAD = [
    ("response_type", "code"),
    ("client_id", "cid"),
    ("redirect_uri", REDIRECT),
]
PKCE = [("code_challenge", CHALLENGE), ("code_challenge_method", "S256")]


@pytest.mark.parametrize(
    ("name", "config", "base", "middle"),
    [
        ("github", {}, "https://github.com/login/oauth/authorize", []),
        ("airtable", {}, "https://airtable.com/oauth2/v1/authorize", []),
        (
            "atlassian",
            {},
            "https://auth.atlassian.com/authorize",
            [("audience", "api.atlassian.com"), ("prompt", "consent")],
        ),
        (
            "google",
            {},
            "https://accounts.google.com/o/oauth2/v2/auth",
            [("response_type", "code"), ("access_type", "offline"), ("prompt", "consent")],
        ),
        (
            "microsoft",
            {},
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            [("response_type", "code"), ("response_mode", "query"), ("prompt", "consent")],
        ),
        (
            "dropbox",
            {},
            "https://www.dropbox.com/oauth2/authorize",
            [("token_access_type", "offline")],
        ),
        (
            "notion",
            {},
            "https://api.notion.com/v1/oauth/authorize",
            [("response_type", "code"), ("owner", "user")],
        ),
        (
            "shopify",
            {"subdomain": "acme"},
            "https://acme.myshopify.com/admin/oauth/authorize",
            [],
        ),
        (
            "zendesk",
            {"subdomain": "help-desk"},
            "https://help-desk.zendesk.com/oauth/authorizations/new",
            [],
        ),
        (
            "exact-online",
            {"extension": "nl"},
            "https://start.exactonline.nl/api/oauth2/auth",
            [("response_type", "code")],
        ),
        (
            "zoho-crm",
            {"extension": "eu"},
            "https://accounts.zoho.eu/oauth/v2/auth",
            [("response_type", "code"), ("access_type", "offline"), ("prompt", "consent")],
        ),
        ("okta", {"subdomain": "dev-1"}, "https://dev-1.okta.com/oauth2/v1/authorize", []),
        ("twitter-v2", {}, "https://twitter.com/i/oauth2/authorize", []),
    ],
)
def test_real_entries_build_nangos_url(
    catalog: ProviderCatalog,
    name: str,
    config: dict[str, Any],
    base: str,
    middle: list[tuple[str, str]],
) -> None:
    """Each entry's URL: its interpolated endpoint, then Nango's parameters in Nango's order."""
    got_base, query = build(catalog, name, config=config)
    assert got_base == base
    # A catalog parameter repeating a head parameter (response_type) replaces it in place.
    expected = dict(HEAD)
    expected.update({"scope": "a b", "state": STATE})
    for key, value in middle:
        expected[key] = value
    expected.update(PKCE)
    assert query == list(expected.items())


def test_scope_separator_and_empty_scopes(catalog: ProviderCatalog) -> None:
    """``scope_separator`` joins the comma list; no scopes still sends ``scope=``."""
    _, query = build(catalog, "linear", scopes="read, write ,issues:create")
    assert dict(query)["scope"] == "read,write,issues:create"
    _, query = build(catalog, "github", scopes=None)
    assert ("scope", "") in query


def test_disable_pkce_drops_the_challenge(catalog: ProviderCatalog) -> None:
    """An entry with ``disable_pkce`` gets no code_challenge; others always do."""
    _, query = build(catalog, "stripe")
    assert "code_challenge" not in dict(query)
    _, query = build(catalog, "github")
    assert dict(query)["code_challenge_method"] == "S256"


def test_missing_interpolation_names_the_key(catalog: ProviderCatalog) -> None:
    """An unresolved ``${connectionConfig.x}`` fails before any URL exists."""
    spec = catalog.get("shopify")
    assert spec is not None
    with pytest.raises(authurl.MissingConnectionConfig) as info:
        authurl.check_templates(spec, {})
    assert info.value.missing == ["subdomain"]
    authurl.check_templates(spec, {"subdomain": "acme"})


def test_interpolated_values_cannot_change_the_host(catalog: ProviderCatalog) -> None:
    """A subdomain holding URL syntax is refused (url_param_err), never spliced into the host."""
    with pytest.raises(authurl.MissingConnectionConfig):
        build(catalog, "shopify", config={"subdomain": "evil.example/x?"})
    base, _ = build(catalog, "shopify", config={"subdomain": "acme-1"})
    assert urlsplit(base).hostname == "acme-1.myshopify.com"


def test_request_params_win_but_never_over_the_flow_parameters(catalog: ProviderCatalog) -> None:
    """Request params add or replace provider params (None removes); state/redirect/PKCE stay."""
    _, query = build(
        catalog,
        "google",
        extra={
            "prompt": "select_account",
            "access_type": None,
            "login_hint": "a@b.c",
            "redirect_uri": "https://evil.example/",
            "state": "forged",
            "code_challenge": "forged",
        },
    )
    params = dict(query)
    assert params["prompt"] == "select_account"
    assert "access_type" not in params
    assert params["login_hint"] == "a@b.c"
    assert params["redirect_uri"] == REDIRECT
    assert params["state"] == STATE
    assert params["code_challenge"] == CHALLENGE


def test_pkce_challenge_matches_rfc_7636_appendix_b() -> None:
    """The S256 challenge of RFC 7636's example verifier is the RFC's value."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert authurl.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert 43 <= len(authurl.new_code_verifier()) <= 128


def test_token_response_metadata_keeps_last_segment_strings_and_bools() -> None:
    """Nango's token_response_metadata: dot paths, last segment as key, strings/bools only."""
    from freshtoken.connect.flow import token_response_metadata

    body = {"team": {"id": "T1", "size": 3}, "enterprise": False, "instance_url": "https://x"}
    got = token_response_metadata(
        ("team.id", "team.size", "enterprise", "instance_url", "no"), body
    )
    assert got == {"id": "T1", "enterprise": False, "instance_url": "https://x"}


def test_token_params_are_interpolated_for_the_exchange(
    catalog: ProviderCatalog, tmp_path: Path
) -> None:
    """``${connectionConfig.x}`` in token_params is filled; entries without any are unchanged."""
    github = catalog.get("github")
    assert github is not None
    assert authurl.with_interpolated_token_params(github, {}) is github
    extra = tmp_path / "providers.yaml"
    extra.write_text(
        "x:\n    auth_mode: OAUTH2\n    token_url: https://t.example/token\n"
        "    token_params:\n        audience: ${connectionConfig.aud}\n",
        encoding="utf-8",
    )
    spec = load_catalog(extra).get("x")
    assert spec is not None
    filled = authurl.with_interpolated_token_params(spec, {"aud": "api://one"})
    assert dict(filled.token_params) == {"audience": "api://one"}
    with pytest.raises(authurl.MissingConnectionConfig):
        authurl.with_interpolated_token_params(spec, {})
