"""Which upstream addresses may be asked: ``outgoing.do_not_query``.

Zones name their servers: any zone can put any address in its NS records' glue or in the
A/AAAA records of its NS names. Left unfiltered, a zone points the resolver at itself (a query
loop over loopback), at the cloud's metadata service (169.254.169.254, fd00:ec2::254), at
multicast or broadcast. The addresses learned that way, and only those, are checked against the
``do_not_query`` prefixes and never asked if one covers them (like Unbound's
``do-not-query-address`` and ``do-not-query-localhost``). Addresses the configuration names
itself (root hints, forwarders) are never filtered: the operator chose them.

The default is every special-purpose block (IANA IPv4 and IPv6 Special-Purpose Address
Registries, RFC 6890) that can never hold a public name server, or that reaches this host or
its link. The private ranges (RFC 1918, RFC 4193, RFC 6598) are not in it: internal
authoritative servers live there. Add them where no zone may send the resolver inside the
network.
"""

from __future__ import annotations

import ipaddress
from socket import AF_INET, AF_INET6, inet_pton

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The default ``outgoing.do_not_query``, with why each prefix is there.
DEFAULT_DO_NOT_QUERY: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network (RFC 791, RFC 1122 §3.2.1.3): 0.0.0.0 reaches this host"),
    ("127.0.0.0/8", "loopback (RFC 1122 §3.2.1.3): this host, a query loop"),
    ("169.254.0.0/16", "link-local (RFC 3927): cloud metadata services at 169.254.169.254"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112 §4), and the limited broadcast 255.255.255.255"),
    ("::/128", "unspecified (RFC 4291 §2.5.2): reaches this host"),
    ("::1/128", "loopback (RFC 4291 §2.5.3)"),
    ("fe80::/10", "link-local (RFC 4291 §2.5.6)"),
    ("fd00:ec2::254/128", "the EC2 instance metadata service over IPv6"),
    ("ff00::/8", "multicast (RFC 4291 §2.7)"),
)


def default_prefixes() -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(prefix) for prefix, _ in DEFAULT_DO_NOT_QUERY)


class DoNotQuery:
    """The ``do_not_query`` prefixes. An IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2) is
    judged by the IPv4 address it carries: the socket sends it there. Each prefix is held as
    an integer network and mask: an address is read by ``inet_pton`` and compared in a few
    integer operations, not built as an ``ipaddress`` object (36 Python calls an address, on
    every glue record of every referral: issue #20)."""

    def __init__(self, prefixes: tuple[_Network, ...] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self._v4 = tuple(_masked(p) for p in self.prefixes if p.version == 4)
        self._v6 = tuple(_masked(p) for p in self.prefixes if p.version == 6)

    def covering(self, address: str) -> _Network | None:
        """The prefix that forbids asking ``address`` (an IPv4 or IPv6 address as text, as in
        an A or AAAA record), or None if it may be asked."""
        if not self.prefixes:
            return None
        return self.covering_packed(inet_pton(AF_INET6 if ":" in address else AF_INET, address))

    def covering_packed(self, packed: bytes) -> _Network | None:
        """``covering`` for an address in network order: 4 octets (IPv4) or 16 (IPv6)."""
        ip = int.from_bytes(packed)
        prefixes = self._v4
        if len(packed) == 16:
            if ip >> 32 == _MAPPED:
                ip &= _V4_ALL
            else:
                prefixes = self._v6
        for net, mask, prefix in prefixes:
            if ip & mask == net:
                return prefix
        return None


_MAPPED = 0xFFFF  # ::ffff:0:0/96 (RFC 4291 §2.5.5.2), the address shifted right by 32 bits
_V4_ALL = 0xFFFFFFFF


def _masked(prefix: _Network) -> tuple[int, int, _Network]:
    """``prefix`` as (network, mask, prefix): an address ``ip`` is in it when
    ``ip & mask == network``."""
    return int(prefix.network_address), int(prefix.netmask), prefix
