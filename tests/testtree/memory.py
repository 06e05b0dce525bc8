"""The test tree's authoritative servers in memory, for the iterator run in-process: an
``exchange`` (resolver.resolve.transport.exchange's signature) that answers each query with
:class:`authority.Responder` for the zones the manifest puts on the address asked, with no
socket. ``tamper(address, query, response)`` may rewrite any reply as an on-path attacker
without the zones' private keys could, and ``extra`` adds servers (an attacker's) by address::

    upstream = memory.Upstream(tamper=forge)
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)

The forwarder's address answers recursively, as authority.py's does. Addresses that serve
nothing here (lame, unreachable, hostile servers) time out.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.message
import dns.name

from resolver.resolve import transport
from resolver.dnssec.anchors import RootHint, parse_trust_anchors
from resolver.resolve.iterator import Settings
from tests.testtree import NOW, authority, zonedata

Tamper = Callable[[str, dns.message.Message, dns.message.Message], dns.message.Message]


def settings(**overrides) -> Settings:
    """Iterator settings for the tree: its root hint and trust anchor, its validation time."""
    (hint_name, hint_address), = zonedata.manifest()["root_hints"].items()
    values = dict(root_hints=(RootHint(dns.name.from_text(hint_name), (hint_address,)),),
                  trust_anchors=parse_trust_anchors(authority.trust_anchor_lines()),
                  validation_time=NOW)
    values.update(overrides)
    return Settings(**values)


class Upstream:
    """The tree's authoritative servers as one exchange function; ``asked`` lists every
    (address, qname, qtype text) in order."""

    def __init__(self, tamper: Tamper | None = None,
                 extra: dict[str, Callable[[dns.message.Message], dns.message.Message]]
                 | None = None) -> None:
        self.responders = {
            address: authority.Responder([zonedata.load(z) for z in server["zones"]])
            for address, server in zonedata.manifest()["servers"].items()
            if server["role"] == "authoritative"}
        # The tree's forwarder: a recursive server holding every zone (authority.py's).
        self.responders[authority.FORWARDER] = authority.Responder(
            [zonedata.load(z) for z in authority._all_zones()], recursive=True,
            servfail_zones=authority._servfail_zones())
        self.tamper = tamper
        self.extra = extra or {}
        self.asked: list[tuple[str, str, str]] = []

    async def __call__(self, sent: transport.Query, host: str, port: int = 53,
                       **_) -> transport.Reply:
        query = sent.message()
        q = query.question[0]
        self.asked.append((host, q.name.to_text(), dns.rdatatype.to_text(q.rdtype)))
        if host in self.extra:
            response = self.extra[host](query)
        elif host in self.responders:
            response, _ = self.responders[host].respond(query)
        else:
            raise transport.UpstreamError("timeout", f"{host} does not answer here")
        if self.tamper is not None:
            response = self.tamper(host, query, response)
        wire = response.to_wire(max_size=65535)  # no datagram limit in memory: TCP's
        return transport.Reply(dns.message.from_wire(wire), False, 0.001, len(wire), wire)
