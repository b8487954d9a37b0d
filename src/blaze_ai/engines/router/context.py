"""Where a request comes from: the routing context and the trusted-proxy rule for client IPs."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """What a request tells the router about its origin (all optional)."""

    client_ip: str | None = None
    forwarded_for: tuple[str, ...] = ()  # X-Forwarded-For entries, left (client) to right
    api_key: str | None = None
    session_id: str | None = None


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """Parse trusted proxy addresses or CIDR blocks; a bad one raises ValueError naming it."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {cidr!r} is not an IP address or CIDR block") from exc
    return tuple(networks)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(ctx: RoutingContext, trusted: Sequence[Network]) -> str | None:
    """The real client: X-Forwarded-For is read only when the peer is a trusted proxy.

    Walks X-Forwarded-For from the right (the hop nearest us), skipping trusted proxies; the
    first untrusted address is the client. Entries left of it could be forged and are ignored.
    """
    if ctx.client_ip is None or not ctx.forwarded_for or not _trusted(ctx.client_ip, trusted):
        return ctx.client_ip
    for hop in reversed(ctx.forwarded_for):
        if not _trusted(hop, trusted):
            return hop.strip()
    return ctx.forwarded_for[0].strip()


def resolve(ctx: RoutingContext, trusted: Sequence[Network]) -> RoutingContext:
    """The context with ``client_ip`` set to the real client and the forwarded chain consumed."""
    if not ctx.forwarded_for:
        return ctx
    return replace(ctx, client_ip=client_address(ctx, trusted), forwarded_for=())


def context_from_headers(
    headers: Mapping[str, str], client_ip: str | None, *, session_header: str = "x-session-id"
) -> RoutingContext:
    """Build a context from HTTP headers (lower-case names) and the peer address."""
    forwarded = tuple(h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip())
    auth = headers.get("authorization", "")
    api_key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    return RoutingContext(
        client_ip=client_ip,
        forwarded_for=forwarded,
        api_key=api_key or None,
        session_id=headers.get(session_header.lower()) or None,
    )
