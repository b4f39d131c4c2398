"""Where a webhook may go: the URL policy, checked at each delivery against the addresses it will use.

A job names its own webhook URL, so without a policy any caller could make the sender reach
what only this network can: loopback services, a cloud's metadata address, private ranges.
The destination's name is resolved at delivery and refused when any of its addresses is
loopback, private, link-local, multicast, reserved or otherwise not public, unless
``allowed_hosts`` names the host, the address or a range holding it. The sender then
connects only to the addresses checked here (workers/doors/webhook_post.py), so a second DNS
answer cannot move it elsewhere (no rebinding). Plain ``http`` is refused unless allowed.

A refusal's reason names the rule, never an address: the recorded error must not tell a
caller what an internal name resolves to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ResolveTimeout
from dataclasses import dataclass

from queue_config.jobs import split_webhook_url
from queue_config.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class WebhookRefused(Exception):
    """The policy refuses this destination; retrying will not help."""


class WebhookUnresolved(Exception):
    """The destination's name did not resolve (now: DNS may answer later)."""


@dataclass(frozen=True)
class Destination:
    """A checked destination: where to connect, and what to name in TLS and the Host header."""

    scheme: str
    #: The host as the URL names it (lower case): for SNI, the certificate check and ``Host``.
    host: str
    port: int
    #: Path and query, as the request line carries them.
    target: str
    #: The checked addresses, in the resolver's order; the only ones the sender connects to.
    addresses: tuple[str, ...]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: Lookups run here so that a delivery can stop waiting for a DNS server that does not answer
#: (``getaddrinfo`` itself has no timeout); a lookup left behind ties up one of these threads.
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


#: The kinds of address no webhook goes to unless allowed, as ``ipaddress`` tells them, and as a reason says them.
NOT_PUBLIC = {
    "is_unspecified": "an unspecified address", "is_loopback": "a loopback address",
    "is_link_local": "a link-local address", "is_multicast": "a multicast address",
    "is_reserved": "a reserved address", "is_private": "a private address",
}


def not_public(address: IPAddress) -> str | None:
    """Why ``address`` is no public destination, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind, reason in NOT_PUBLIC.items():
        if getattr(address, kind):
            return reason
    return None if address.is_global else "not a public address"


class WebhookPolicy:
    """Which webhook URLs are delivered to, and at which addresses."""

    def __init__(
        self, *, allow_http: bool = False, allowed_hosts: Iterable[str] = (), resolver: Resolver = resolve
    ) -> None:
        self.allow_http = allow_http
        self.resolver = resolver
        self.allowed_names: set[str] = set()
        self.allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (entry.strip().lower() for entry in allowed_hosts):
            try:
                self.allowed_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.allowed_names.add(entry.rstrip("."))

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        return cls(allow_http=settings.webhook_allow_http, allowed_hosts=settings.webhook_allowed_hosts)

    def destination(self, url: str, *, timeout_s: float | None = None) -> Destination:
        """Check ``url`` and resolve its host now, waiting at most ``timeout_s`` for the answer.

        Raises ``WebhookRefused`` (with the rule that refuses it) or ``WebhookUnresolved``.
        """
        try:
            parts = split_webhook_url(url)
        except ValueError as error:
            raise WebhookRefused(str(error)) from None
        if parts.scheme == "http" and not self.allow_http:
            raise WebhookRefused("plain http is not allowed (https only; see FRAMEQUEUE_WEBHOOK_ALLOW_HTTP)")
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = _LOOKUPS.submit(self.resolver, host, port).result(timeout=timeout_s)
        except ResolveTimeout:  # before OSError, which it subclasses
            raise WebhookUnresolved(f"the host name did not resolve within {timeout_s:g} s") from None
        except (OSError, UnicodeError):
            raise WebhookUnresolved("the host name did not resolve") from None
        if not addresses:
            raise WebhookUnresolved("the host name did not resolve")
        if host not in self.allowed_names:
            for address in addresses:
                ip = ipaddress.ip_address(address)
                reason = not_public(ip)
                if reason and not any(ip in network for network in self.allowed_networks):
                    raise WebhookRefused(f"the host resolves to {reason} (see FRAMEQUEUE_WEBHOOK_ALLOWED_HOSTS)")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Destination(parts.scheme, host, port, target, tuple(addresses))
