"""Public site keys and hostname rules."""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets

from publicsuffixlist import PublicSuffixList

from app.errors import InvalidInput

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def new_site_key() -> str:
    """128 random bits, URL-safe: unguessable, and short enough for a snippet."""
    return secrets.token_urlsafe(16)


def is_wellformed_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))


def normalize_hostname(raw: str) -> str:
    """Accept ``blog.example.org`` or a pasted URL; return the lower-case ASCII host name."""
    value = raw.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    value = value.rstrip(".")
    if not value:
        raise InvalidInput("enter a domain such as blog.example.org")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    try:
        ascii_host = value.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInput(f"{raw.strip()!r} is not a valid domain name") from exc
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidInput(f"{raw.strip()!r} is not a valid domain name (e.g. blog.example.org)")
    if is_public_suffix(ascii_host):
        # A site counts its hostnames' subdomains: on `com` it would count every .com page.
        raise InvalidInput(
            f"{ascii_host} is a public suffix (like com, co.uk or github.io), under which anyone "
            "can register a name; enter your own domain, e.g. blog.example.org"
        )
    return ascii_host


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # The list bundled with the package (ICANN and private sections): no network needed.
    return PublicSuffixList()


def is_public_suffix(host: str) -> bool:
    """``com``, ``co.uk``, ``github.io`` (but not ``alice.github.io``); a name under no
    listed suffix (``localhost``, ``intranet``) is not one."""
    return _public_suffixes().publicsuffix(host, accept_unknown=False) == host


def host_matches(host: str, allowed: frozenset[str]) -> bool:
    """True when ``host`` is an allowed hostname or a subdomain of one."""
    host = host.lower().rstrip(".")
    if host in allowed:
        return True
    parts = host.split(".")
    return any(".".join(parts[i:]) in allowed for i in range(1, len(parts)))
