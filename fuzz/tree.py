"""The signed test tree in process: seed messages for mutation, and an ``exchange`` that lets
the real iterator resolve against the tree's authoritative servers without sockets, optionally
through a hostile path that mutates every reply on its way."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import yaml

from resolver.resolve import transport
from resolver.config import parse_config
from resolver.frontend.pipeline import Frontend
from resolver.service import build
from tests.testtree import authority, zonedata

Tamper = Callable[[bytes], bytes]

QUERY_NAMES = ("{z}", "www.{z}", "nope.{z}", "a.b.c.{z}", "x.wild.{z}", "cname.{z}",
               "insecure.{z}")
QUERY_TYPES = ("A", "AAAA", "TXT", "DNSKEY", "DS", "NSEC3PARAM", "MX", "SOA")


@functools.lru_cache(maxsize=1)
def servers() -> dict[str, authority.Server]:
    """The tree's authoritative and lame servers by address, not listening anywhere."""
    out = {}
    for address, spec in zonedata.manifest()["servers"].items():
        if spec["role"] in ("authoritative", "lame"):
            out[address] = authority.Server(address, [zonedata.load(n) for n in spec["zones"]])
    return out


def _zone_server(zone: str) -> authority.Server:
    return servers()[zonedata.entry(zone)["server"]]


@functools.lru_cache(maxsize=1)
def seed_messages() -> tuple[bytes, ...]:
    """Queries (with and without EDNS, DO, CD, 0x20 case) and the tree's responses to them:
    referrals, answers with RRSIGs, NSEC and NSEC3 denials, DNSKEY sets, wildcards."""
    out: dict[bytes, None] = {}
    for zone in zonedata.manifest()["zones"]:
        server = _zone_server(zone)
        for template in QUERY_NAMES:
            name = dns.name.from_text(template.format(z=zone).replace("..", "."))
            for rdtype in QUERY_TYPES:
                query = dns.message.make_query(name, rdtype, want_dnssec=True)
                query.id = 0x2a2a
                out[query.to_wire()] = None
                response = server.handle(query.to_wire(), "tcp")
                if response:
                    out[response] = None
    plain = dns.message.make_query("WwW.RsaSha256.Example.", "A", use_edns=False)
    plain.flags |= dns.flags.CD
    out[plain.to_wire()] = None
    return tuple(out)


def seed_queries() -> tuple[bytes, ...]:
    return tuple(w for w in seed_messages() if not w[2] & 0x80)


def seed_responses() -> tuple[bytes, ...]:
    return tuple(w for w in seed_messages() if w[2] & 0x80)


def config_text(listen: str, extra: str = "") -> str:
    """A resolver config for the tree on ``listen``, with short timeouts."""
    return (authority.resolver_config_text().replace(
        f'listen: ["{zonedata.manifest().get("resolver_listen", "127.0.0.2:53")}"]',
        f'listen: ["{listen}"]') + "timeouts: {upstream_ms: 300, query_ms: 3000}\n" + extra)


def exchange_for(tamper: Tamper | None = None):
    """An ``Iterator`` exchange answered by the in-process tree. ``tamper`` rewrites each
    reply's wire first: what a hostile path or server could send. As from the network, an
    unparseable reply is a FORMERR and one whose ID or question differs is never taken (RFC 5452
    §9.1): the wait for the real one times out."""

    async def exchange(query: transport.Query, host: str, port: int = 53, *,
                       timeout: float = 1.2, tcp: bool = False) -> transport.Reply:
        server = servers().get(host)
        if server is None:
            raise transport.UpstreamError("network", f"{host}: port unreachable")
        start = time.monotonic()
        wire = server.handle(query.to_wire(), "tcp" if tcp else "udp")
        if wire is not None and tamper is not None:
            wire = tamper(wire)
        try:
            reply = dns.message.from_wire(wire) if wire is not None else None
        except dns.exception.DNSException:
            raise transport.UpstreamError("formerr", "unparseable reply") from None
        if reply is None or reply.id != query.id or not reply.flags & dns.flags.QR \
                or reply.question != query.message().question:
            raise transport.UpstreamError("timeout", f"no answer from {host}")
        if reply.flags & dns.flags.TC and not tcp:
            return await exchange(query, host, port, timeout=timeout, tcp=True)
        return transport.Reply(reply, tcp, time.monotonic() - start, len(wire), wire)

    return exchange


def frontend(tamper: Tamper | None = None, metrics=None, listen: str = "127.0.0.80:53"
             ) -> Frontend:
    """The real client front end (policy-free, no log) over a resolver that iterates against
    the in-process tree."""
    config = parse_config(yaml.safe_load(config_text(listen)))
    _, server = build(config, exchange=exchange_for(tamper), metrics=metrics)
    return server.frontend
