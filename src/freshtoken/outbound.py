"""The outbound policy: what freshtoken accepts before it sends a secret anywhere, and what it
accepts back from the other end.

Every request freshtoken makes on its own (token endpoints today, webhooks too) carries a secret
or a token, so where it goes is checked first (:class:`OutboundPolicy`): http(s) only, no
userinfo, no fragment, no control characters or whitespace, and, in production, no loopback,
private, link-local or cloud-metadata address unless ``FRESHTOKEN_OUTBOUND_ALLOW_PRIVATE=true`` or
``FRESHTOKEN_OUTBOUND_ALLOW_HOSTS`` names the host. Development allows them (the mock provider
listens on 127.0.0.1). Redirects are never followed (the HTTP client is built with
``follow_redirects=False``), so a checked URL cannot bounce the request elsewhere.

What comes back is treated as hostile too: bodies are read incrementally up to
``FRESHTOKEN_PROVIDER_MAX_RESPONSE_BYTES`` (:func:`read_capped`), and any provider-chosen text
that freshtoken keeps (the error code) is cleaned by :func:`sanitize_provider_text` before it
reaches a log line, an API response or the database.

Residual risk, on purpose: the address check resolves the host name once, before the request;
a name whose DNS answer changes between the check and the connection (DNS rebinding) is not
caught here. Operators who care run freshtoken behind an egress proxy or firewall as well.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from freshtoken.providers.catalog import ProviderSpec
    from freshtoken.settings import Settings

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ERROR_TEXT_LIMIT",
    "PERMISSIVE",
    "OutboundDenied",
    "OutboundPolicy",
    "ResponseTooLarge",
    "read_capped",
    "sanitize_provider_text",
    "url_host_values",
]

DEFAULT_MAX_RESPONSE_BYTES: Final = 1024 * 1024
"""Default cap on a provider response body (``FRESHTOKEN_PROVIDER_MAX_RESPONSE_BYTES``)."""

ERROR_TEXT_LIMIT: Final = 64
"""Longest provider error code kept (OAuth codes are short words such as ``invalid_grant``)."""

# A hostname the policy will connect to: ASCII labels only (IDNs arrive as punycode).
_DNS_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
# C0/C1 controls, DEL, and the invisible format characters that can hide text on a terminal.
_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_REDACTED: Final = "[REDACTED]"

Resolver = Callable[[str], Iterable[str]]


class OutboundDenied(ValueError):
    """A URL the policy refuses. The message names the rule, never the URL or its values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResponseTooLarge(Exception):
    """A response body exceeded the configured cap (nothing past the cap was read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response body exceeds {limit} bytes")
        self.limit = limit


def _system_resolver(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        # Unresolvable now: the request itself will fail as a connection error.
        return []
    return [str(info[4][0]) for info in infos]


def _is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for loopback, RFC 1918, link-local (169.254.169.254, the metadata
    # address of AWS/GCP/Azure), CGNAT, ULA (fd00:ec2::254) and the unspecified address.
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class OutboundPolicy:
    """Where freshtoken may send a request. ``allow_private`` is True in development."""

    allow_private: bool = True
    allow_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=_system_resolver, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> OutboundPolicy:
        """The policy the settings ask for (development always allows private addresses)."""
        allow = settings.env == "development" or settings.outbound_allow_private
        hosts = frozenset(
            h.strip().lower().rstrip(".")
            for h in settings.outbound_allow_hosts.split(",")
            if h.strip()
        )
        return cls(allow_private=allow, allow_hosts=hosts, resolver=resolver or _system_resolver)

    def check(self, url: str) -> str:
        """Return ``url`` if a secret may be sent there; raise :class:`OutboundDenied` if not."""
        if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in url):
            raise OutboundDenied("URL contains whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise OutboundDenied("URL does not parse") from None
        if parts.scheme.lower() not in ("http", "https"):
            raise OutboundDenied("URL scheme must be http or https")
        if "@" in parts.netloc or parts.username is not None or parts.password is not None:
            raise OutboundDenied("URL must not carry userinfo")
        if parts.fragment or "#" in url:
            raise OutboundDenied("URL must not have a fragment")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise OutboundDenied("URL has no host")
        if port == 0:
            raise OutboundDenied("URL port must not be 0")
        literal = _ip_literal(host)
        if literal is None and not all(_DNS_LABEL.match(label) for label in host.split(".")):
            raise OutboundDenied("URL host is not a valid DNS name")
        if self.allow_private or host in self.allow_hosts:
            return url
        addresses = [literal] if literal is not None else list(self.resolver(host))
        if any(not _is_public(addr) for addr in addresses):
            if any(addr in self.allow_hosts for addr in addresses):
                return url
            raise OutboundDenied(
                "URL host is a loopback, private, link-local or metadata address "
                "(set FRESHTOKEN_OUTBOUND_ALLOW_PRIVATE or FRESHTOKEN_OUTBOUND_ALLOW_HOSTS)"
            )
        return url


PERMISSIVE: Final = OutboundPolicy()
"""Structural checks only (development): private addresses allowed."""


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def is_dns_label(value: str) -> bool:
    """True when ``value`` is one DNS label (what a placeholder in a host may be by default)."""
    return bool(_DNS_LABEL.match(value))


def sanitize_provider_text(
    value: str, *, secrets: Collection[str | None] = (), limit: int = ERROR_TEXT_LIMIT
) -> str:
    """Make provider-chosen text safe to log, return and store.

    Removes ANSI escape sequences, control characters (NUL, CR, LF, ...) and invisible format
    characters; replaces every occurrence of a secret the request carried (a provider that echoes
    the refresh token or client secret back); truncates to ``limit`` characters (``...`` marks a
    cut). Secrets are replaced before truncation, so a cut cannot leave half a secret behind.
    """
    text = _ANSI_ESCAPE.sub("", value)
    text = "".join(
        ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


def url_host_values(spec: ProviderSpec) -> Mapping[str, Collection[str]]:
    """The catalog entry's ``url_host_values``: values a host placeholder may take (by key)."""
    value: Any = spec.raw.get("url_host_values")
    if not isinstance(value, Mapping):
        return {}
    return {
        str(key): frozenset(str(v) for v in values)
        for key, values in value.items()
        if isinstance(values, list | tuple | frozenset)
    }


def read_capped(response: httpx.Response, limit: int, deadline: float | None = None) -> bytes:
    """Read a streamed response body incrementally, refusing past ``limit`` bytes.

    The Content-Length header is checked first (nothing is read from a body announced as too
    large); the chunks are counted as they arrive either way, so a lying or absent header cannot
    make freshtoken buffer more than ``limit`` plus one chunk. ``deadline`` (a
    ``time.monotonic()`` value) bounds the whole read: a provider trickling one byte at a time
    never trips the per-read timeout, so it is checked between chunks and raises
    ``httpx.ReadTimeout``.
    """
    announced = response.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise ResponseTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if deadline is not None and time.monotonic() > deadline:
            raise httpx.ReadTimeout("provider response exceeded the overall deadline")
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
