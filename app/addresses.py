"""Whose budget a request is charged to: its client address, IPv6 by /64.

The beacons' click budgets and the login throttle count per address; one client
holding a whole IPv6 /64 must not get a fresh budget per address it picks.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=65_536)
def address_key(client_ip: str | None) -> str:
    """Whose budget a batch is charged to.

    IPv6 by /64: one subscriber or host usually holds a whole /64 and could take a
    fresh address per batch. A client whose address cannot be told (a forged
    X-Forwarded-For entry) shares one budget with all such clients, so that
    breaking the header is no way around the budget.
    """
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return "?"
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:  # a dual-stack socket's IPv4 peer
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))
