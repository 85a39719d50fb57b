"""Where a webhook may go: https, to a public address, checked at registration and again at
each send (no server-side request forgery into the tenant's network or ours).

A name is resolved once per send and the request connects to the very address that was checked
(the name still goes in the Host header and, for https, in TLS's SNI and certificate check), so
a DNS answer that changes between the check and the connection (DNS rebinding) cannot slip a
private address in. Redirects are never followed (the shared client's ``follow_redirects`` is
off), so a public endpoint cannot bounce the request inwards either.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from voucherd.config import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(ValueError):
    """The URL may not be called; the message says why, for the tenant to read."""


@dataclass(frozen=True)
class Target:
    """A checked URL: call ``url`` (the address in place of the name) with ``host`` as Host."""

    url: str
    host: str  # the Host header: the name, with the port when it is not the scheme's default
    server_name: str | None  # for TLS: the name the certificate must be for


def check_form(url: str, settings: Settings) -> str:
    """The URL's own form: scheme, a host, no credentials or fragment. Raises Refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"is not a URL: {exc}") from exc
    allowed = ("https", "http") if settings.allow_http_webhooks else ("https",)
    if parts.scheme not in allowed:
        raise Refused("must be an https URL")
    if not parts.hostname:
        raise Refused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not carry credentials (sign with the endpoint's secret instead)")
    if parts.fragment:
        raise Refused("must not have a #fragment")
    if port == 0:
        raise Refused("must not use port 0")
    return url


def _kind(address: Address) -> str | None:
    """Why an address is not public, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    if address.is_multicast or address.is_unspecified:
        return "not a unicast"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "a reserved"
    if not address.is_global:
        return "not a public"
    return None


def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"its host {host} does not resolve") from exc
    found: list[Address] = []
    for _, _, _, _, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise Refused(f"its host {host} does not resolve")
    return found


def resolve(url: str, settings: Settings) -> Target:
    """Check ``url``'s form and every address its host resolves to; the Target to call.

    Every address must pass, not just the one used: a name that resolves to a public and a
    private address is refused, as a resolver could hand out either later.
    """
    check_form(url, settings)
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    addresses = _resolve(host, port)
    for address in addresses:
        kind = _kind(address)
        if kind is None or (kind == "loopback" and settings.allow_loopback_webhooks):
            continue
        raise Refused(f"its host {host} resolves to {address}, {kind} address")
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{literal}:{port}"
    header = host if port == default else f"{host}:{port}"
    if ":" in host:
        header = f"[{host}]" if port == default else f"[{host}]:{port}"
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host=header,
        server_name=host if parts.scheme == "https" else None,
    )
