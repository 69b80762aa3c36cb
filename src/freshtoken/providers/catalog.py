"""The provider catalog: what freshtoken knows about each OAuth provider.

The catalog is a YAML file in the same shape as Nango's ``providers.yaml``
(top-level keys are provider names, each entry has an ``auth_mode`` plus URLs
and request options), extended with a few freshtoken-only fields that the
proactive refresher needs. The built-in file ships inside this package; an
operator can point ``load_catalog`` at an extra file whose entries add to, or
replace whole, built-in entries.

Nango's own ``providers.yaml`` loads unchanged: ``alias:`` entries are resolved the way
Nango's ``loadProvidersYaml`` does, and an entry freshtoken cannot serve (an MCP or AWS
auth mode, a malformed field) is *skipped* with one ``provider.skipped`` warning naming it
and why, never rejecting the rest of the file. Only a file that is not a catalog at all
(missing, not YAML, not a mapping) raises :class:`ProviderCatalogError`.

Everything returned from here is treated as read-only: the built-in catalog is
parsed once per process and shared, so specs hold read-only mappings and
tuples, and ``ProviderSpec.to_public`` hands out fresh copies.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType
from typing import Any, Final

import yaml

from freshtoken.logs import get_logger

__all__ = [
    "AUTH_MODES",
    "IGNORED_NANGO_FIELDS",
    "REFRESHABLE_MODES",
    "USED_FIELDS",
    "ProviderCatalog",
    "ProviderCatalogError",
    "ProviderSpec",
    "UrlTemplateError",
    "load_catalog",
    "render_url",
]

AUTH_MODES: Final[frozenset[str]] = frozenset(
    {
        "OAUTH1",
        "OAUTH2",
        "OAUTH2_CC",
        "API_KEY",
        "BASIC",
        "NONE",
        "APP",
        "CUSTOM",
        "JWT",
        "TBA",
        "TWO_STEP",
        "BILL",
        "SIGNATURE",
    }
)
"""Auth modes a catalog entry may declare (the Nango enum minus MCP/plugin/AWS modes)."""

REFRESHABLE_MODES: Final[frozenset[str]] = frozenset(
    {"OAUTH2", "OAUTH2_CC", "APP", "CUSTOM", "JWT", "TWO_STEP", "SIGNATURE", "BILL"}
)
"""Auth modes whose credentials freshtoken can refresh (each needs a token_url)."""

# Nango modes freshtoken does not serve at all: MCP entries are agent-tool connections with
# dynamic client registration, INSTALL_PLUGIN has no credential, AWS_SIGV4 needs STS.
_UNSERVED_MODES: Final = frozenset(
    {"MCP_OAUTH2", "MCP_OAUTH2_GENERIC", "INSTALL_PLUGIN", "AWS_SIGV4"}
)

log = get_logger("freshtoken.providers")

USED_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "alias",
        "auth_mode",
        "display_name",
        "docs",
        "categories",
        "authorization_url",
        "token_url",
        "refresh_url",
        "token_request_auth_method",
        "authorization_method",
        "body_format",
        "token_params",
        "refresh_params",
        "authorization_params",
        "token_headers",
        "refresh_token_headers",
        "refresh_token_params",
        "token_expiration_buffer",
        "token_response",
        "token_expires_in_ms",
        "token_request_method",
        "expires_in_unit",
        "alternate_access_token_response_path",
        "scope_separator",
        "signature",
        "token",
        "connection_config",
        "credentials",
        "proxy",
        # freshtoken extensions
        "refresh_lead_seconds",
        "default_token_lifetime_seconds",
        "refresh_token_idle_days",
        "refresh_error_codes",
        "error_in_ok_false",
        "refresh_rate_limit_per_second",
    }
)
"""Fields freshtoken reads (for validation, a grant, or ``GET /providers``)."""

IGNORED_NANGO_FIELDS: Final[frozenset[str]] = frozenset(
    {
        # The consent step and Connect UI: freshtoken imports connections, it does not run them.
        "docs_connect",
        "setup_guide_url",
        "disable_pkce",
        "default_scopes",
        "authorization_url_replacements",
        "authorization_url_skip_empty",
        "authorization_url_skip_encode",
        "authorization_url_fragment",
        "authorization_code_param_in_callback",
        "authorization_code_param_in_webhook",
        "redirect_uri_metadata",
        "token_response_metadata",
        "refresh_token_response_metadata",
        "token_response_headers",
        "additional_steps",
        "client_registration",
        "registration_url",
        "registration_params",
        "installation",
        "connection_configuration",
        "decode_url",
        "require_client_certificate",
        # Nango's scripts and webhooks run inside Nango (syncs, verification, routing).
        "post_connection_script",
        "pre_connection_deletion_script",
        "credentials_verification_script",
        "webhook_routing_script",
        "webhook_user_defined_secret",
        "webhook_allowed_query_params",
        "webhook_response_metadata",
        "integration_config",
        # Request signing of proxied calls and AWS/MCP plumbing (modes not served).
        "assertion",
        "assertion_option",
        "signature_method",
        "auth",
        "auth_type",
        "request_url",
        "request_params",
        "token_url_skip_encode",
        # OAuth 1.0a request/access-token steps (OAUTH1 is import/read only), consent-only
        # helpers, and the proxy's own header for TWO_STEP tokens.
        "access_token_url",
        "request_http_method",
        "token_http_method",
        "available_scopes",
        "proxy_header_authorization",
    }
)
"""Nango fields freshtoken knowingly does not interpret (kept verbatim for ``GET /providers``)."""

_BUILTIN_RESOURCE: Final = "providers.yaml"

# Token endpoints are either sent form-encoded (the OAuth 2.0 default) or as
# JSON for the handful of providers that insist on it. Nango also knows
# "query" for client-credentials; freshtoken does not send that, so a file
# asking for it is rejected at load time instead of failing at refresh time.
# "query" puts the parameters in the URL's query string (Nango's client-credentials option).
# Nango's TWO_STEP also knows "xml" (sage-intacct); freshtoken skips those entries.
_BODY_FORMATS: Final = frozenset({"form", "json", "query"})

# Client authentication at the token endpoint: HTTP Basic, Nango's "custom" (username and
# password form fields) and "private_key_jwt" (an RS256 client assertion). Absent: body.
_TOKEN_AUTH_METHODS: Final = frozenset({"basic", "custom", "private_key_jwt"})

# Nango's older spelling: ``authorization_method: header`` means HTTP Basic,
# ``body`` means form fields. Several upstream entries (exact-online, fitbit)
# use it, so it is accepted and folded into ``token_request_auth_method``.
_AUTHORIZATION_METHODS: Final = frozenset({"body", "header"})

_URL_FIELDS: Final = ("authorization_url", "token_url", "refresh_url")
# JWT and SIGNATURE tokens are minted locally from the stored credentials: no endpoint.
_NEEDS_TOKEN_URL: Final = REFRESHABLE_MODES - {"JWT", "SIGNATURE"}
_ERROR_CODE_CLASSES: Final = frozenset({"permanent", "transient"})

# ``${...}`` with no nested braces, exactly like Nango's interpolation regex.
_PLACEHOLDER: Final = re.compile(r"\$\{([^{}]*)\}")
# Nango templates spell keys with a source prefix; connection_config is flat.
_TEMPLATE_PREFIXES: Final = ("connectionConfig.", "credentials.")
_ABSOLUTE_HTTP_URL: Final = re.compile(r"^https?://", re.IGNORECASE)
_YAML_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class ProviderCatalogError(Exception):
    """A providers file did not load; str() is one line naming file, key and reason.

    ``key`` is the provider entry at fault, or None when the problem is with the
    file as a whole (missing, unreadable, not YAML, not a mapping).
    """

    def __init__(self, file: str, key: str | None, reason: str) -> None:
        self.file = file
        self.key = key
        # YAML parser messages span several lines; logs want exactly one.
        self.reason = " ".join(reason.split())
        where = file if key is None else f"{file}: provider {key!r}"
        super().__init__(f"{where}: {self.reason}")


class UrlTemplateError(ValueError):
    """A URL template could not be rendered from a connection_config.

    The message and ``missing_keys`` name only connection_config keys, never
    values, because connection_config can hold tenant identifiers and the
    message ends up in logs and API error bodies.
    """

    def __init__(self, missing_keys: tuple[str, ...], reason: str | None = None) -> None:
        self.missing_keys = missing_keys
        if reason is None:
            reason = "connection_config has no value for: " + ", ".join(missing_keys)
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """An entry a providers file has that freshtoken cannot serve, and why (one line)."""

    file: str
    name: str
    auth_mode: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider entry, validated and normalised.

    ``raw`` keeps the whole entry as parsed (including Nango fields freshtoken
    does not interpret, such as ``proxy`` or ``connection_config``) so that
    ``GET /providers`` can echo it.
    """

    name: str
    display_name: str
    auth_mode: str
    authorization_url: str | None
    token_url: str | None
    refresh_url: str | None
    token_request_auth_method: str | None
    body_format: str
    token_params: Mapping[str, Any]
    refresh_params: Mapping[str, Any]
    token_expiration_buffer: int | None
    refresh_lead_seconds: int | None
    default_token_lifetime_seconds: int | None
    refresh_token_idle_days: int | None
    permanent_error_codes: frozenset[str]
    transient_error_codes: frozenset[str]
    error_in_ok_false: bool
    docs: str | None
    categories: tuple[str, ...]
    raw: Mapping[str, Any]
    # Nango's per-grant token_url map ({OAUTH2: ..., APP: ...}); ``token_url`` is the entry's own.
    token_urls: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    alias_of: str | None = None

    def token_url_for(self, grant: str) -> str | None:
        """The token URL template for one grant (``OAUTH2`` or ``APP``), per Nango's map."""
        return self.token_urls.get(grant) or self.token_url

    def to_public(self) -> dict[str, Any]:
        """Return a fresh JSON-serialisable dict: ``name`` plus the entry's YAML fields."""
        public: dict[str, Any] = {"name": self.name}
        for field_name, value in self.raw.items():
            if field_name != "name":
                public[field_name] = _thaw(value)
        return public


class ProviderCatalog:
    """An immutable, name-indexed set of provider specs."""

    __slots__ = ("_specs", "skipped")

    def __init__(self, specs: Iterable[ProviderSpec], skipped: Iterable[SkippedEntry] = ()) -> None:
        by_name: dict[str, ProviderSpec] = {}
        for spec in sorted(specs, key=lambda s: s.name):
            if spec.name in by_name:
                raise ValueError(f"duplicate provider name {spec.name!r}")
            by_name[spec.name] = spec
        self._specs: Mapping[str, ProviderSpec] = MappingProxyType(by_name)
        self.skipped: tuple[SkippedEntry, ...] = tuple(skipped)

    def get(self, name: str) -> ProviderSpec | None:
        """Return the spec called ``name``, or None if the catalog has no such provider."""
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __repr__(self) -> str:
        return f"ProviderCatalog({len(self._specs)} providers)"

    def names(self) -> list[str]:
        """Return every provider name, sorted."""
        return list(self._specs)

    def all(self) -> list[ProviderSpec]:
        """Return every spec, sorted by name."""
        return list(self._specs.values())


def load_catalog(extra_file: str | os.PathLike[str] | None = None) -> ProviderCatalog:
    """Return the built-in catalog, merged with ``extra_file`` when one is given.

    An extra file's entries add new providers or replace a built-in entry as a
    whole (no field-level merge, so an override never inherits a stale URL),
    except freshtoken-only fields (``EXTENSION_FIELDS``) the replacing entry
    does not set, which are kept from the built-in entry.
    With no extra file the shared, parsed-once built-in catalog is returned, so
    calling this per request is cheap. An empty string counts as "no file",
    which is what an unset environment variable usually turns into.

    An entry that fails validation, or has an auth mode freshtoken does not
    serve, is skipped: one ``provider.skipped`` warning names it and why, and
    ``catalog.skipped`` lists it. Raises ProviderCatalogError only if the file
    is missing, unreadable, not YAML, or not a mapping of names to entries.
    """
    builtin = _builtin_catalog()
    if extra_file is None or os.fspath(extra_file) == "":
        return builtin
    path = os.fspath(extra_file)
    merged = {spec.name: spec for spec in builtin.all()}
    specs, skipped = parse_catalog_file(path)
    for spec in specs:
        base = merged.get(spec.name)
        merged[spec.name] = _inherit_extensions(path, spec, base) if base is not None else spec
    for entry in skipped:
        log.warning(
            "provider.skipped",
            file=entry.file,
            provider=entry.name,
            auth_mode=entry.auth_mode,
            reason=entry.reason,
        )
    return ProviderCatalog(merged.values(), skipped)


# freshtoken-only fields (not in Nango's schema): a replacing entry from an operator's file, such
# as Nango's own providers.yaml, keeps the built-in entry's values for those it does not set, so
# pointing at Nango's file does not lose HubSpot's BAD_REFRESH_TOKEN or Slack's ok:false rules.
EXTENSION_FIELDS: Final = (
    "refresh_lead_seconds",
    "default_token_lifetime_seconds",
    "refresh_token_idle_days",
    "refresh_error_codes",
    "error_in_ok_false",
    "refresh_rate_limit_per_second",
)


def _inherit_extensions(file: str, spec: ProviderSpec, base: ProviderSpec) -> ProviderSpec:
    inherited = {
        k: _thaw(base.raw[k]) for k in EXTENSION_FIELDS if k in base.raw and k not in spec.raw
    }
    if not inherited:
        return spec
    entry = {**{k: _thaw(v) for k, v in spec.raw.items()}, **inherited}
    return replace(_parse_entry(file, spec.name, entry), alias_of=spec.alias_of)


def parse_catalog_file(path: str) -> tuple[list[ProviderSpec], list[SkippedEntry]]:
    """Parse one providers file on its own: the entries it serves and those it skips.

    Raises ProviderCatalogError only for a file that is not a catalog at all.
    """
    return _parse_catalog_text(path, _read_file(path))


def render_url(template: str, connection_config: Mapping[str, Any]) -> str:
    """Fill ``${...}`` placeholders in a provider URL template from connection_config.

    Follows Nango's ``makeUrl``: the prefixes ``connectionConfig.`` and
    ``credentials.`` are dropped, so ``${connectionConfig.subdomain}`` reads the
    ``subdomain`` key; ``${a || b}`` takes the first non-empty of ``a`` and
    ``b``. Values are percent-encoded (nothing is "safe", so a value cannot
    add path segments or a query string), except an absolute http(s) URL
    filling a placeholder at the very start of the template: that is a whole
    URL, e.g. the generic ``oauth2`` entry's ``${connectionConfig.token_url}``,
    and goes in unchanged.

    A whole-URL fallback ``URL_A || URL_B`` (``||`` outside any placeholder, as
    Salesforce, Okta or Zoho write it) is chosen the way Nango's
    ``interpolateStringFromObject`` chooses (packages/shared/lib/utils/utils.ts):
    the first alternative in which a placeholder resolved, else the last one.

    Raises UrlTemplateError naming the keys that had no value, or if the
    template has a ``${`` that is not a complete placeholder.
    """
    alternatives = split_url_alternatives(template)
    for alternative in alternatives[:-1]:
        if any(
            _first_value(connection_config, match) is not None
            for match in _PLACEHOLDER.finditer(alternative)
        ):
            return _render_one(alternative, connection_config)
    return _render_one(alternatives[-1], connection_config)


def interpolate_text(template: str, connection_config: Mapping[str, Any]) -> str | None:
    """Fill a parameter template from connection_config, unencoded; None if a value is missing.

    Nango's ``interpolateObjectValues`` for client-credentials ``token_params``, with the same
    ``A || B`` choice as URLs (pax8's ``${connectionConfig.audience} || https://api.pax8.com``).
    """
    alternatives = split_url_alternatives(template)
    chosen = alternatives[-1]
    for alternative in alternatives[:-1]:
        if any(
            _first_value(connection_config, m) is not None
            for m in _PLACEHOLDER.finditer(alternative)
        ):
            chosen = alternative
            break
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = _first_value(connection_config, match)
        if value is None:
            missing = True
            return match.group(0)
        return value

    filled = _PLACEHOLDER.sub(substitute, chosen)
    return None if missing else filled


def split_url_alternatives(template: str) -> list[str]:
    """Split ``A || B`` on the ``||`` that stand outside ``${...}`` placeholders."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(template):
        if template.startswith("${", i):
            depth += 1
            i += 2
            continue
        if template[i] == "}" and depth:
            depth -= 1
        elif depth == 0 and template.startswith("||", i):
            parts.append(template[start:i].strip())
            start = i + 2
            i += 2
            continue
        i += 1
    parts.append(template[start:].strip())
    return parts


def _first_value(connection_config: Mapping[str, Any], match: re.Match[str]) -> str | None:
    for part in match.group(1).split("||"):
        value = _config_value(connection_config, _strip_template_prefix(part.strip()))
        if value is not None:
            return value
    return None


def _render_one(template: str, connection_config: Mapping[str, Any]) -> str:
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        keys = [_strip_template_prefix(part.strip()) for part in match.group(1).split("||")]
        for key in keys:
            value = _config_value(connection_config, key)
            if value is not None:
                # Only a placeholder that opens the template can stand for a
                # whole URL; anywhere else a URL value is encoded like any
                # other, so it cannot swap the host of a provider's endpoint.
                if match.start() == 0 and _ABSOLUTE_HTTP_URL.match(value):
                    return value
                return urllib.parse.quote(value, safe="")
        missing.append(" or ".join(key or "<empty placeholder>" for key in keys))
        return match.group(0)

    rendered = _PLACEHOLDER.sub(substitute, template)
    if missing:
        raise UrlTemplateError(tuple(missing))
    # Checked on the template, not the output: a substituted URL value may
    # legitimately contain "${" and must not be mistaken for a leftover.
    if "${" in _PLACEHOLDER.sub("", template):
        raise UrlTemplateError((), "URL template has an unterminated ${ placeholder")
    return rendered


def _strip_template_prefix(key: str) -> str:
    for prefix in _TEMPLATE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _config_value(connection_config: Mapping[str, Any], key: str) -> str | None:
    """Return connection_config[key] as text, or None if it is absent or empty."""
    value = connection_config.get(key)
    if isinstance(value, bool):
        # JSON spelling, as Nango (JavaScript) would render it.
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    # None, "", whitespace and nested objects cannot fill a URL segment.
    return None


@functools.cache
def _builtin_catalog() -> ProviderCatalog:
    """Parse the packaged providers.yaml once per process."""
    resource = importlib.resources.files(__package__ or "freshtoken.providers") / _BUILTIN_RESOURCE
    label = f"<builtin>/{_BUILTIN_RESOURCE}"
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProviderCatalogError(label, None, "file not found") from None
    specs, skipped = _parse_catalog_text(label, text)
    if skipped:
        # The packaged file is ours: a skip there is a bug, not an operator's choice.
        raise ProviderCatalogError(label, skipped[0].name, skipped[0].reason)
    return ProviderCatalog(specs)


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ProviderCatalogError(path, None, "file not found") from None
    except IsADirectoryError:
        raise ProviderCatalogError(path, None, "is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ProviderCatalogError(path, None, "file is not valid UTF-8") from None
    except OSError as exc:
        raise ProviderCatalogError(path, None, f"cannot read file ({exc.strerror})") from None


def _parse_catalog_text(file: str, text: str) -> tuple[list[ProviderSpec], list[SkippedEntry]]:
    """Parse one providers file; ``file`` is only used in messages."""
    data, bad_keys = _load_yaml(file, text)
    if data is None:
        # An empty extra file is a valid "no overrides".
        return [], []
    if not isinstance(data, Mapping):
        raise ProviderCatalogError(
            file, None, f"top level must be a mapping of provider names, got {_type_name(data)}"
        )
    specs: list[ProviderSpec] = []
    skipped: list[SkippedEntry] = []
    entries, aliases = _resolve_aliases(data)
    for name, entry in entries.items():
        mode = entry.get("auth_mode") if isinstance(entry, Mapping) else None
        mode = mode if isinstance(mode, str) else None
        if not isinstance(name, str) or not name.strip():
            skipped.append(
                SkippedEntry(file, str(name), mode, "provider name must be a non-empty string")
            )
            continue
        if name in bad_keys:
            skipped.append(SkippedEntry(file, name, mode, bad_keys[name]))
            continue
        try:
            spec = _parse_entry(file, name, entry)
        except ProviderCatalogError as exc:
            reason = exc.reason
            if name in aliases:
                reason = f"alias of {aliases[name]!r}: {reason}"
            skipped.append(SkippedEntry(file, name, mode, reason))
            continue
        if name in aliases:
            spec = _with_alias(spec, aliases[name])
        specs.append(spec)
    return specs, skipped


def _resolve_aliases(data: Mapping[Any, Any]) -> tuple[dict[Any, Any], dict[str, str]]:
    """Resolve ``alias:`` entries exactly as Nango's ``loadProvidersYaml`` does.

    Nango (packages/providers/lib/index.ts) walks the file in order and replaces
    an entry ``{alias: X, ...overrides}`` with ``{...entries[X], ...overrides}``:
    a shallow merge over the target *as already resolved*, so an alias of an
    earlier alias inherits the resolved fields.
    """
    entries: dict[Any, Any] = dict(data)
    aliases: dict[str, str] = {}
    for name, entry in data.items():
        if not isinstance(entry, Mapping) or "alias" not in entry:
            continue
        target = entry.get("alias")
        if not isinstance(name, str) or not isinstance(target, str):
            continue
        aliases[name] = target
        base = entries.get(target)
        overrides = {k: v for k, v in entry.items() if k != "alias"}
        entries[name] = {**(base if isinstance(base, Mapping) else {}), **overrides}
        if not isinstance(base, Mapping):
            entries[name]["__alias_missing__"] = target
    return entries, aliases


def _with_alias(spec: ProviderSpec, target: str) -> ProviderSpec:
    return replace(spec, alias_of=target)


def _load_yaml(file: str, text: str) -> tuple[Any, dict[str, str]]:
    """Parse YAML safely; also return the entries with duplicate keys PyYAML would drop."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        bad_keys: dict[str, str] = {}
        _check_duplicate_keys(root, bad_keys)
        return loader.construct_document(root), bad_keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ProviderCatalogError(file, None, f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ProviderCatalogError(file, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _check_duplicate_keys(root: yaml.Node, bad_keys: dict[str, str]) -> None:
    """Record, per provider, a repeated mapping key anywhere in its entry.

    A duplicated provider name or field is almost always a copy-paste mistake,
    and PyYAML would keep the last value without a word, so the entry is skipped.
    """
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, provider: str | None) -> None:
        # Anchors and aliases share node objects (even recursively), so each
        # node is visited once.
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _YAML_MERGE_TAG:
                    walk(value_node, provider)
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    key = str(key_node.value)
                    if key in keys:
                        line = key_node.start_mark.line + 1
                        bad_keys.setdefault(
                            provider if provider is not None else key,
                            f"duplicate key {key!r} at line {line}",
                        )
                    keys.add(key)
                child_provider = provider
                if provider is None and node is root and isinstance(key_node, yaml.ScalarNode):
                    child_provider = str(key_node.value)
                walk(value_node, child_provider)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, provider)

    walk(root, None)


class _EntryReader:
    """Typed field access for one entry; every failure names file, provider and field."""

    def __init__(self, file: str, name: str, entry: Mapping[str, Any]) -> None:
        self.file = file
        self.name = name
        self.entry = entry

    def fail(self, reason: str) -> ProviderCatalogError:
        return ProviderCatalogError(self.file, self.name, reason)

    def string(self, field: str) -> str | None:
        value = self.entry.get(field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"field {field!r} must be a string, got {_type_name(value)}")
        return value

    def choice(self, field: str, allowed: frozenset[str]) -> str | None:
        value = self.string(field)
        if value is not None and value not in allowed:
            raise self.fail(
                f"field {field!r} must be one of {', '.join(sorted(allowed))}, got {value!r}"
            )
        return value

    def url_template(self, field: str, value: object = None) -> str | None:
        if value is None:
            value = self.string(field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"field {field!r} must be a string, got {_type_name(value)}")
        # A template either is a full URL or starts with a placeholder that
        # becomes one; anything else is a typo that would only surface at
        # refresh time. Each side of a whole-URL ``A || B`` fallback is checked.
        for alternative in split_url_alternatives(value):
            if not (_ABSOLUTE_HTTP_URL.match(alternative) or alternative.startswith("${")):
                raise self.fail(f"field {field!r} must be an http(s) URL or start with ${{...}}")
        if "${" in _PLACEHOLDER.sub("", value):
            raise self.fail(f"field {field!r} has an unterminated ${{ placeholder")
        return value

    def token_urls(self) -> dict[str, str]:
        """``token_url`` as a map per grant (Nango's ``{OAUTH2: ..., APP: ...}``), or {}."""
        value = self.entry.get("token_url")
        if not isinstance(value, Mapping):
            return {}
        urls: dict[str, str] = {}
        for grant, url in value.items():
            template = self.url_template(f"token_url.{grant}", url)
            if template is not None:
                urls[str(grant)] = template
        return urls

    def headers(self, field: str) -> Mapping[str, str]:
        value = self.entry.get(field)
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, Mapping):
            raise self.fail(f"field {field!r} must be a mapping, got {_type_name(value)}")
        return MappingProxyType(
            {str(k): self._param_text(field, str(k), v) for k, v in value.items()}
        )

    def integer(self, field: str, minimum: int) -> int | None:
        value = self.entry.get(field)
        if value is None:
            return None
        # bool is an int subclass; "yes" must not become 1 second.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"field {field!r} must be an integer, got {_type_name(value)}")
        if value < minimum:
            raise self.fail(f"field {field!r} must be at least {minimum}, got {value}")
        return value

    def boolean(self, field: str) -> bool:
        value = self.entry.get(field, False)
        if not isinstance(value, bool):
            raise self.fail(f"field {field!r} must be true or false, got {_type_name(value)}")
        return value

    def params(self, field: str) -> Mapping[str, str]:
        value = self.entry.get(field)
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, Mapping):
            raise self.fail(f"field {field!r} must be a mapping, got {_type_name(value)}")
        params: dict[str, str] = {}
        for param, param_value in value.items():
            if not isinstance(param, str):
                raise self.fail(f"field {field!r} has a non-string key {param!r}")
            if isinstance(param_value, Mapping | list):
                # Nested parameters (Tableau, Sage Intacct) only make sense in a JSON body.
                params[param] = _freeze_value(self, param_value)
            else:
                params[param] = self._param_text(field, param, param_value)
        return MappingProxyType(params)

    def _param_text(self, field: str, param: str, value: object) -> str:
        # Upstream files write `expires_in: 1800` or `force: true` unquoted;
        # on the wire every form or JSON-string parameter is text anyway.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise self.fail(
            f"field {field!r} value for {param!r} must be a scalar, got {_type_name(value)}"
        )

    def string_list(self, field: str) -> tuple[str, ...]:
        value = self.entry.get(field)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(f"field {field!r} must be a list of strings")
        return tuple(value)

    def error_codes(self) -> tuple[frozenset[str], frozenset[str]]:
        value = self.entry.get("refresh_error_codes")
        if value is None:
            return frozenset(), frozenset()
        if not isinstance(value, Mapping):
            raise self.fail(
                f"field 'refresh_error_codes' must be a mapping, got {_type_name(value)}"
            )
        unknown = sorted(str(k) for k in value if k not in _ERROR_CODE_CLASSES)
        if unknown:
            raise self.fail(
                "field 'refresh_error_codes' may only have keys permanent and transient, "
                f"got {', '.join(unknown)}"
            )
        classes: dict[str, frozenset[str]] = {}
        for cls in _ERROR_CODE_CLASSES:
            codes = value.get(cls) or []
            # Codes such as 400 may be written unquoted; they are matched as text.
            if not isinstance(codes, list) or not all(
                isinstance(c, str | int) and not isinstance(c, bool) for c in codes
            ):
                raise self.fail(f"field 'refresh_error_codes.{cls}' must be a list of codes")
            classes[cls] = frozenset(str(c) for c in codes)
        both = classes["permanent"] & classes["transient"]
        if both:
            raise self.fail(
                "field 'refresh_error_codes' lists codes as both permanent and transient: "
                + ", ".join(sorted(both))
            )
        return classes["permanent"], classes["transient"]


def _parse_entry(file: str, name: str, entry: object) -> ProviderSpec:
    if not isinstance(entry, Mapping):
        raise ProviderCatalogError(
            file, name, f"entry must be a mapping of fields, got {_type_name(entry)}"
        )
    reader = _EntryReader(file, name, entry)

    missing_target = entry.get("__alias_missing__")
    if missing_target is not None:
        raise reader.fail(f"alias target {missing_target!r} is not in the file")
    auth_mode = reader.string("auth_mode")
    if auth_mode is None:
        raise reader.fail("missing required field 'auth_mode'")
    if auth_mode in _UNSERVED_MODES:
        raise reader.fail(f"auth_mode {auth_mode} is not served by freshtoken")
    if auth_mode not in AUTH_MODES:
        raise reader.fail(f"unknown auth_mode {auth_mode!r}")

    unsupported = _unsupported_feature(auth_mode, entry)
    if unsupported is not None:
        raise reader.fail(unsupported)

    token_urls = reader.token_urls()
    urls = {
        field: (None if field == "token_url" and token_urls else reader.url_template(field))
        for field in _URL_FIELDS
    }
    if token_urls:
        # The entry's own grant first; CUSTOM (GitHub App OAuth) refreshes its app part.
        own = "APP" if auth_mode == "CUSTOM" else auth_mode
        urls["token_url"] = token_urls.get(own) or token_urls.get("OAUTH2")
    if auth_mode in _NEEDS_TOKEN_URL and urls["token_url"] is None:
        raise reader.fail(f"auth_mode {auth_mode} requires a token_url")

    client_auth = reader.choice("token_request_auth_method", _TOKEN_AUTH_METHODS)
    legacy_auth = reader.choice("authorization_method", _AUTHORIZATION_METHODS)
    if client_auth is None and legacy_auth == "header":
        client_auth = "basic"

    # Nango's TWO_STEP requests default to JSON (connection.service.ts getTwoStepCredentials).
    body_format = reader.choice("body_format", _BODY_FORMATS) or (
        "json" if auth_mode == "TWO_STEP" else "form"
    )
    token_params = reader.params("token_params")
    refresh_params = reader.params("refresh_params")
    nested = [
        k for k, v in {**token_params, **refresh_params}.items() if isinstance(v, Mapping | tuple)
    ]
    if nested and body_format != "json":
        raise reader.fail(f"nested parameter {nested[0]!r} needs body_format json")
    token_headers = reader.headers("token_headers")
    reader.headers("refresh_token_headers")
    # Not part of the spec (freshtoken does not run the authorization step),
    # but validated so GET /providers never serves a malformed entry.
    reader.params("authorization_params")
    permanent, transient = reader.error_codes()

    return ProviderSpec(
        name=name,
        display_name=reader.string("display_name") or name,
        auth_mode=auth_mode,
        authorization_url=urls["authorization_url"],
        token_url=urls["token_url"],
        refresh_url=urls["refresh_url"],
        token_request_auth_method=client_auth,
        body_format=body_format,
        token_params=token_params,
        refresh_params=refresh_params,
        token_expiration_buffer=reader.integer("token_expiration_buffer", minimum=0),
        refresh_lead_seconds=reader.integer("refresh_lead_seconds", minimum=0),
        default_token_lifetime_seconds=reader.integer("default_token_lifetime_seconds", minimum=1),
        refresh_token_idle_days=reader.integer("refresh_token_idle_days", minimum=1),
        permanent_error_codes=permanent,
        transient_error_codes=transient,
        error_in_ok_false=reader.boolean("error_in_ok_false"),
        docs=reader.string("docs"),
        categories=reader.string_list("categories"),
        raw=_freeze_entry(file, name, {k: v for k, v in entry.items() if k != "__alias_missing__"}),
        token_urls=MappingProxyType(token_urls),
        token_headers=token_headers,
    )


def _freeze_entry(file: str, name: str, entry: Mapping[Any, Any]) -> Mapping[str, Any]:
    """Deep-copy an entry into read-only, JSON-compatible containers."""

    def freeze(value: object) -> Any:
        if value is None or isinstance(value, str | bool | int | float):
            return value
        if isinstance(value, date):
            # YAML turns unquoted 2024-01-01 into a date; JSON has no date type.
            return value.isoformat()
        if isinstance(value, Mapping):
            return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
        if isinstance(value, list | tuple):
            return tuple(freeze(item) for item in value)
        # !!binary and !!set have no JSON form and no use in a provider entry.
        raise ProviderCatalogError(
            file, name, f"unsupported YAML value of type {_type_name(value)}"
        )

    frozen: Mapping[str, Any] = freeze(entry)
    return frozen


# Template helpers freshtoken's TWO_STEP/JWT grants evaluate (refresh/authmodes/templates.py).
_KNOWN_HELPERS: Final = frozenset({"base64", "sha256Hex", "sha256Base64", "fingerprint"})
_HELPER_CALL: Final = re.compile(r"\$\{([a-zA-Z0-9]+)\(")
_TEMPLATE_FIELDS: Final = (
    "token_url",
    "refresh_url",
    "token_params",
    "refresh_token_params",
    "token_headers",
    "refresh_token_headers",
    "token",
)


def _unsupported_feature(auth_mode: str, entry: Mapping[str, Any]) -> str | None:
    """Why freshtoken cannot keep this entry's credentials fresh, or None if it can.

    Skipping such an entry at load time is better than failing its refreshes: a refresh that
    cannot work would mark every connection of the provider as needing re-authorisation.
    """
    if auth_mode == "TWO_STEP":
        for feature in ("additional_steps", "assertion", "signature"):
            if entry.get(feature):
                return f"TWO_STEP with {feature!r} is not supported"
    if auth_mode in ("TWO_STEP", "JWT"):
        text = repr([entry.get(f) for f in _TEMPLATE_FIELDS])
        helpers = sorted(set(_HELPER_CALL.findall(text)) - _KNOWN_HELPERS)
        if helpers:
            return f"template helper ${{{helpers[0]}(...)}} is not supported"
    return None


def _freeze_value(reader: _EntryReader, value: object) -> Any:
    """Freeze a nested parameter value (JSON-compatible containers, read-only)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze_value(reader, v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze_value(reader, item) for item in value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise reader.fail(f"unsupported nested parameter value of type {_type_name(value)}")


def _thaw(value: Any) -> Any:
    """Turn frozen containers back into fresh dicts and lists for callers to own."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
