"""Where ``http`` and ``openai`` services may be: the host allow-list of a multi-user server.

With ``Policy.allowed_hosts`` None (the embedded platform, a ``--single-user`` server) a
service may be anywhere. Otherwise a service's URL must lead to public addresses only, or to
hosts the operator lists (``assay serve --allowed-hosts``, ``ASSAY_ALLOWED_HOSTS``: host
names, addresses, or networks such as ``10.0.0.0/8``). Refused unless listed: loopback,
link-local (``169.254.0.0/16`` and ``fe80::/10``, where cloud metadata services answer),
private (RFC 1918, ``fc00::/7``), shared (``100.64.0.0/10``), unspecified, multicast and
reserved addresses, also when written as IPv4-mapped, 6to4, Teredo or NAT64 IPv6 addresses.

A host name is resolved, and *every* address it resolves to must be allowed (``127.1`` or
``2130706433`` are host names that resolve to loopback). The check runs when a service is
created and again when each replica of its session starts, so a name whose DNS answer changed
to a private address since (DNS rebinding) is refused then. What this does not catch: a DNS
answer that changes between that check and a later connection of the same session; a network
egress firewall is the defence for that (``docs/design/security.md``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from assay import errors

__all__ = ["check_service_host", "not_public"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: IPv6 addresses that carry an IPv4 address in their last 32 bits (RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def not_public(address: Address) -> str | None:
    """Why ``address`` is not a public address (None: it is one)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        for inner in embedded:
            why = not_public(inner)
            if why is not None:
                return f"{why}, inside the IPv6 address {address}"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "not a public address"
    return None


def _parse(allowed: Iterable[str]) -> tuple[set[str], list[Network]]:
    """The listed host names (lower case) and networks (an address is a network of one)."""
    names: set[str] = set()
    networks: list[Network] = []
    for entry in allowed:
        text = entry.strip().strip("[]")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.lower().rstrip("."))
    return names, networks


def _listed(address: Address, networks: list[Network]) -> bool:
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(a.version == n.version and a in n for a in candidates for n in networks)


def _resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (raises ``socket.gaierror``)."""
    found: list[Address] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def check_service_host(
    url: str,
    allowed: tuple[str, ...] | None,
    *,
    what: str,
    field: str,
    unresolved_ok: bool,
) -> None:
    """Refuse ``url`` (ValidationError naming ``field``) unless every address of its host is
    public or listed in ``allowed``; None allows everything. A host name that does not
    resolve passes when ``unresolved_ok`` (a service created before its host exists) and is
    refused otherwise (a session starts only on addresses it has checked)."""
    if allowed is None:
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    names, networks = _parse(allowed)
    if host.lower() in names:
        return
    fix = (
        f"use a service on a public address, or ask the server's operator to allow this one "
        f"(assay serve --allowed-hosts {host}, or ASSAY_ALLOWED_HOSTS; a network such as "
        "10.0.0.0/8 works too)"
    )
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = _resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except (OSError, UnicodeError) as exc:
            if unresolved_ok:
                return
            raise errors.ValidationError(
                f"{what}: {field} {url!r}: the host name {host!r} does not resolve "
                f"({exc}); on this server a service's host is checked against the allowed "
                "hosts when its session starts, so it must resolve then. Check the URL, or "
                "start the session once the host exists",
                field=field,
                value=url,
            ) from None
    for address in addresses:
        why = not_public(address)
        if why is not None and not _listed(address, networks):
            seen = "is" if literal is not None else f"resolves to {address}, which is"
            raise errors.ValidationError(
                f"{what}: {field} {url!r} is refused: {host} {seen} {why}, and services on "
                f"this server may reach public addresses and the operator's allowed hosts "
                f"only; {fix}",
                field=field,
                value=url,
            )
