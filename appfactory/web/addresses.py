"""Client addresses: parsed with ipaddress, matched against networks, and keyed for rate limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# An IPv6 subscriber is handed at least a /64 (RFC 6177): every address in it is one client.
IPV6_CLIENT_PREFIX = 64
_HOST_BITS = (1 << (128 - IPV6_CLIENT_PREFIX)) - 1


def parse(text: str | None) -> Address | None:
    """The address `text` names (an IPv4-mapped IPv6 one as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.strip())  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address | None, networks: Iterable[Network]) -> bool:
    """Whether `address` is in one of `networks` (never, for no address)."""
    return address is not None and any(address in network for network in networks)


def budget_key(remote_addr: str | None) -> str:
    """Whose budget a request from `remote_addr` spends: IPv4 as it is, IPv6 by its /64."""
    if not remote_addr:
        return "unknown"
    if ":" not in remote_addr:  # IPv4 (or a hop count's unchecked text): no parsing on the hot path
        return remote_addr
    address = parse(remote_addr)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(address) & ~_HOST_BITS, IPV6_CLIENT_PREFIX)))
    return str(address) if address is not None else remote_addr
