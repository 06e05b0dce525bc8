"""Authoritative DNS servers for the test tree, on 127.0.0.N port 53 (UDP and TCP).

Built on dnspython (messages) and asyncio (sockets); the zone data and the NSEC/NSEC3 records
of negative answers come from ``zonedata``. Each server answers the way RFC 1034 §4.3.2 and
RFC 4035 §3.1 ask of an authoritative server: AA answers, referrals with glue, RRSIGs, DS or the
no-DS proof with DO, NXDOMAIN/NODATA with SOA and proofs, wildcard synthesis with proofs, CNAME
and DNAME (RFC 6672 §3.1), DS from the parent side, REFUSED outside its zones, EDNS0 with a
buffer of 1232 (RFC 6891) and truncation, TCP with length framing (RFC 7766).

::

    from tests.testtree.authority import start_tree, start_forwarder

    with start_tree(faults={"lame.example.": {"refuse": True}}) as tree:
        ...                       # dig @127.0.0.10 ...
        tree.queries              # [Query(server, qname, qtype, do, transport, rd, cd), ...]
        tree.queried("www.rsasha256.example.", "A")

    with start_forwarder() as fwd:   # 127.0.0.60: a recursive stub serving the whole tree
        ...

Fault knobs (keywords of ``Server``, values of ``faults`` in ``start_tree``; also settable
while running with ``tree.set_faults``): ``drop`` (never answers), ``refuse`` (REFUSED to
everything), ``servfail``, ``truncate_udp`` (every UDP answer TC with no records),
``delay_ms``, ``tcp=False`` (no TCP listener; only at start), ``no_dnssec`` (ignores DO: never
any RRSIG/NSEC/NSEC3/DS beyond what the qtype asks for), ``formerr``, ``tcp_hang``,
``tcp_reset``, ``tcp_wrong_question`` and ``forge`` (a test's forger; see the README).

Only addresses in 127.0.0.0/8 are ever bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import datetime
import socket
import struct
import threading
import traceback
from collections.abc import Callable, Iterable

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from resolver.outgoing import DEFAULT_DO_NOT_QUERY

from . import HERE, NOW, zonedata

IN = dns.rdataclass.IN
A, AAAA, NS, SOA, CNAME, DNAME, MX, SRV = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.NS,
                                           dns.rdatatype.SOA, dns.rdatatype.CNAME,
                                           dns.rdatatype.DNAME, dns.rdatatype.MX,
                                           dns.rdatatype.SRV)
DS, RRSIG, NSEC, NSEC3, ANY = (dns.rdatatype.DS, dns.rdatatype.RRSIG, dns.rdatatype.NSEC,
                               dns.rdatatype.NSEC3, dns.rdatatype.ANY)

EDNS_PAYLOAD = 1232  # our own buffer size, and the most we send over UDP
MAX_CHAIN = 32  # CNAME/DNAME links one answer follows
TCP_IDLE = 10.0  # seconds before an idle TCP connection is closed
MAX_MESSAGE = 65535

FORWARDER = zonedata.manifest().get("forwarder", "127.0.0.60")
KNOBS = ("drop", "refuse", "servfail", "truncate_udp", "delay_ms", "tcp", "no_dnssec",
         "formerr", "tcp_hang", "tcp_reset", "tcp_wrong_question", "forge",
         "nsec3_flood", "refer")


def _name(n) -> dns.name.Name:
    return n if isinstance(n, dns.name.Name) else dns.name.from_text(n)


def check_address(address: str) -> str:
    if ipaddress.ip_address(address) not in ipaddress.ip_network("127.0.0.0/8"):
        raise ValueError(f"{address}: test servers only listen in 127.0.0.0/8")
    return address


# ---------------------------------------------------------------------------- answering


@dataclasses.dataclass
class _Step:
    """One pass of the RFC 1034 §4.3.2 algorithm over one zone."""
    kind: str  # answer | cname | referral | nodata | nxdomain | refused | yxdomain
    answer: list = dataclasses.field(default_factory=list)
    authority: list = dataclasses.field(default_factory=list)
    additional: list = dataclasses.field(default_factory=list)
    target: dns.name.Name | None = None  # next name for cname (also DNAME's synthesised CNAME)


class Responder:
    """Builds the response to one query from a set of zones; no I/O.

    ``recursive=True`` answers as a recursive server whose cache holds every zone given: RA set,
    AA clear, CNAMEs followed across zones. Names whose deepest zone is in ``servfail_zones``
    get SERVFAIL (what a resolver says when it cannot reach a zone)."""

    def __init__(self, zones: Iterable[zonedata.TestZone], *, recursive: bool = False,
                 servfail_zones: Iterable = (), errors: list | None = None) -> None:
        self.zones = {z.name: z for z in zones}
        self.recursive = recursive
        self.servfail_zones = {_name(z) for z in servfail_zones}
        self.errors = errors if errors is not None else []

    # ------------------------------------------------------------------ zone data

    def find_zone(self, qname: dns.name.Name, qtype: int = A) -> zonedata.TestZone | None:
        """The nearest enclosing zone (RFC 1034 §4.3.2 step 2); for DS at a zone apex, the
        parent zone when it is here too (RFC 4035 §3.1.4.1)."""
        name = qname
        while True:
            zone = self.zones.get(name)
            if zone is not None:
                if qtype == DS and name == qname and name != dns.name.root:
                    parent = self.find_zone(name.parent())
                    if parent is not None:
                        return parent
                return zone
            if name == dns.name.root:
                return None
            name = name.parent()

    @staticmethod
    def _node(zone: zonedata.TestZone, name: dns.name.Name):
        """The node of ``name`` if it holds data (NSEC3 owner names do not count)."""
        node = zone.zone.get_node(name)
        if node is None or not any(r.rdtype not in (NSEC3, RRSIG) for r in node.rdatasets):
            return None
        return node

    def _with_sigs(self, zone, rrset, do: bool) -> list:
        if rrset is None:
            return []
        out = [rrset]
        if do:
            sigs = zone.rrsigs(rrset.name, rrset.rdtype)
            if sigs is not None:
                out.append(sigs)
        return out

    def _soa(self, zone, do: bool) -> list:
        soa, sigs = zone.pair(zone.name, SOA)
        soa.ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308 §3
        return [soa] + ([sigs] if do and sigs is not None else [])

    def _proof(self, zone, do: bool, select: Callable[[], list]) -> list:
        """NSEC/NSEC3 records with their RRSIGs, from a zonedata selector."""
        if not do or zone.denial is None:
            return []
        try:
            pairs = select()
        except Exception:  # noqa: BLE001 - a gap in the helper must not kill the server
            self.errors.append(f"{zone.name}: denial selection failed\n{traceback.format_exc()}")
            return []
        out = []
        for rrset, sigs in pairs:
            out.append(rrset)
            if sigs is not None:
                out.append(sigs)
        return out

    def _addresses(self, zone, targets: Iterable[dns.name.Name], do: bool) -> list:
        """A/AAAA of ``targets`` inside ``zone``: authoritative data with RRSIGs (DO), glue
        below a cut without."""
        out = []
        for target in targets:
            if not target.is_subdomain(zone.name):
                continue
            glue = zone.below_cut(target) or target in zone.cuts
            for rdtype in (A, AAAA):
                rrset = zone.rrset(target, rdtype)
                if rrset is not None:
                    out += [rrset] if glue else self._with_sigs(zone, rrset, do)
        return out

    def _additional_for(self, zone, rrsets: list, do: bool) -> list:
        targets = []
        for rrset in rrsets:
            if rrset.rdtype == NS:
                targets += [rd.target for rd in rrset]
            elif rrset.rdtype == MX:
                targets += [rd.exchange for rd in rrset]
            elif rrset.rdtype == SRV:
                targets += [rd.target for rd in rrset]
        return self._addresses(zone, targets, do)

    # ------------------------------------------------------------------ one zone

    def _referral(self, zone, cut: dns.name.Name, do: bool) -> _Step:
        """RFC 1034 §4.3.2 step 3b, RFC 4035 §3.1.4: NS first, then DS or the no-DS proof."""
        ns = zone.rrset(cut, NS)
        step = _Step("referral", authority=[ns])
        if do:
            ds, sigs = zone.pair(cut, DS)
            if ds is not None:
                step.authority += [ds] + ([sigs] if sigs is not None else [])
            else:
                step.authority += self._proof(zone, do, lambda: zone.select_no_ds(cut))
        step.additional = self._addresses(zone, [rd.target for rd in ns], do)
        return step

    def lookup(self, zone: zonedata.TestZone, qname: dns.name.Name, qtype: int,
               do: bool) -> _Step:
        # step 3: match down, label by label, from the apex
        for depth in range(len(zone.name) + 1, len(qname) + 1):
            name = qname.split(depth)[1]
            if name in zone.cuts and not (name == qname and qtype == DS):
                return self._referral(zone, name, do)
            if name != qname:
                dname = zone.rrset(name, DNAME)
                if dname is not None:
                    return self._dname(zone, qname, dname, do)
        node = self._node(zone, qname)
        if node is not None:
            return self._at_node(zone, qname, qtype, do, node, qname)
        if zone.exists(qname):  # empty non-terminal
            return _Step("nodata", authority=self._soa(zone, do) +
                         self._proof(zone, do, lambda: zone.select_nodata(qname, qtype)))
        # step 3c: wildcard (RFC 4592)
        ce = zone.closest_encloser(qname)
        wildcard = zone.wildcard(ce)
        wnode = self._node(zone, wildcard)
        if wnode is not None and not zone.below_cut(wildcard):
            return self._at_node(zone, wildcard, qname=qname, qtype=qtype, do=do, node=wnode)
        return _Step("nxdomain", authority=self._soa(zone, do) +
                     self._proof(zone, do, lambda: zone.select_nxdomain(qname)))

    def _at_node(self, zone, owner: dns.name.Name, qtype: int, do: bool, node,
                 qname: dns.name.Name) -> _Step:
        """Answer from the node ``owner``: ``qname`` itself or the wildcard that matches it."""
        synth = owner != qname

        def rename(rrset):
            if rrset is None or not synth:
                return rrset
            out = dns.rrset.RRset(qname, rrset.rdclass, rrset.rdtype, rrset.covers)
            out.update(rrset)
            return out

        def data(rdtype):
            # without DO only what was asked for, DNSSEC types included (RFC 4035 §3.1)
            out = [rename(zone.rrset(owner, rdtype))]
            sigs = rename(zone.rrsigs(owner, rdtype)) if do else None
            if sigs is not None:
                out.append(sigs)
            return out

        if synth and do:  # RFC 4035 §3.1.3.3: prove that qname itself does not exist
            proof = self._proof(zone, do, lambda: zone.select_wildcard_answer(qname, owner))
        else:
            proof = []
        types = [r.rdtype for r in node.rdatasets if r.rdtype != RRSIG]
        if qtype == ANY:  # without DO no NSEC/NSEC3 either (RFC 4035 §3.1)
            answer = [r for t in types if do or t not in (NSEC, NSEC3) for r in data(t)]
            return _Step("answer", answer=answer, authority=proof)
        if qtype == RRSIG:
            sigs = [rename(zone.rrsigs(owner, t)) for t in types]
            sigs = [s for s in sigs if s is not None]
            if sigs:
                return _Step("answer", answer=sigs, authority=proof)
        elif qtype in types:
            answer = data(qtype)
            step = _Step("answer", answer=answer, authority=proof)
            if not synth:
                step.additional = self._additional_for(zone, answer[:1], do)
            return step
        elif CNAME in types:
            cname = data(CNAME)
            return _Step("cname", answer=cname, authority=proof, target=cname[0][0].target)
        # NODATA (RFC 2308 §2.2; RFC 4035 §3.1.3.1, §3.1.3.4)
        if synth:
            select = lambda: zone.select_wildcard_nodata(qname, qtype)  # noqa: E731
        else:
            select = lambda: zone.select_nodata(qname, qtype)  # noqa: E731
        return _Step("nodata", authority=self._soa(zone, do) + self._proof(zone, do, select))

    def _dname(self, zone, qname: dns.name.Name, dname: dns.rrset.RRset, do: bool) -> _Step:
        """RFC 6672 §3.1: the DNAME, then a CNAME synthesised from it (unsigned, TTL of the
        DNAME)."""
        answer = self._with_sigs(zone, dname, do)
        try:
            target = qname.relativize(dname.name).concatenate(dname[0].target)
        except dns.name.NameTooLong:
            return _Step("yxdomain", answer=answer)
        cname = dns.rrset.from_text(qname, dname.ttl, IN, CNAME, target.to_text())
        return _Step("cname", answer=answer + [cname], target=target)

    # ------------------------------------------------------------------ the whole answer

    def respond(self, query: dns.message.Message, *, dnssec: bool = True
                ) -> tuple[dns.message.Message, bool]:
        """The response to ``query``, and whether it is a referral (its glue is needed, so
        it is truncated rather than shortened when it does not fit)."""
        response = dns.message.make_response(query, recursion_available=self.recursive,
                                             our_payload=EDNS_PAYLOAD)
        response.flags |= query.flags & dns.flags.CD  # RFC 4035 §3.2.2
        if query.edns >= 0 and query.ednsflags & dns.flags.DO:
            response.ednsflags |= dns.flags.DO  # RFC 3225 §3
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891 §6.1.3
            return response, False
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response, False
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response, False
        q = query.question[0]
        if q.rdclass != IN or q.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            response.set_rcode(dns.rcode.REFUSED)
            return response, False
        do = dnssec and query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
        qname, qtype = q.name.canonicalize(), q.rdtype

        zone = self.find_zone(qname, qtype)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response, False
        if zone.name in self.servfail_zones:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response, False
        sections = ([], [], [])
        seen = {qname}
        first, referral, rcode = True, False, dns.rcode.NOERROR
        for _ in range(MAX_CHAIN):
            step = self.lookup(zone, qname, qtype, do)
            if first:
                referral = step.kind == "referral"
                if not self.recursive and not referral:
                    response.flags |= dns.flags.AA
                first = False
            if step.kind == "referral" and self.recursive:
                rcode = dns.rcode.SERVFAIL  # a zone this stub does not hold
                break
            for section, rrsets in zip(sections, (step.answer, step.authority, step.additional)):
                for rrset in rrsets:
                    if not any(r.name == rrset.name and r.rdtype == rrset.rdtype
                               and r.covers == rrset.covers for r in section):
                        section.append(rrset)
            rcode = {"nxdomain": dns.rcode.NXDOMAIN,
                     "yxdomain": dns.rcode.YXDOMAIN}.get(step.kind, dns.rcode.NOERROR)
            if step.kind != "cname" or qtype == CNAME:
                break
            target = step.target.canonicalize()
            if target in seen:  # a CNAME loop: what we have is the answer
                break
            seen.add(target)
            nxt = self.find_zone(target, qtype)
            if nxt is None:
                break  # out of our zones: the CNAME as it is
            if nxt.name in self.servfail_zones:
                rcode = dns.rcode.SERVFAIL
                break
            zone, qname = nxt, target
        if rcode == dns.rcode.SERVFAIL and self.recursive:
            sections = ([], [], [])
        response.answer, response.authority, response.additional = (list(s) for s in sections)
        response.set_rcode(rcode)
        return response, referral and not response.answer


# ---------------------------------------------------------------------------- servers


@dataclasses.dataclass(frozen=True)
class Query:
    """One query a test server received."""
    server: str  # the server's address
    qname: str  # lower case, absolute
    qtype: str  # "A", "DS", ...
    do: bool
    transport: str  # "udp" | "tcp"
    rd: bool = False
    cd: bool = False


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: "Server") -> None:
        self.server = server
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.server._udp_received(self.transport, data, addr)

    def error_received(self, exc) -> None:  # ICMP errors for replies: nothing to do
        pass


class Server:
    """One authoritative server: some zones (none: REFUSED to everything) on one address."""

    def __init__(self, address: str, zones: Iterable = (), *, port: int = 53,
                 recursive: bool = False, servfail_zones: Iterable = (),
                 drop: bool = False, refuse: bool = False, servfail: bool = False,
                 truncate_udp: bool = False, delay_ms: float = 0, tcp: bool = True,
                 no_dnssec: bool = False, max_udp: int = EDNS_PAYLOAD,
                 queries: list | None = None, errors: list | None = None,
                 on_query: Callable[[Query], None] | None = None, formerr: bool = False,
                 tcp_hang: bool = False, tcp_reset: bool = False,
                 tcp_wrong_question: bool = False, forge: Callable | None = None,
                 nsec3_flood: int = 0, refer: dict | None = None) -> None:
        self.address = check_address(address)
        self.port = port
        self.zones = [z if isinstance(z, zonedata.TestZone) else zonedata.load(z) for z in zones]
        self.errors = errors if errors is not None else []
        self.responder = Responder(self.zones, recursive=recursive,
                                   servfail_zones=servfail_zones, errors=self.errors)
        self.drop, self.refuse, self.servfail = drop, refuse, servfail
        self.truncate_udp, self.delay_ms, self.tcp = truncate_udp, delay_ms, tcp
        self.no_dnssec, self.max_udp = no_dnssec, max_udp
        self.formerr, self.tcp_hang, self.tcp_reset = formerr, tcp_hang, tcp_reset
        self.tcp_wrong_question, self.forge = tcp_wrong_question, forge
        self.nsec3_flood, self.refer = nsec3_flood, refer  # hostile behaviours (issue #7)
        self.queries = queries if queries is not None else []
        self.on_query = on_query
        self._udp = None
        self._tcp_server = None
        self._tasks: set[asyncio.Task] = set()

    def __repr__(self) -> str:
        zones = ",".join(z.name.to_text() for z in self.zones) or "-"
        return f"<Server {self.address} {zones}>"

    def set_faults(self, **knobs) -> None:
        for k, v in knobs.items():
            if k not in KNOBS:
                raise TypeError(f"unknown fault knob {k!r} (known: {', '.join(KNOBS)})")
            setattr(self, k, v)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self.address, self.port))
        if self.tcp:
            self._tcp_server = await asyncio.start_server(self._tcp_client, self.address,
                                                          self.port, reuse_address=True)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp_server is not None:
            self._tcp_server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
            self._tcp_server = None

    # ------------------------------------------------------------------ queries

    def handle(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query message, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - anything unparseable
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        if len(query.question) == 1:
            q = query.question[0]
            record = Query(self.address, q.name.to_text().lower(),
                           dns.rdatatype.to_text(q.rdtype),
                           bool(query.edns >= 0 and query.ednsflags & dns.flags.DO), transport,
                           bool(query.flags & dns.flags.RD), bool(query.flags & dns.flags.CD))
            self.queries.append(record)
            if self.on_query is not None:
                self.on_query(record)
        if self.drop:
            return None
        try:
            if self.formerr and query.edns >= 0:  # a server that knows no EDNS (RFC 6891 §7)
                response = dns.message.make_response(query)
                response.use_edns(False)
                response.set_rcode(dns.rcode.FORMERR)
                referral = False
            elif self.refuse or self.servfail:
                response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
                response.set_rcode(dns.rcode.REFUSED if self.refuse else dns.rcode.SERVFAIL)
                referral = False
            elif self.refer is not None:
                response, referral = _referral_to(query, self.refer), True
            else:
                response, referral = self.responder.respond(query, dnssec=not self.no_dnssec)
                if self.nsec3_flood:
                    _stuff_nsec3(response, self.zones, self.nsec3_flood)
            return self._render(query, response, referral, transport)
        except Exception:  # noqa: BLE001
            self.errors.append(f"{self.address}: {query.question}\n{traceback.format_exc()}")
            response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire(max_size=MAX_MESSAGE)

    def _render(self, query, response, referral: bool, transport: str) -> bytes:
        """Wire form; over UDP within the client's size (512 without EDNS, RFC 1035 §4.2.1;
        else its EDNS size, at most our own 1232, RFC 6891 §6.2.5), else TC (RFC 2181 §9)."""
        if transport == "tcp":
            return response.to_wire(max_size=MAX_MESSAGE)
        if self.truncate_udp:
            return _truncated(response)
        limit = 512 if query.edns < 0 else max(512, min(query.payload, self.max_udp))
        wire = response.to_wire(max_size=MAX_MESSAGE)
        if len(wire) <= limit:
            return wire
        if response.additional and not referral:  # optional data goes first
            response.additional = []
            wire = response.to_wire(max_size=MAX_MESSAGE)
            if len(wire) <= limit:
                return wire
        return _truncated(response)

    def _udp_received(self, transport, data: bytes, addr) -> None:
        reply = self.handle(data, "udp")
        if self.forge is not None:  # a test's forger: may send datagrams before the reply
            self.forge(transport, data, reply, addr)
        if reply is None:
            return
        if self.delay_ms:  # a timer of the loop: nothing blocks, other queries go on
            asyncio.get_running_loop().call_later(self.delay_ms / 1000, _send_later,
                                                  transport, reply, addr)
        else:
            transport.sendto(reply, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                try:
                    length = int.from_bytes(
                        await asyncio.wait_for(reader.readexactly(2), TCP_IDLE), "big")
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    break
                reply = self.handle(data, "tcp")
                if reply is None or self.tcp_hang:
                    continue  # drop: read on, never answer
                if self.tcp_wrong_question:
                    reply = _other_question(reply)
                if self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000)
                framed = len(reply).to_bytes(2, "big") + reply
                if self.tcp_reset:  # half the answer, then a reset (SO_LINGER 0)
                    writer.write(framed[:len(framed) // 2])
                    await writer.drain()
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    break
                writer.write(framed)
                await writer.drain()
        except asyncio.CancelledError:
            pass
        except ConnectionError:
            pass
        except Exception:  # noqa: BLE001
            self.errors.append(f"{self.address} TCP\n{traceback.format_exc()}")
        finally:
            writer.close()
            self._tasks.discard(task)


def _send_later(transport, reply: bytes, addr) -> None:
    """A delayed UDP reply (``delay_ms``), unless its server closed meanwhile."""
    if not transport.is_closing():
        transport.sendto(reply, addr)


def _referral_to(query: dns.message.Message, refer: dict) -> dns.message.Message:
    """A referral (no AA) to ``refer["zone"]`` with its ``nameservers`` ([name, address]) as
    NS and glue, whatever was asked: a server that sends resolvers back up or sideways."""
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    nameservers = refer["nameservers"]
    response.authority = [dns.rrset.from_text(refer["zone"], 3600, IN, NS,
                                              *(ns for ns, _ in nameservers))]
    response.additional = [dns.rrset.from_text(ns, 3600, IN, A, address)
                           for ns, address in nameservers]
    return response


def _stuff_nsec3(response: dns.message.Message, zones: list, count: int) -> None:
    """Add up to ``count`` NSEC3 RRsets of the answering zone, with their RRSIGs, to a negative
    answer given with DO: an NSEC3 proof flood (CVE-2023-50868)."""
    negative = response.rcode() == dns.rcode.NXDOMAIN or not response.answer
    if not negative or not response.ednsflags & dns.flags.DO:
        return
    soa = next((r for r in response.authority if r.rdtype == SOA), None)
    zone = next((z for z in zones if soa is not None and z.name == soa.name), None)
    if zone is None:
        return
    present = {r.name for r in response.authority if r.rdtype == NSEC3}
    for owner in [zone.nsec3_by_hash[h] for h in zone.nsec3_hashes][:count + len(present)]:
        if owner not in present and count > 0:
            response.authority += [r for r in zone.pair(owner, NSEC3) if r is not None]
            count -= 1


def _truncated(response: dns.message.Message) -> bytes:
    """The response with TC set and no records (header, question and OPT only)."""
    response.answer, response.authority, response.additional = [], [], []
    response.flags |= dns.flags.TC
    return response.to_wire(max_size=MAX_MESSAGE)


def _other_question(wire: bytes) -> bytes:
    """The reply with another question: ``mismatch.`` prefixed to the name asked."""
    response = dns.message.from_wire(wire)
    q = response.question[0]
    response.question = [dns.rrset.RRset(dns.name.Name((b"mismatch",) + q.name.labels),
                                         q.rdclass, q.rdtype)]
    return response.to_wire(max_size=MAX_MESSAGE)


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a message dnspython cannot parse: the header only (RFC 1035 §4.1.1)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    flags = 0x8000 | (wire[2] & 0x79) << 8 | dns.rcode.FORMERR  # QR, opcode, RD
    return wire[:2] + flags.to_bytes(2, "big") + bytes(8)


# ---------------------------------------------------------------------------- the tree



class LoopThread:
    """An asyncio loop in a daemon thread, for test servers: :meth:`start` runs ``open()`` on
    it and returns once that is done (raising what it raised, after ``close()``); :meth:`stop`
    ends the loop and runs ``close()`` there."""

    def __init__(self, name: str, open_, close) -> None:
        self.name, self._open, self._close = name, open_, close
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
            else:
                ready.set()
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                ready.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

class Tree:
    """A group of servers running on one event loop in a background thread."""

    def __init__(self, servers: list[Server], queries: list | None = None,
                 errors: list | None = None) -> None:
        self.servers = {s.address: s for s in servers}
        self.queries: list[Query] = queries if queries is not None else []
        self.errors: list[str] = errors if errors is not None else []
        self._thread: LoopThread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> "Tree":
        self._thread = LoopThread("testtree-servers", self._start_all, self._close_all)
        self._thread.start()
        return self

    async def _start_all(self) -> None:
        results = await asyncio.gather(*(s.start() for s in self.servers.values()),
                                       return_exceptions=True)
        for r in results:  # every start has finished: the caller closes what did start
            if isinstance(r, BaseException):
                raise r

    async def _close_all(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers.values()),
                             return_exceptions=True)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._thread.stop()
        self._thread = None

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ------------------------------------------------------------------ helpers for tests

    def server(self, key: str) -> Server:
        """The server of a zone name or an address."""
        return self.servers[_address_of(key)]

    def set_faults(self, key: str, **knobs) -> None:
        """Change fault knobs of a running server (``tcp`` only takes effect at start)."""
        self.server(key).set_faults(**knobs)

    def clear(self) -> None:
        self.queries.clear()

    def queried(self, qname: str | None = None, qtype: str | None = None, *,
                server: str | None = None, transport: str | None = None) -> list[Query]:
        """The recorded queries matching all the given fields (``server`` may be a zone)."""
        if qname is not None:
            qname = _name(qname).to_text().lower()
        address = _address_of(server) if server is not None else None
        return [q for q in list(self.queries)
                if (qname is None or q.qname == qname) and (qtype is None or q.qtype == qtype)
                and (address is None or q.server == address)
                and (transport is None or q.transport == transport)]


def _address_of(key: str) -> str:
    """An address, or the address of the server of a zone of the tree."""
    try:
        return str(ipaddress.ip_address(key))
    except ValueError:
        pass
    name = _name(key).to_text().lower()
    for address, s in zonedata.manifest()["servers"].items():
        if name in s["zones"]:
            return address
    entry = zonedata.entry(name)  # KeyError for names that are no zone of the tree
    raise ValueError(f"no test server serves {name} (its address {entry['server']} is "
                     f"{zonedata.manifest()['servers'].get(entry['server'], {}).get('role')})")


def _servfail_zones() -> list[str]:
    return [n for n, e in zonedata.manifest().get("scenario_zones", {}).items()
            if e["expect"]["zone"] == "servfail"]


def _all_zones() -> list[str]:
    m = zonedata.manifest()
    return list(m["zones"]) + list(m.get("scenario_zones", {}))


def _forwarder_server(address: str, port: int, queries, errors, on_query, knobs) -> Server:
    return Server(address, [zonedata.load(n) for n in _all_zones()], port=port, recursive=True,
                  servfail_zones=_servfail_zones(), queries=queries, errors=errors,
                  on_query=on_query, **knobs)


def start_tree(faults: dict[str, dict] | None = None, *, port: int = 53,
               forwarder: bool = False, on_query: Callable[[Query], None] | None = None,
               delay_ms: float = 0) -> Tree:
    """Start every server of tree.json (authoritative and lame ones; nothing at the
    unreachable addresses), with ``faults`` per zone name or address; with
    ``forwarder=True`` also the recursive stub at its address. ``delay_ms``: every server
    answers that long after a query arrives (the ``delay_ms`` knob, unless ``faults`` or a
    hostile server's own behaviour sets it): a network round trip, for benchmarks
    (bench/cold.py ``--rtt``). Returns the running Tree."""
    m = zonedata.manifest()
    knobs: dict[str, dict] = {}
    for key, value in (faults or {}).items():
        knobs[_address_of(key)] = dict(value)
    queries: list[Query] = []
    errors: list[str] = []
    servers = []
    for address, spec in m["servers"].items():
        kw = knobs.pop(address, {})
        if delay_ms:
            kw = {"delay_ms": delay_ms, **kw}
        if spec["role"] in ("authoritative", "lame", "hostile"):
            kw = {**spec.get("behaviour", {}), **kw}  # hostile servers' own knobs
            zones = [zonedata.load(n) for n in spec["zones"]]
            servers.append(Server(address, zones, port=port, queries=queries, errors=errors,
                                  on_query=on_query, **kw))
        elif spec["role"] == "forwarder" and forwarder:
            servers.append(_forwarder_server(address, port, queries, errors, on_query, kw))
        elif kw.keys() - {"delay_ms"}:
            raise ValueError(f"faults for {address}, where no server is started")
    if knobs:
        raise ValueError(f"faults for addresses outside the tree: {sorted(knobs)}")
    return Tree(servers, queries, errors).start()


def start_forwarder(address: str = FORWARDER, *, port: int = 53,
                    on_query: Callable[[Query], None] | None = None, **knobs) -> Tree:
    """The recursive stub on its own: answers for every name of the tree as a recursive
    server would (RA; DNSSEC records with DO; DS from the parent side; CNAMEs followed across
    zones; SERVFAIL for the zones no resolver can reach). For ``forward:`` tests."""
    queries: list[Query] = []
    errors: list[str] = []
    server = _forwarder_server(check_address(address), port, queries, errors, on_query, knobs)
    return Tree([server], queries, errors).start()


def tree_fixture(scope: str = "module", faults: dict[str, dict] | None = None, *,
                 forwarder: bool = False, port: int = 53):
    """A pytest fixture that yields a started Tree, stops it afterwards and fails the last
    test using it if a server hit an internal error::

        tree = tree_fixture()                      # in a test module (or conftest.py)
        lame_tree = tree_fixture("function", {"lame.example.": {"drop": True}})
        def test_x(tree): ...
    """
    import pytest

    @pytest.fixture(scope=scope)
    def tree():
        with start_tree(faults, forwarder=forwarder, port=port) as t:
            yield t
        assert not t.errors, "\n".join(t.errors)

    return tree


# ---------------------------------------------------------------------------- sample config


def trust_anchor_lines(manifest: dict | None = None) -> list[str]:
    """The root DS records as ". IN DS ..." lines."""
    manifest = manifest or zonedata.manifest()
    lines = []
    for line in (HERE / manifest["trust_anchor"]).read_text().splitlines():
        toks = line.split(";", 1)[0].split()
        if len(toks) >= 8 and toks[3] == "DS":
            lines.append(f"{toks[0]} IN DS {' '.join(toks[4:])}")
    return lines


def validation_time() -> str:
    return datetime.datetime.fromtimestamp(NOW, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outgoing_line() -> str:
    """The ``outgoing`` key of a resolver config for the tree: the tree's servers are on
    127.0.0.N, so loopback is taken out of the default ``do_not_query``; the rest stays."""
    prefixes = [prefix for prefix, _ in DEFAULT_DO_NOT_QUERY if prefix != "127.0.0.0/8"]
    return "outgoing: {do_not_query: [" + ", ".join(f'"{p}"' for p in prefixes) + "]}"


def resolver_config_text(manifest: dict | None = None) -> str:
    """A resolver config (the fixed keys of dnssec-sidecar's config) for the tree."""
    manifest = manifest or zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in trust_anchor_lines(manifest))
    forward = [n for n, e in manifest.get("scenario_zones", {}).items()
               if e.get("scenario") == "forward"]
    lines = [
        "# dnssec-sidecar config for the test tree (tests/testtree/README.md).",
        "# Start the tree with: python -m tests.testtree",
        "# Written by tests/testtree/generate.py and python -m tests.testtree.",
        f'listen: ["{manifest.get("resolver_listen", "127.0.0.2:53")}"]',
        f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]',
        f"trust_anchors: [{anchors}]",
        f'validation: {{time: "{validation_time()}"}}',
        outgoing_line(),
    ]
    for zone in forward:
        lines.append(f'forward: [{{zone: {zone}, addresses: ["{manifest["forwarder"]}"]}}]')
    return "\n".join(lines) + "\n"


def write_resolver_config(manifest: dict | None = None) -> str:
    text = resolver_config_text(manifest)
    path = HERE / ((manifest or zonedata.manifest()).get("resolver_config", "resolver.yaml"))
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return text
