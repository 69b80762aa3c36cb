"""Tests for the built-in provider catalog, extra catalog files and URL templating."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from freshtoken.providers import (
    AUTH_MODES,
    REFRESHABLE_MODES,
    ProviderCatalog,
    ProviderCatalogError,
    UrlTemplateError,
    load_catalog,
    render_url,
)

# Every name the brief requires; all are OAUTH2 except freshdesk, whose API
# only supports API-key Basic auth.
REQUIRED_OAUTH2 = (
    "github",
    "google",
    "google-calendar",
    "google-drive",
    "gmail",
    "microsoft",
    "outlook",
    "salesforce",
    "hubspot",
    "slack",
    "zoom",
    "notion",
    "atlassian",
    "jira",
    "confluence",
    "xero",
    "quickbooks",
    "shopify",
    "zendesk",
    "intercom",
    "asana",
    "linear",
    "dropbox",
    "box",
    "airtable",
    "gitlab",
    "bitbucket",
    "discord",
    "linkedin",
    "stripe-app",
    "pipedrive",
    "docusign",
    "calendly",
    "monday",
    "clickup",
    "figma",
    "spotify",
    "exact-online",
)
GENERIC = {"oauth2": "OAUTH2", "oauth2-cc": "OAUTH2_CC", "api-key": "API_KEY", "basic": "BASIC"}


def write(tmp_path: Path, text: str, name: str = "providers.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- the built-in catalog ----------------------------------------------------


def test_builtin_catalog_ships_at_least_45_providers() -> None:
    """The packaged catalog has at least 45 entries."""
    assert len(load_catalog()) >= 45


@pytest.mark.parametrize("name", REQUIRED_OAUTH2)
def test_required_oauth2_provider_has_https_token_url(name: str) -> None:
    """Each required OAuth provider is present as OAUTH2 with an https token URL."""
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.auth_mode == "OAUTH2"
    assert spec.token_url is not None
    assert spec.token_url.startswith("https://")
    assert spec.authorization_url is not None
    assert spec.authorization_url.startswith("https://")


def test_freshdesk_is_basic_auth() -> None:
    """Freshdesk is present and uses Basic auth, since its API has no OAuth flow."""
    spec = load_catalog().get("freshdesk")
    assert spec is not None
    assert spec.auth_mode == "BASIC"
    assert spec.token_url is None


@pytest.mark.parametrize(("name", "mode"), sorted(GENERIC.items()))
def test_generic_entries_have_expected_auth_mode(name: str, mode: str) -> None:
    """The generic oauth2, oauth2-cc, api-key and basic entries exist with their modes."""
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.auth_mode == mode


@pytest.mark.parametrize("name", ["oauth2", "oauth2-cc"])
def test_generic_oauth_entries_take_token_url_from_connection_config(name: str) -> None:
    """The generic OAuth entries' token URL is the connection_config token_url."""
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.token_url == "${connectionConfig.token_url}"


def test_catalog_includes_an_oauth1_provider() -> None:
    """At least one OAUTH1 provider ships, since OAUTH1 credentials exist."""
    assert any(spec.auth_mode == "OAUTH1" for spec in load_catalog().all())


def test_every_entry_has_a_known_auth_mode() -> None:
    """Every built-in entry's auth_mode is one of AUTH_MODES."""
    assert {spec.auth_mode for spec in load_catalog().all()} <= AUTH_MODES


def test_every_refreshable_entry_has_a_token_url() -> None:
    """Every OAUTH2/OAUTH2_CC entry has a token URL that is https or fully templated."""
    for spec in load_catalog().all():
        if spec.auth_mode in REFRESHABLE_MODES:
            assert spec.token_url is not None, spec.name
            assert spec.token_url.startswith(("https://", "${")), spec.name


def test_refreshable_modes_are_oauth2_and_client_credentials() -> None:
    """REFRESHABLE_MODES are Nango's refreshable modes freshtoken implements, all valid."""
    assert {"OAUTH2", "OAUTH2_CC", "APP", "CUSTOM"} <= REFRESHABLE_MODES
    assert REFRESHABLE_MODES <= AUTH_MODES


def test_exact_online_refreshes_only_in_the_last_30_seconds() -> None:
    """Exact Online carries its 30-second buffer and lead, idle limit and error mapping."""
    spec = load_catalog().get("exact-online")
    assert spec is not None
    assert spec.token_expiration_buffer == 30
    assert spec.refresh_lead_seconds == 30
    assert spec.refresh_token_idle_days == 30
    assert "invalid_request" in spec.permanent_error_codes
    assert spec.token_request_auth_method == "basic"


def test_slack_reports_errors_in_ok_false_bodies() -> None:
    """Slack is flagged for HTTP-200 ok:false errors and lists its permanent codes."""
    spec = load_catalog().get("slack")
    assert spec is not None
    assert spec.error_in_ok_false is True
    assert {"invalid_refresh_token", "token_revoked", "invalid_client_id"} <= (
        spec.permanent_error_codes
    )
    assert "ratelimited" in spec.transient_error_codes
    assert not spec.permanent_error_codes & spec.transient_error_codes


def test_hubspot_bad_refresh_token_is_permanent() -> None:
    """HubSpot's BAD_REFRESH_TOKEN status is classified as permanent."""
    spec = load_catalog().get("hubspot")
    assert spec is not None
    assert "BAD_REFRESH_TOKEN" in spec.permanent_error_codes


@pytest.mark.parametrize(
    ("name", "days"),
    [
        ("exact-online", 30),
        ("xero", 60),
        ("atlassian", 90),
        ("jira", 90),
        ("confluence", 90),
        ("microsoft", 90),
        ("outlook", 90),
        ("quickbooks", 100),
        ("google", 180),
        ("gmail", 180),
    ],
)
def test_documented_refresh_token_idle_limits(name: str, days: int) -> None:
    """Providers with a documented refresh-token inactivity limit declare it."""
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.refresh_token_idle_days == days


def test_only_exact_online_sets_a_refresh_lead() -> None:
    """refresh_lead_seconds is set only where early refreshes are rejected."""
    leads = {s.name: s.refresh_lead_seconds for s in load_catalog().all() if s.refresh_lead_seconds}
    assert leads == {"exact-online": 30}


def test_basic_client_auth_is_declared_where_required() -> None:
    """Providers that require HTTP Basic client auth say so; Google sends it in the body."""
    catalog = load_catalog()
    for name in ("xero", "quickbooks", "zoom", "notion", "airtable", "pipedrive", "figma"):
        spec = catalog.get(name)
        assert spec is not None
        assert spec.token_request_auth_method == "basic", name
    google = catalog.get("google")
    assert google is not None
    assert google.token_request_auth_method is None
    assert google.body_format == "form"


def test_every_entry_to_public_is_json_serialisable() -> None:
    """to_public() of every built-in entry goes through json.dumps and carries its name."""
    for spec in load_catalog().all():
        public = spec.to_public()
        assert public["name"] == spec.name
        assert public["auth_mode"] == spec.auth_mode
        json.dumps(public)


def test_load_catalog_without_file_returns_the_shared_instance() -> None:
    """Repeated load_catalog() calls return the same parsed-once catalog."""
    assert load_catalog() is load_catalog()
    assert load_catalog("") is load_catalog()


def test_specs_are_read_only_and_to_public_returns_copies() -> None:
    """A spec's mappings cannot be mutated and editing to_public() output leaves it intact."""
    spec = load_catalog().get("zendesk")
    assert spec is not None
    with pytest.raises(TypeError):
        spec.raw["token_url"] = "https://evil.example"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.refresh_params["expires_in"] = "0"  # type: ignore[index]
    public = spec.to_public()
    public["refresh_params"]["expires_in"] = "0"
    public["categories"].append("mutated")
    again = spec.to_public()
    assert again["refresh_params"]["expires_in"] == "1800"
    assert "mutated" not in again["categories"]


def test_catalog_lookup_api() -> None:
    """names() and all() are sorted, get() of an unknown name is None, `in` takes any object."""
    catalog = load_catalog()
    assert catalog.names() == sorted(catalog.names())
    assert [spec.name for spec in catalog.all()] == catalog.names()
    assert catalog.get("no-such-provider") is None
    assert "github" in catalog
    assert "no-such-provider" not in catalog
    assert 42 not in catalog
    assert list(catalog) == catalog.names()


def test_catalog_rejects_duplicate_spec_names() -> None:
    """Building a ProviderCatalog from two specs with one name is an error."""
    spec = load_catalog().get("github")
    assert spec is not None
    with pytest.raises(ValueError, match="duplicate provider name 'github'"):
        ProviderCatalog([spec, spec])


# --- URL templating -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shopify", "https://acme.myshopify.com/admin/oauth/access_token"),
        ("zendesk", "https://acme.zendesk.com/oauth/tokens"),
    ],
)
def test_subdomain_templates_render(name: str, expected: str) -> None:
    """Shopify and Zendesk token URLs render from connection_config's subdomain."""
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.token_url is not None
    assert render_url(spec.token_url, {"subdomain": "acme"}) == expected


@pytest.mark.parametrize("name", ["shopify", "zendesk"])
@pytest.mark.parametrize("config", [{}, {"subdomain": ""}, {"subdomain": None}])
def test_missing_subdomain_raises_without_leaking_values(
    name: str, config: dict[str, object]
) -> None:
    """A missing or empty subdomain raises UrlTemplateError naming only the key."""
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.token_url is not None
    secretish = "tenant-7f3a9c-do-not-log"
    with pytest.raises(UrlTemplateError) as excinfo:
        render_url(spec.token_url, {**config, "client_hint": secretish, "region": "eu"})
    message = str(excinfo.value)
    assert message == "connection_config has no value for: subdomain"
    assert secretish not in message
    assert excinfo.value.missing_keys == ("subdomain",)


def test_exact_online_renders_country_extension() -> None:
    """Exact Online's token URL takes the country extension from connection_config."""
    spec = load_catalog().get("exact-online")
    assert spec is not None
    assert spec.token_url is not None
    rendered = render_url(spec.token_url, {"extension": "nl"})
    assert rendered == "https://start.exactonline.nl/api/oauth2/token"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"tenant": "t1", "org": "o1"}, "https://t1.example.com/token"),
        ({"org": "o1"}, "https://o1.example.com/token"),
        ({"tenant": "", "org": "o1"}, "https://o1.example.com/token"),
    ],
)
def test_or_fallback_takes_first_non_empty_value(config: dict[str, object], expected: str) -> None:
    """`${a || b}` uses a when it has a value and b otherwise."""
    template = "https://${connectionConfig.tenant || connectionConfig.org}.example.com/token"
    assert render_url(template, config) == expected


def test_or_fallback_with_no_values_names_every_alternative() -> None:
    """`${a || b}` with neither key set raises an error naming both keys."""
    with pytest.raises(UrlTemplateError, match="tenant or org") as excinfo:
        render_url("https://${tenant || org}.example.com", {})
    assert excinfo.value.missing_keys == ("tenant or org",)


def test_generic_oauth2_token_url_is_not_encoded() -> None:
    """The generic oauth2 entry renders a full token_url from connection_config unencoded."""
    spec = load_catalog().get("oauth2")
    assert spec is not None
    assert spec.token_url is not None
    url = "http://127.0.0.1:8765/oauth/token?tenant=a&x=1"
    assert render_url(spec.token_url, {"token_url": url}) == url


def test_plain_values_are_percent_encoded() -> None:
    """A value with URL syntax in it cannot add path segments or a query string."""
    rendered = render_url("https://${subdomain}.zendesk.com/oauth/tokens", {"subdomain": "a/b?c"})
    assert rendered == "https://a%2Fb%3Fc.zendesk.com/oauth/tokens"


def test_url_value_inside_a_template_is_encoded() -> None:
    """Only a placeholder that opens the template may hold a raw URL."""
    rendered = render_url(
        "https://${subdomain}.myshopify.com/x", {"subdomain": "https://evil.example"}
    )
    assert rendered == "https://https%3A%2F%2Fevil.example.myshopify.com/x"


def test_credentials_prefix_and_numbers_render() -> None:
    """The credentials. prefix is stripped and numeric values render as text."""
    rendered = render_url(
        "https://api.example.com/${credentials.account}/v${version}",
        {
            "account": "acct",
            "version": 2,
        },
    )
    assert rendered == "https://api.example.com/acct/v2"


def test_template_without_placeholders_is_returned_unchanged() -> None:
    """A template with no placeholders renders as itself."""
    assert render_url("https://oauth2.googleapis.com/token", {}) == (
        "https://oauth2.googleapis.com/token"
    )


def test_unterminated_placeholder_raises() -> None:
    """A `${` with no closing brace is an error, not a URL."""
    with pytest.raises(UrlTemplateError, match="unterminated"):
        render_url("https://${subdomain.example.com", {"subdomain": "acme"})


# --- extra catalog files -----------------------------------------------------------


def test_extra_file_overrides_and_adds_entries(tmp_path: Path) -> None:
    """An extra file replaces a built-in entry as a whole and adds new ones."""
    path = write(
        tmp_path,
        """
        github:
            display_name: GitHub Enterprise
            auth_mode: OAUTH2
            token_url: https://ghe.example.com/login/oauth/access_token
        acme:
            auth_mode: OAUTH2_CC
            token_url: https://auth.acme.example/oauth/token
            refresh_lead_seconds: 120
            default_token_lifetime_seconds: 900
        """,
    )
    builtin = load_catalog()
    catalog = load_catalog(path)

    github = catalog.get("github")
    assert github is not None
    assert github.display_name == "GitHub Enterprise"
    assert github.token_url == "https://ghe.example.com/login/oauth/access_token"
    # Whole-entry replacement: nothing is inherited from the built-in entry.
    assert github.authorization_url is None
    assert github.docs is None

    acme = catalog.get("acme")
    assert acme is not None
    assert acme.display_name == "acme"
    assert acme.refresh_lead_seconds == 120
    assert acme.default_token_lifetime_seconds == 900

    assert len(catalog) == len(builtin) + 1
    original = load_catalog().get("github")
    assert original is not None
    assert original.token_url == "https://github.com/login/oauth/access_token"


def test_extra_file_accepts_str_paths(tmp_path: Path) -> None:
    """load_catalog takes a str path as well as a PathLike."""
    path = write(tmp_path, "acme:\n    auth_mode: API_KEY\n")
    assert "acme" in load_catalog(str(path))


def test_empty_extra_file_changes_nothing(tmp_path: Path) -> None:
    """An empty extra file yields the built-in providers."""
    path = write(tmp_path, "# no overrides\n")
    assert load_catalog(path).names() == load_catalog().names()


def test_nango_authorization_method_header_means_basic(tmp_path: Path) -> None:
    """Nango's `authorization_method: header` is read as HTTP Basic client auth."""
    path = write(
        tmp_path,
        """
        legacy:
            auth_mode: OAUTH2
            token_url: https://legacy.example/token
            authorization_method: header
        """,
    )
    spec = load_catalog(path).get("legacy")
    assert spec is not None
    assert spec.token_request_auth_method == "basic"


def test_unquoted_param_values_become_text(tmp_path: Path) -> None:
    """Unquoted numbers and booleans in params become the strings sent on the wire."""
    path = write(
        tmp_path,
        """
        acme:
            auth_mode: OAUTH2
            token_url: https://acme.example/token
            body_format: json
            refresh_params:
                expires_in: 1800
                offline: true
        """,
    )
    spec = load_catalog(path).get("acme")
    assert spec is not None
    assert dict(spec.refresh_params) == {"expires_in": "1800", "offline": "true"}
    assert spec.body_format == "json"


def test_unknown_fields_and_dates_survive_to_public(tmp_path: Path) -> None:
    """Fields freshtoken ignores are kept, and YAML dates come out as ISO strings."""
    path = write(
        tmp_path,
        """
        acme:
            auth_mode: OAUTH2
            token_url: https://acme.example/token
            deprecated_on: 2027-02-16
            proxy:
                base_url: https://api.acme.example
                headers:
                    - accept
        """,
    )
    spec = load_catalog(path).get("acme")
    assert spec is not None
    public = spec.to_public()
    assert public["deprecated_on"] == "2027-02-16"
    assert public["proxy"] == {"base_url": "https://api.acme.example", "headers": ["accept"]}
    json.dumps(public)


# --- extra file errors ----------------------------------------------------------------


def assert_one_line_error(
    excinfo: pytest.ExceptionInfo[ProviderCatalogError],
    path: Path,
    key: str | None,
    reason: str,
) -> None:
    err = excinfo.value
    text = str(err)
    assert "\n" not in text
    assert str(path) in text
    assert err.file == str(path)
    assert err.key == key
    if key is not None:
        assert key in text
    assert reason in err.reason
    assert reason in text


def assert_skipped(path: Path, key: str, reason: str) -> None:
    """The file loads; the one bad entry is skipped with a one-line reason naming the field."""
    catalog = load_catalog(path)
    assert key not in catalog
    assert [(e.file, e.name) for e in catalog.skipped] == [(str(path), key)]
    text = catalog.skipped[0].reason
    assert "\n" not in text
    assert reason in text
    # The rest of the built-in catalog is unaffected by the bad entry.
    assert "github" in catalog


def test_bad_yaml_names_file_and_position(tmp_path: Path) -> None:
    """A file that is not YAML raises an error naming the file and where parsing failed."""
    path = write(tmp_path, "acme:\n    auth_mode: OAUTH2\n  token_url: [unclosed\n")
    with pytest.raises(ProviderCatalogError) as excinfo:
        load_catalog(path)
    assert_one_line_error(excinfo, path, None, "invalid YAML at line")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A file whose top level is a list is rejected."""
    path = write(tmp_path, "- github\n- google\n")
    with pytest.raises(ProviderCatalogError) as excinfo:
        load_catalog(path)
    assert_one_line_error(excinfo, path, None, "top level must be a mapping")


def test_non_mapping_entry_names_the_key(tmp_path: Path) -> None:
    """An entry that is not a mapping raises an error naming file, key and reason."""
    path = write(tmp_path, "acme: just a string\n")
    assert_skipped(path, "acme", "entry must be a mapping")


def test_missing_auth_mode_names_the_key(tmp_path: Path) -> None:
    """An entry without auth_mode raises an error naming file, key and reason."""
    path = write(tmp_path, "acme:\n    token_url: https://acme.example/token\n")
    assert_skipped(path, "acme", "missing required field 'auth_mode'")


def test_unknown_auth_mode_names_the_key(tmp_path: Path) -> None:
    """An entry with an auth_mode outside AUTH_MODES raises naming file, key and mode."""
    path = write(tmp_path, "acme:\n    auth_mode: MAGIC_LINK\n")
    assert_skipped(path, "acme", "unknown auth_mode 'MAGIC_LINK'")


@pytest.mark.parametrize(
    ("field_yaml", "reason"),
    [
        ("token_expiration_buffer: '30'", "'token_expiration_buffer' must be an integer"),
        ("refresh_lead_seconds: true", "'refresh_lead_seconds' must be an integer"),
        ("default_token_lifetime_seconds: 0", "must be at least 1"),
        ("refresh_token_idle_days: [30]", "'refresh_token_idle_days' must be an integer"),
        ("token_url: 42", "'token_url' must be a string"),
        ("token_url: acme.example/token", "must be an http(s) URL"),
        ("token_url: https://${subdomain.acme.example", "unterminated"),
        ("refresh_params: [a, b]", "'refresh_params' must be a mapping"),
        ("token_params: {scope: [a, b]}", "nested parameter 'scope' needs body_format json"),
        ("error_in_ok_false: 'yes'", "'error_in_ok_false' must be true or false"),
        ("categories: crm", "'categories' must be a list of strings"),
        ("body_format: xml", "'body_format' must be one of form, json, query"),
        ("token_request_auth_method: mtls", "must be one of basic, custom, private_key_jwt"),
        ("refresh_error_codes: {fatal: [x]}", "may only have keys permanent and transient"),
        ("refresh_error_codes: {permanent: x}", "'refresh_error_codes.permanent' must be a list"),
        (
            "refresh_error_codes: {permanent: [x], transient: [x]}",
            "both permanent and transient: x",
        ),
    ],
)
def test_wrong_field_type_names_key_and_field(tmp_path: Path, field_yaml: str, reason: str) -> None:
    """A field of the wrong type or value raises an error naming file, key and field."""
    lines = ["acme:", "    auth_mode: OAUTH2"]
    # A valid token_url is needed by OAUTH2, unless token_url is the field under test.
    if not field_yaml.startswith("token_url"):
        lines.append("    token_url: https://acme.example/token")
    lines.append(f"    {field_yaml}")
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert_skipped(path, "acme", reason)


def test_refreshable_entry_without_token_url_is_rejected(tmp_path: Path) -> None:
    """An OAUTH2 entry with no token_url could never refresh and is rejected."""
    path = write(tmp_path, "acme:\n    auth_mode: OAUTH2\n")
    assert_skipped(path, "acme", "requires a token_url")


def test_duplicate_provider_key_is_rejected(tmp_path: Path) -> None:
    """A provider defined twice is an error rather than a silent last-one-wins."""
    path = write(tmp_path, "acme:\n    auth_mode: API_KEY\nacme:\n    auth_mode: BASIC\n")
    catalog = load_catalog(path)
    assert "acme" not in catalog
    assert [e.reason for e in catalog.skipped] == ["duplicate key 'acme' at line 3"]


def test_duplicate_field_names_its_provider(tmp_path: Path) -> None:
    """A field repeated inside one entry is reported against that entry."""
    path = write(tmp_path, "acme:\n    auth_mode: API_KEY\n    auth_mode: BASIC\n")
    assert_skipped(path, "acme", "duplicate key 'auth_mode' at line 3")


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """A path that does not exist raises ProviderCatalogError(file, None, 'file not found')."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ProviderCatalogError) as excinfo:
        load_catalog(path)
    assert_one_line_error(excinfo, path, None, "file not found")
    assert excinfo.value.reason == "file not found"


def test_directory_is_reported(tmp_path: Path) -> None:
    """A directory passed as the extra file is rejected with a clear reason."""
    with pytest.raises(ProviderCatalogError) as excinfo:
        load_catalog(tmp_path)
    assert_one_line_error(excinfo, tmp_path, None, "is a directory")


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    """A file that is not UTF-8 is rejected rather than decoded as garbage."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("acme:\n    display_name: Caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProviderCatalogError) as excinfo:
        load_catalog(path)
    assert_one_line_error(excinfo, path, None, "not valid UTF-8")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (
            "auth_mode: TWO_STEP\n    token_url: https://a.test/t\n    additional_steps: [{}]",
            "TWO_STEP with 'additional_steps' is not supported",
        ),
        (
            "auth_mode: TWO_STEP\n    token_url: https://a.test/t\n    assertion: {type: jwt}",
            "TWO_STEP with 'assertion' is not supported",
        ),
        (
            "auth_mode: TWO_STEP\n    token_url: https://a.test/t\n"
            "    token_headers: {x: '${hmacSha1Hex(${credentials.k})}'}",
            "template helper ${hmacSha1Hex(...)} is not supported",
        ),
        ("auth_mode: MCP_OAUTH2", "auth_mode MCP_OAUTH2 is not served by freshtoken"),
    ],
)
def test_entries_freshtoken_cannot_keep_fresh_are_skipped_with_why(
    tmp_path: Path, entry: str, reason: str
) -> None:
    """Features the grants do not implement skip the entry at load, not fail every refresh."""
    path = write(tmp_path, f"acme:\n    {entry}\n")
    assert_skipped(path, "acme", reason)


def test_alias_resolves_like_nango_and_a_missing_target_is_skipped(tmp_path: Path) -> None:
    """An alias takes its target's fields (overrides win); an alias of nothing is skipped."""
    path = write(
        tmp_path,
        "base:\n    auth_mode: OAUTH2\n    token_url: https://base.test/token\n"
        "    display_name: Base\n"
        "child:\n    alias: base\n    display_name: Child\n"
        "orphan:\n    alias: nowhere\n",
    )
    catalog = load_catalog(path)
    child = catalog.get("child")
    assert child is not None and child.alias_of == "base"
    assert (child.display_name, child.token_url) == ("Child", "https://base.test/token")
    assert [(e.name, e.reason) for e in catalog.skipped] == [
        ("orphan", "alias of 'nowhere': alias target 'nowhere' is not in the file")
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"hostname": "acme.my.salesforce.com"},
            "https://acme.my.salesforce.com/services/oauth2/token",
        ),
        ({}, "https://login.salesforce.com/services/oauth2/token"),
        ({"hostname": ""}, "https://login.salesforce.com/services/oauth2/token"),
    ],
)
def test_whole_url_fallback_takes_the_first_alternative_that_resolves(
    config: dict[str, object], expected: str
) -> None:
    """`A || B` outside placeholders: A when its ${...} resolves, else B (Nango's rule)."""
    template = (
        "https://${connectionConfig.hostname}/services/oauth2/token"
        " || https://login.salesforce.com/services/oauth2/token"
    )
    assert render_url(template, config) == expected
