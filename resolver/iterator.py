"""Iterative resolution from the root with validation as it descends (RFC 1034 §5.3.3,
RFC 4035 §4-§5, RFC 9156).

Each zone cut carries its security state: the trust anchor or the parent's DS authenticates
its DNSKEY set, the parent's denial proof makes it insecure (RFC 4035 §5.2). Answers are
validated with the keys of the zone that served them; nothing from a zone its parent marks
signed is accepted without valid signatures. Forwarded zones are asked recursively (with CD)
and their answers validated the same way, the zones' keys found by walking DS records down
from the closest known secure zone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from resolver import transport
from resolver._fastverify import label_count
from resolver.cache import Answer, Cache, Proof
from resolver.dnssec import (Budget, ValidatorConfig, Verdict, authenticate_dnskeys, denial,
                             dnskey_tag, validate_rrset)
from resolver.ede import EDE
from resolver.outgoing import DoNotQuery

log = logging.getLogger(__name__)

A, AAAA, NS, SOA, DS, DNSKEY, CNAME, DNAME, RRSIG, NSEC, NSEC3 = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.DS,
    dns.rdatatype.DNSKEY, dns.rdatatype.CNAME, dns.rdatatype.DNAME, dns.rdatatype.RRSIG,
    dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
ROOT = dns.name.root
MAX_MINIMISE_LABELS = 10  # RFC 9156 §2.3: stop minimising deep names after this many steps
MAX_NOT_QUERIED_SHOWN = 4  # addresses outgoing.do_not_query left out, named in a failure's text
INSECURE_REASONS = frozenset((EDE.UNSUPPORTED_DNSKEY_ALGORITHM, EDE.UNSUPPORTED_DS_DIGEST_TYPE,
                              EDE.UNSUPPORTED_NSEC3_ITERATIONS))


class Denied(Exception):
    """A name in the resolution (a CNAME or DNAME target) is outside the client's policy: no
    query is sent for it. Carries the policy's decision."""

    def __init__(self, decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class ResolutionFailed(Exception):
    """The query cannot be answered: SERVFAIL with this EDE and reason."""

    def __init__(self, ede: EDE, reason: str, proof: Proof | None = None) -> None:
        super().__init__(reason)
        self.ede, self.reason, self.proof = ede, reason, proof


@dataclass(slots=True)
class Settings:
    """What the iterator needs from the configuration."""

    root_hints: list[tuple[dns.name.Name, list[str]]]
    trust_anchors: list[dns.rrset.RRset]
    forward: list[tuple[dns.name.Name, list[tuple[str, int]]]] = field(default_factory=list)
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)
    validation_time: int | None = None
    qname_minimisation: bool = True
    negative_trust_anchors: list[dns.name.Name] = field(default_factory=list)
    ipv4: bool = True
    ipv6: bool = True
    #: Addresses learned from zones (glue, NS names' A/AAAA) that are never asked; root hints
    #: and forwarders are not filtered. The configuration's default is in resolver.outgoing.
    do_not_query: tuple = ()  # of ipaddress networks
    max_upstream_queries: int = 64
    max_referral_depth: int = 30
    max_cname_chain: int = 12
    max_ns_lookups: int = 8
    max_ns_lookups_per_query: int = 16
    upstream_timeout: float = 1.2
    query_timeout: float = 4.0
    max_zones: int = 10000  # zone cuts remembered (Iterator.zones)
    max_servers: int = 10000  # server addresses whose round-trip times are kept (Infra)


@dataclass(slots=True)
class Zone:
    """A zone cut: where to ask, and whether and how its data is signed."""

    name: dns.name.Name
    servers: list[tuple[str, int]]
    ns_names: list[dns.name.Name] = field(default_factory=list)
    security: Verdict = Verdict.INDETERMINATE
    keys: dns.rrset.RRset | None = None
    ede: EDE | None = None
    reason: str = ""
    recursive: bool = False
    expires: float = float("inf")
    proof: list[str] = field(default_factory=list)  # how its security was established
    not_queried: list[str] = field(default_factory=list)  # addresses do_not_query left out
    parent: "Zone | None" = None

    def chain(self) -> list["Zone"]:
        """This zone and its ancestors up to the root, root first: the chain of trust."""
        zones, zone = [], self
        while zone is not None and len(zones) < 128:
            zones.append(zone)
            zone = zone.parent
        return zones[::-1]


@dataclass(slots=True)
class Context:
    """One client query's budgets and trail."""

    budget: Budget
    deadline: float
    queries: int = 0
    referrals: int = 0
    ns_lookups: int = 0
    resolving_ns: set = field(default_factory=set)
    ns_exhausted: set = field(default_factory=set)  # zones whose NS lookup budget ran out
    servers_asked: list[str] = field(default_factory=list)


class Infra:
    """Smoothed round-trip times per server address, for choosing whom to ask (like Unbound's
    infra cache): unknown servers first in random order, then the fastest; timeouts back off.
    Zones name the addresses, so at most ``max_servers`` are remembered: the one updated least
    recently is forgotten first (it is then an unknown server again)."""

    def __init__(self, max_servers: int) -> None:
        self.max_servers = max_servers
        self.srtt: OrderedDict[tuple[str, int], float] = OrderedDict()

    def order(self, servers: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return sorted(servers, key=lambda s: self.srtt.get(s, random.uniform(0, 0.005)))

    def success(self, server: tuple[str, int], rtt: float) -> None:
        old = self.srtt.get(server)
        self._set(server, rtt if old is None else 0.7 * old + 0.3 * rtt)

    def failure(self, server: tuple[str, int], timeout: float) -> None:
        self._set(server, min(max(self.srtt.get(server, 0.0) * 2, timeout), 120.0))

    def _set(self, server: tuple[str, int], srtt: float) -> None:
        self.srtt[server] = srtt
        self.srtt.move_to_end(server)
        if len(self.srtt) > self.max_servers:
            self.srtt.popitem(last=False)


def _import_rdata_classes() -> None:
    """dnspython imports a record type's module when it first parses one: done at start-up,
    not inside a client's first query (about 2 ms for a referral's NS and A records)."""
    for rdtype in (A, AAAA, NS, SOA, DS, DNSKEY, CNAME, DNAME, RRSIG, NSEC, NSEC3,
                   dns.rdatatype.NSEC3PARAM, dns.rdatatype.OPT, dns.rdatatype.PTR,
                   dns.rdatatype.MX, dns.rdatatype.TXT, dns.rdatatype.SRV):
        dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)


_import_rdata_classes()


def _retrieve(task: asyncio.Future) -> None:
    """Done callback of a query sent ahead: the outcome of one nobody awaits (its zone proved
    bogus, the lookup failed) is dropped without asyncio's "never retrieved" warning."""
    if not task.cancelled():
        task.exception()


def _rrsets(section, rdtype: int, covers: int = 0) -> list[dns.rrset.RRset]:
    return [r for r in section if r.rdtype == rdtype and r.covers == covers]


def _find(section, name: dns.name.Name, rdtype: int, covers: int = 0) -> dns.rrset.RRset | None:
    for r in section:
        if r.rdtype == rdtype and r.covers == covers and r.name == name:
            return r
    return None


def _sigs(section, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
    return _find(section, name, RRSIG, rdtype)


def _signers(reply: dns.message.Message) -> set[dns.name.Name]:
    return {rd.signer for section in (reply.answer, reply.authority)
            for r in section if r.rdtype == RRSIG for rd in r}


class Iterator:
    """Resolves names iteratively from the root hints, or through forwarders, validating."""

    def __init__(self, settings: Settings, cache: Cache, *, exchange=transport.exchange) -> None:
        self.s = settings
        self.cache = cache
        self.exchange = exchange
        self.infra = Infra(settings.max_servers)
        self.do_not_query = DoNotQuery(settings.do_not_query)
        self.zones: OrderedDict[dns.name.Name, Zone] = OrderedDict()
        self.anchors = {rrset.name: rrset for rrset in settings.trust_anchors}
        self.forwards = {name: servers for name, servers in settings.forward}
        # Security of zones met through forwarders, kept apart from the zone cuts used to route
        # queries so a forwarded walk never redirects iterative resolution.
        self.secured: dict[dns.name.Name, Zone] = {}
        self.stats = {"upstream_queries": 0, "upstream_timeouts": 0, "nta_uses": 0,
                      "not_queried": 0}
        self.on_rtt = None  # called with each upstream round trip in seconds
        self.on_event = None  # called with DNSSEC health events: "key_rollover", "nta_used"
        self.tap = None  # resolver.dnstap.Dnstap: told of each upstream query and reply
        self._key_tags: dict[dns.name.Name, frozenset[int]] = {}

    # --- time, budgets, zones -------------------------------------------------------------

    def now(self) -> int:
        """The validation time: the configured one (like Unbound's val-override-date), else
        the clock."""
        return self.s.validation_time if self.s.validation_time is not None else int(time.time())

    def new_context(self) -> Context:
        return Context(Budget(self.s.validator.limits), time.monotonic() + self.s.query_timeout)

    def _spend_query(self, ctx: Context) -> None:
        if ctx.queries >= self.s.max_upstream_queries:
            raise ResolutionFailed(EDE.OTHER, f"budget exhausted: {self.s.max_upstream_queries} "
                                   "upstream queries per client query")
        ctx.queries += 1
        self.stats["upstream_queries"] += 1

    def _nta_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The negative trust anchor ``name`` is at or below, its use counted and logged
        (RFC 7646: no validation below it); None outside every NTA."""
        for nta in self.s.negative_trust_anchors:
            if name.is_subdomain(nta):
                self.stats["nta_uses"] += 1
                self._event("nta_used")
                log.warning("negative trust anchor %s applied to %s", nta, name)
                return nta
        return None

    def _remember(self, zone: Zone) -> Zone:
        self.zones[zone.name] = zone
        self.zones.move_to_end(zone.name)
        while len(self.zones) > self.s.max_zones:
            self.zones.popitem(last=False)
        return zone

    def _known_zone(self, name: dns.name.Name) -> Zone | None:
        zone = self.zones.get(name)
        if zone is not None and zone.expires <= time.monotonic():
            del self.zones[name]
            return None
        return zone

    def _root(self) -> Zone:
        zone = self._known_zone(ROOT)
        if zone is None:
            servers = [(addr, 53) for _, addrs in self.s.root_hints for addr in addrs
                       if self._family_ok(addr)]
            zone = self._remember(Zone(ROOT, servers, [n for n, _ in self.s.root_hints]))
        return zone

    def _family_ok(self, addr: str) -> bool:
        return self.s.ipv6 if ":" in addr else self.s.ipv4

    def _closest_zone(self, name: dns.name.Name) -> Zone:
        """The deepest known zone cut or forward zone enclosing ``name``."""
        candidate = name
        while True:
            if candidate in self.forwards:
                return self._forward_zone(candidate)
            zone = self._known_zone(candidate)
            if zone is not None:
                return zone
            if candidate == ROOT:
                return self._root()
            candidate = candidate.parent()

    def _forward_zone(self, name: dns.name.Name) -> Zone:
        zone = self._known_zone(name)
        if zone is None or not zone.recursive:
            zone = self._remember(Zone(name, list(self.forwards[name]), recursive=True))
        return zone

    # --- asking servers -------------------------------------------------------------------

    async def _ask(self, zone: Zone, qname: dns.name.Name, qtype: int,
                   ctx: Context) -> tuple[dns.message.Message, str]:
        """Ask the zone's servers until one gives a usable reply; returns it and its kind."""
        if not zone.servers:
            await self._find_server_addresses(zone, ctx)
        last = "no server address"
        if zone.not_queried and not zone.servers:
            last += (" outside outgoing.do_not_query (not asked: "
                     f"{', '.join(zone.not_queried)})")
        for server in self.infra.order(zone.servers):
            if time.monotonic() >= ctx.deadline:
                break
            self._spend_query(ctx)
            query = transport.make_query(qname, qtype, recursion=zone.recursive)
            ctx.servers_asked.append(f"{server[0]}:{server[1]}")
            tap = self.tap
            if tap is not None:
                query_wire, sent = query.to_wire(), time.time_ns()
                tap.resolver_query(query_wire, server, zone.name, sent, forwarder=zone.recursive)
            try:
                reply = await self.exchange(query, server[0], server[1],
                                            timeout=self.s.upstream_timeout)
            except transport.UpstreamError as exc:
                self.infra.failure(server, self.s.upstream_timeout)
                if exc.kind == "timeout":
                    self.stats["upstream_timeouts"] += 1
                last = f"{server[0]}: {exc}"
                continue
            if tap is not None:
                tap.resolver_response(query_wire, reply.wire or reply.message.to_wire(), server,
                                      zone.name, reply.tcp, sent, time.time_ns(),
                                      forwarder=zone.recursive)
            if self.on_rtt is not None:
                self.on_rtt(reply.rtt)
            kind = self._classify(zone, qname, qtype, reply.message)
            if kind == "lame":
                self.infra.failure(server, self.s.upstream_timeout)  # ask the others first
                last = (f"{server[0]} answered {dns.rcode.to_text(reply.message.rcode())} "
                        f"for {qname} in {zone.name}")
                continue
            self.infra.success(server, reply.rtt)
            return reply.message, kind
        raise ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY,
                               f"no server of {zone.name} answered for {qname}: {last}")

    def _ask_ahead(self, zone: Zone, qname: dns.name.Name, qtype: int,
                   ctx: Context) -> asyncio.Future:
        """Start :meth:`_ask` now, so that the query travels while the caller validates: its
        reply is classified and validated only when awaited, with the zone's security then
        established (RFC 4035 §5.2)."""
        task = asyncio.ensure_future(self._ask(zone, qname, qtype, ctx))
        task.add_done_callback(_retrieve)
        return task

    def _ask_child_ahead(self, child: Zone, referral: dns.message.Message, name: dns.name.Name,
                         qtype: int, labels: int, minimise: bool, ctx: Context,
                         ) -> tuple[asyncio.Future | None, tuple | None]:
        """The queries a new child zone will be asked, sent before its DS and DNSKEY set are
        validated: the DNSKEY set when the referral holds a DS (first: it is needed first),
        and the lookup's next question. Only for a child with glue (no NS lookups twice)."""
        if not child.servers:
            return None, None
        keys = None
        if _find(referral.authority, child.name, DS) is not None:
            keys = self._ask_ahead(child, child.name, DNSKEY, ctx)
        question = self._question(child, name, qtype, labels, minimise)
        return keys, (child, question, self._ask_ahead(child, *question, ctx))

    async def _find_server_addresses(self, zone: Zone, ctx: Context) -> None:
        """Resolve the zone's nameserver names that came without glue, with loop protection
        (RFC 1034 §5.3.3 step 3) and NXNS bounds like Unbound's target fetch limits: at most
        ``max_ns_lookups`` names for this delegation and ``max_ns_lookups_per_query`` for the
        client query; a name whose A lookup is NXDOMAIN gets no AAAA lookup (RFC 8020)."""
        lookups = 0
        for ns in zone.ns_names:
            if lookups >= self.s.max_ns_lookups or zone.name in ctx.ns_exhausted or \
                    ctx.ns_lookups >= self.s.max_ns_lookups_per_query:
                ctx.ns_exhausted.add(zone.name)  # not again for a retry without minimisation
                raise ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY, (
                    f"no address for the NS names of {zone.name} within the NS lookup budget "
                    f"({self.s.max_ns_lookups} per delegation, "
                    f"{self.s.max_ns_lookups_per_query} per query)"))
            if ns in ctx.resolving_ns or ns.is_subdomain(zone.name):
                continue  # in-bailiwick names need glue; asking the zone itself would loop
            ctx.resolving_ns.add(ns)
            ctx.ns_lookups += 1
            lookups += 1
            try:
                for rdtype, wanted in ((A, self.s.ipv4), (AAAA, self.s.ipv6)):
                    if not wanted:
                        continue
                    try:
                        answer = await self.chase(ns, rdtype, ctx)
                    except ResolutionFailed:
                        continue
                    if answer.rcode == dns.rcode.NXDOMAIN:
                        break
                    for rrset in answer.rrsets:
                        if rrset.rdtype == rdtype:
                            zone.servers += self._askable(rrset, zone.not_queried)
            finally:
                ctx.resolving_ns.discard(ns)
            if zone.servers:
                return

    def _classify(self, zone: Zone, qname: dns.name.Name, qtype: int,
                  reply: dns.message.Message) -> str:
        """What kind of reply this is for the question asked of ``zone`` (RFC 1034 §5.3.3
        step 4; Unbound's response types): answer, nxdomain, nodata, referral or lame."""
        rcode = reply.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return "nxdomain"
        if rcode != dns.rcode.NOERROR:
            return "lame"
        for rrset in reply.answer:
            if rrset.name == qname and rrset.rdtype in (qtype, CNAME):
                return "answer"
            if rrset.rdtype == DNAME and qname.is_subdomain(rrset.name) and qname != rrset.name \
                    and rrset.name.is_subdomain(zone.name):  # in bailiwick only (RFC 2181 §5.4.1)
                return "answer"
        if not zone.recursive and not reply.flags & dns.flags.AA:
            for rrset in _rrsets(reply.authority, NS):
                cut = rrset.name
                if cut == zone.name or not cut.is_subdomain(zone.name):
                    continue  # upward or sideways: lame (RFC 1034 §5.3.3 step 4c)
                if not qname.is_subdomain(cut) or (qtype == DS and cut == qname):
                    continue  # a DS lives on the parent side of its cut (RFC 4035 §3.1.4.1)
                return "referral"
            return "lame"  # neither authoritative nor a downward referral
        if reply.answer:
            return "lame"  # an answer about something else
        return "nodata"

    # --- chain of trust ---------------------------------------------------------------------

    async def _establish(self, child: Zone, parent: Zone, reply: dns.message.Message | None,
                         ctx: Context, keys: asyncio.Future | None = None) -> Zone:
        """Decide the child zone's security from its parent (RFC 4035 §5.2): a validated DS
        leads to its DNSKEY set (``keys``: its query, sent ahead); a proven absence of DS makes
        it insecure."""
        name = child.name
        nta = self._nta_for(name)
        if nta is not None:
            child.security, child.reason = Verdict.INSECURE, f"negative trust anchor {nta}"
            child.proof.append(f"nta {nta}")
            return child
        if name in self.anchors:
            return await self._load_keys(child, self.anchors[name], ctx, f"anchor {name}", keys)
        if parent.security is Verdict.INSECURE:
            child.security = Verdict.INSECURE
            child.proof.append(f"parent {parent.name} insecure")
            return child
        if parent.security is Verdict.BOGUS:
            child.security, child.ede, child.reason = parent.security, parent.ede, parent.reason
            return child
        ds = _find(reply.authority, name, DS) if reply is not None else None
        proof_rrsets = [] if reply is None or ds is not None else self._denial_rrsets(reply)
        if ds is None and not proof_rrsets:
            ds_reply, kind = await self._ask(parent, name, DS, ctx)
            if kind == "answer":
                ds = _find(ds_reply.answer, name, DS)
                reply = ds_reply
            if ds is None:
                reply = ds_reply
                proof_rrsets = self._denial_rrsets(ds_reply)
        if ds is not None:
            if keys is not None:
                await asyncio.sleep(0)  # the queries sent ahead leave before the DS is validated
            where = reply.answer if _find(reply.answer, name, DS) is not None else reply.authority
            result = validate_rrset(ds, _sigs(where, name, DS), parent.keys, now=self.now(),
                                    budget=ctx.budget, config=self.s.validator)
            if not result.secure:
                return self._bogus(child, result.ede, f"DS of {name}: {result.reason}")
            child.proof.append(f"ds {name} " + " ".join(
                f"{rd.key_tag}/{rd.algorithm}/{rd.digest_type}" for rd in ds))
            return await self._load_keys(child, ds, ctx, f"DS from {parent.name}", keys)
        self._check_signatures(proof_rrsets, reply, parent, ctx)
        proof = denial.prove_no_ds(name, proof_rrsets, config=self.s.validator,
                                   budget=ctx.budget)
        if proof.verdict is Verdict.BOGUS:
            proof = denial.prove_nodata(name, DS, proof_rrsets, config=self.s.validator,
                                        budget=ctx.budget)
        if proof.verdict is Verdict.BOGUS:
            return self._bogus(child, proof.ede or EDE.DNSSEC_BOGUS,
                               f"no DS and no proof of its absence for {name}: {proof.reason}")
        child.security = Verdict.INSECURE
        child.proof.append(f"no-ds {name} {proof.kind}")
        return child

    async def _load_keys(self, zone: Zone, trust: dns.rrset.RRset, ctx: Context, how: str,
                         sent: asyncio.Future | None = None) -> Zone:
        """Fetch (or await, ``sent`` ahead) and authenticate the zone's DNSKEY set
        (RFC 4035 §5.2)."""
        if sent is None:
            sent = self._ask(zone, zone.name, DNSKEY, ctx)
        reply, kind = await sent
        keys = _find(reply.answer, zone.name, DNSKEY) if kind == "answer" else None
        if keys is None:
            return self._bogus(zone, EDE.DNSKEY_MISSING, f"{zone.name} has no DNSKEY set ({how})")
        result = authenticate_dnskeys(keys, _sigs(reply.answer, zone.name, DNSKEY), trust,
                                      now=self.now(), budget=ctx.budget, config=self.s.validator)
        if result.verdict is Verdict.INSECURE:
            zone.security, zone.ede, zone.reason = Verdict.INSECURE, result.ede, result.reason
            zone.proof.append(f"insecure {zone.name}: {result.reason}")
            return zone
        if not result.secure:
            return self._bogus(zone, result.ede, result.reason)
        zone.security, zone.keys = Verdict.SECURE, keys
        tags = frozenset(dnskey_tag(rd) for rd in keys)
        seen = self._key_tags.get(zone.name)
        if seen is not None and seen != tags:
            self._event("key_rollover")
            log.info("DNSKEY set of %s changed: %s -> %s", zone.name, sorted(seen), sorted(tags))
        self._key_tags[zone.name] = tags
        zone.proof.append(f"dnskey {zone.name} {result.key.tag}/{result.key.algorithm} ({how})")
        zone.expires = time.monotonic() + max(1, result.ttl or 0)
        return zone

    def _event(self, event: str) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _bogus(self, zone: Zone, ede: EDE | None, reason: str) -> Zone:
        zone.security, zone.ede, zone.reason = Verdict.BOGUS, ede or EDE.DNSSEC_BOGUS, reason
        zone.expires = time.monotonic() + 60  # RFC 6840 §3.1: remember failures briefly
        return zone

    def _denial_rrsets(self, reply: dns.message.Message) -> list[dns.rrset.RRset]:
        """The NSEC and NSEC3 RRsets of a reply. More NSEC3 RRsets than one proof may use is a
        proof flood (CVE-2023-50868), refused before any signature is checked."""
        rrsets = [r for r in reply.authority if r.rdtype in (NSEC, NSEC3)]
        count, limit = sum(r.rdtype == NSEC3 for r in rrsets), \
            self.s.validator.limits.max_nsec3_per_proof
        if count > limit:
            raise ResolutionFailed(EDE.DNSSEC_BOGUS, f"validation budget exhausted: {count} "
                                   f"NSEC3 records in one answer, more than {limit} per proof")
        return rrsets

    def _check_signatures(self, rrsets: list[dns.rrset.RRset], reply: dns.message.Message,
                          zone: Zone, ctx: Context) -> list[tuple]:
        """Validate each RRset with the zone's keys; raise ResolutionFailed on the first that
        does not validate. Returns the signatures' evidence."""
        evidence = []
        for rrset in rrsets:
            section = reply.answer if rrset in reply.answer else reply.authority
            result = validate_rrset(rrset, _sigs(section, rrset.name, rrset.rdtype), zone.keys,
                                    now=self.now(), budget=ctx.budget, config=self.s.validator)
            if not result.secure:
                raise ResolutionFailed(result.ede or EDE.DNSSEC_BOGUS,
                                       f"zone {zone.name}: {result.reason}")
            sig = result.rrsig
            evidence.append((str(rrset.name), dns.rdatatype.to_text(rrset.rdtype),
                             str(sig.signer), sig.key_tag, int(sig.algorithm), sig.inception,
                             sig.expiration, result.ttl))
        return evidence

    # --- resolution -----------------------------------------------------------------------

    async def chase(self, qname: dns.name.Name, qtype: int, ctx: Context,
                    permit=None) -> Answer:
        """Resolve ``qname``/``qtype`` following CNAME and DNAME chains (RFC 1034 §3.6.2,
        RFC 6672 §3.2), each step validated in its own zone. ``permit(name)``, when given, is
        asked before any CNAME or DNAME target is resolved; a refusal raises :class:`Denied`
        before a query for the target leaves."""
        rrsets: list[dns.rrset.RRset] = []
        verdict = Verdict.SECURE
        proof = Proof()
        name, seen = qname, {qname}
        for _ in range(self.s.max_cname_chain + 1):
            answer = await self.lookup(name, qtype, ctx)
            rrsets += answer.rrsets
            if sum(r.rdtype == CNAME for r in rrsets) > self.s.max_cname_chain:
                raise ResolutionFailed(EDE.OTHER, f"CNAME chain from {qname} longer than "
                                       f"{self.s.max_cname_chain}", proof)
            verdict = _weaker(verdict, answer.verdict)
            proof.signatures += answer.proof.signatures
            proof.notes += answer.proof.notes
            proof.zone = answer.proof.zone
            proof.zones += [z for z in answer.proof.zones if z not in proof.zones]
            proof.denial = answer.proof.denial or proof.denial
            target = _chain_end(name, qtype, answer.rrsets)
            if target is None or not answer.rrsets:
                return Answer(answer.rcode, verdict, rrsets, answer.authority, answer.ede,
                              answer.reason, proof, answer.ttl)
            if target in seen:
                raise ResolutionFailed(EDE.OTHER, f"CNAME loop at {target}", proof)
            if permit is not None:
                decision = permit(target)
                if not decision.allowed:
                    raise Denied(decision)
            seen.add(target)
            name = target
        raise ResolutionFailed(EDE.OTHER, f"CNAME chain longer than {self.s.max_cname_chain}",
                               proof)

    async def lookup(self, name: dns.name.Name, qtype: int, ctx: Context) -> Answer:
        """The validated answer for exactly ``name``/``qtype`` (a CNAME at the name counts)."""
        cached = self.cache.get(name, qtype)
        if cached is None and qtype != CNAME:
            cached = self.cache.get(name, CNAME)
        if cached is not None:
            return cached
        zone = self._closest_zone(name.parent() if qtype == DS and name != ROOT else name)
        if zone.name == ROOT and not zone.recursive and zone.security is Verdict.INDETERMINATE:
            zone = await self._prime_root(zone, ctx)  # forwarded answers are judged one by one
        minimise = self.s.qname_minimisation and not zone.recursive
        labels = len(zone.name.labels) + 1
        ahead = None  # (zone, question, task): sent while the zone was being established
        try:
            while True:
                if ctx.referrals > self.s.max_referral_depth:
                    raise ResolutionFailed(EDE.OTHER, f"more than {self.s.max_referral_depth} "
                                           "referrals")
                if zone.security is Verdict.BOGUS:
                    raise ResolutionFailed(zone.ede or EDE.DNSSEC_BOGUS, zone.reason,
                                           Proof(zone.name, notes=list(zone.proof)))
                question = self._question(zone, name, qtype, labels, minimise)
                qname, qt = question
                if ahead is not None and ahead[0] is zone and ahead[1] == question:
                    sent = ahead[2]
                else:
                    if ahead is not None:
                        ahead[2].cancel()
                    sent = self._ask(zone, qname, qt, ctx)
                ahead = None
                try:
                    reply, kind = await sent
                except ResolutionFailed:
                    if qname == name:
                        raise
                    minimise = False  # relaxed: some servers mishandle minimised queries
                    continue
                if kind == "referral":
                    ctx.referrals += 1
                    child = self._delegation(zone, reply, qname)
                    labels = len(child.name.labels) + 1
                    if child.security is Verdict.INDETERMINATE:
                        keys, ahead = self._ask_child_ahead(child, reply, name, qtype, labels,
                                                            minimise, ctx)
                        try:
                            child = await self._establish(child, zone, reply, ctx, keys)
                        finally:
                            if keys is not None:
                                keys.cancel()  # not needed: no DS, an anchor, an NTA
                        self._remember(child)
                    zone = child
                    continue
                if qname != name:
                    if kind == "nxdomain":
                        minimise = False  # RFC 9156 §2.3 relaxed: confirm with the full name
                    else:
                        labels += 1
                    continue
                signers = {s for s in _signers(reply) if s != zone.name
                           and s.is_subdomain(zone.name) and name.is_subdomain(s)}
                if signers and zone.security is Verdict.SECURE and not zone.recursive:
                    zone = await self._descend_to(zone, max(signers), ctx)
                    if zone.security is Verdict.BOGUS:
                        continue
                answer = await self._validate(zone, name, qtype, reply, kind, ctx)
                self.cache.put(name, qtype, answer)
                return answer
        finally:
            if ahead is not None:
                ahead[2].cancel()

    @staticmethod
    def _question(zone: Zone, name: dns.name.Name, qtype: int, labels: int,
                  minimise: bool) -> tuple[dns.name.Name, int]:
        """What to ask ``zone`` next: ``name`` cut to ``labels`` labels while minimising, with
        type A (RFC 9156 §2.3), else the question itself."""
        if minimise and labels < len(name.labels) and \
                labels - len(zone.name.labels) <= MAX_MINIMISE_LABELS:
            return dns.name.Name(name.labels[-labels:]), A
        return name, qtype

    async def _prime_root(self, root: Zone, ctx: Context) -> Zone:
        """Authenticate the root's DNSKEY set from the trust anchor (RFC 8109 priming with
        validation); with no anchor for the root the tree above any other anchor is
        insecure."""
        anchor = self.anchors.get(ROOT)
        if anchor is None:
            root.security = Verdict.INSECURE
            root.proof.append("no trust anchor for the root")
            return root
        return await self._load_keys(root, anchor, ctx, "root trust anchor")

    def _delegation(self, zone: Zone, reply: dns.message.Message,
                    qname: dns.name.Name) -> Zone:
        """The child zone of a referral: the known one when its security is established, else a
        new one whose servers come from NS and in-bailiwick glue (RFC 1034 §5.3.3 step 4b), its
        security still to be established (RFC 4035 §5.2)."""
        ns = max((r for r in _rrsets(reply.authority, NS) if qname.is_subdomain(r.name)
                  and r.name.is_subdomain(zone.name) and r.name != zone.name),
                 key=lambda r: len(r.name.labels))
        known = self._known_zone(ns.name)
        if known is not None and known.security is not Verdict.INDETERMINATE:
            return known
        ns_names = [rd.target for rd in ns]
        servers, not_queried = [], []
        for rdtype, wanted in ((A, self.s.ipv4), (AAAA, self.s.ipv6)):
            if not wanted:
                continue
            for rrset in _rrsets(reply.additional, rdtype):
                # Glue only for the referral's own nameservers and only from within the bailiwick
                # of the zone that gave it (RFC 1034 §4.2.2; the Kaminsky defence).
                if rrset.name in ns_names and rrset.name.is_subdomain(zone.name):
                    servers += self._askable(rrset, not_queried)
        return Zone(ns.name, servers, ns_names, not_queried=not_queried,
                    expires=time.monotonic() + max(1, min(ns.ttl, 86400)), parent=zone)

    def _askable(self, rrset: dns.rrset.RRset, not_queried: list[str]) -> list[tuple[str, int]]:
        """The servers at the addresses of an A or AAAA RRset a zone gave: those that
        ``outgoing.do_not_query`` covers are left out, counted, and the first few named in
        ``not_queried`` (for the failure's text when no address is left)."""
        servers = []
        for rd in rrset:
            prefix = self.do_not_query.covering(rd.address)
            if prefix is None:
                servers.append((rd.address, 53))
                continue
            self.stats["not_queried"] += 1
            shown = f"{rd.address} in {prefix}"
            if len(not_queried) < MAX_NOT_QUERIED_SHOWN and shown not in not_queried:
                not_queried.append(shown)
        return servers

    async def _descend_to(self, zone: Zone, signer: dns.name.Name, ctx: Context) -> Zone:
        """A server authoritative for both a zone and a child answered for the child without a
        referral: establish the child (the signer of the answer) from its parent."""
        known = self._known_zone(signer)
        if known is not None and known.security is not Verdict.INDETERMINATE:
            return known
        child = Zone(signer, list(zone.servers), list(zone.ns_names), expires=zone.expires,
                     parent=zone)
        return self._remember(await self._establish(child, zone, None, ctx))

    # --- validating replies ---------------------------------------------------------------

    async def _validate(self, zone: Zone, name: dns.name.Name, qtype: int,
                        reply: dns.message.Message, kind: str, ctx: Context) -> Answer:
        if zone.recursive:
            zone = await self._forwarded_zone_security(zone, name, reply, ctx)
        chain = zone.chain()
        proof = Proof(zone.name, notes=[note for z in chain for note in z.proof],
                      zones=[str(z.name) for z in chain])
        if zone.security is Verdict.BOGUS:
            raise ResolutionFailed(zone.ede or EDE.DNSSEC_BOGUS, zone.reason, proof)
        secure = zone.security is Verdict.SECURE
        if kind == "answer":
            answer = self._positive(zone, name, qtype, reply, proof, secure, ctx)
        else:
            answer = self._negative(zone, name, qtype, reply, kind, proof, secure, ctx)
        if not secure and answer.ede is None and zone.ede in INSECURE_REASONS:
            # Say why data is insecure where a DS named an algorithm or digest we cannot use
            # (RFC 8914 §4.2, §4.3).
            answer.ede, answer.reason = zone.ede, zone.reason
        return answer

    def _positive(self, zone: Zone, name: dns.name.Name, qtype: int, reply: dns.message.Message,
                  proof: Proof, secure: bool, ctx: Context) -> Answer:
        """The RRsets answering ``name`` in this reply, following CNAMEs and DNAMEs that stay
        in the zone, each validated (RFC 4035 §5.3) and wildcard expansions proven
        (RFC 4035 §5.3.4)."""
        rrsets, authority = [], []
        ttl, verdict = 2**31, Verdict.SECURE if secure else Verdict.INSECURE
        current = name
        for _ in range(self.s.max_cname_chain + 1):
            rrset = _find(reply.answer, current, qtype)
            synthesized = None
            dname = next((r for r in _rrsets(reply.answer, DNAME)
                          if current.is_subdomain(r.name) and current != r.name
                          and r.name.is_subdomain(zone.name)), None)
            if rrset is None and dname is not None:
                # The CNAME a server synthesises from a DNAME is unsigned: validate the DNAME
                # and synthesise the CNAME here (RFC 6672 §3.2, §5.3.1).
                rrset = dname
                try:
                    target = current.relativize(rrset.name).concatenate(rrset[0].target)
                except dns.name.NameTooLong:
                    raise ResolutionFailed(EDE.OTHER, f"DNAME at {rrset.name} makes {current} "
                                           "too long", proof) from None
                synthesized = dns.rrset.from_text(current, rrset.ttl, "IN", "CNAME",
                                                  target.to_text())
            elif rrset is None and qtype != CNAME:
                rrset = _find(reply.answer, current, CNAME)
            if rrset is None:
                break
            sigs = _sigs(reply.answer, rrset.name, rrset.rdtype)
            if secure:
                result = validate_rrset(rrset, sigs, zone.keys, now=self.now(),
                                        budget=ctx.budget, config=self.s.validator)
                if not result.secure:
                    raise ResolutionFailed(result.ede or EDE.DNSSEC_BOGUS,
                                           f"zone {zone.name}: {result.reason}", proof)
                ttl = min(ttl, result.ttl)
                sig = result.rrsig
                proof.signatures.append((str(rrset.name), dns.rdatatype.to_text(rrset.rdtype),
                                         str(sig.signer), sig.key_tag, int(sig.algorithm),
                                         sig.inception, sig.expiration))
                if sig.labels < label_count(rrset.name.labels):
                    wildcard = dns.name.Name((b"*",) + rrset.name.labels[-(sig.labels + 1):])
                    nsecs = self._denial_rrsets(reply)
                    self._check_signatures(nsecs, reply, zone, ctx)
                    expansion = denial.prove_wildcard_answer(rrset.name, wildcard, nsecs,
                                                             config=self.s.validator,
                                                             budget=ctx.budget)
                    if expansion.verdict is Verdict.BOGUS:
                        raise ResolutionFailed(expansion.ede or EDE.DNSSEC_BOGUS,
                                               f"wildcard answer for {rrset.name}: "
                                               f"{expansion.reason}", proof)
                    verdict = _weaker(verdict, expansion.verdict)
                    proof.denial = expansion.kind
                    for nsec in nsecs:
                        authority.append(nsec)
                        nsec_sigs = _sigs(reply.authority, nsec.name, nsec.rdtype)
                        if nsec_sigs is not None:
                            authority.append(nsec_sigs)
            else:
                ttl = min(ttl, rrset.ttl)
            rrsets.append(rrset)
            if sigs is not None:
                rrsets.append(sigs)
            if synthesized is not None:
                rrsets.append(synthesized)
                rrset = synthesized
            if rrset.rdtype == qtype or rrset.rdtype not in (CNAME,):
                break
            current = rrset[0].target
            if not current.is_subdomain(zone.name):
                break
        if not rrsets:
            raise ResolutionFailed(EDE.OTHER, f"no usable answer for {name}", proof)
        return Answer(dns.rcode.NOERROR, verdict, rrsets, authority, None, "", proof, ttl)

    def _negative(self, zone: Zone, name: dns.name.Name, qtype: int,
                  reply: dns.message.Message, kind: str, proof: Proof, secure: bool,
                  ctx: Context) -> Answer:
        """A name error or no-data reply, proven from NSEC or NSEC3 in a signed zone
        (RFC 4035 §5.4), cached for the SOA's negative TTL (RFC 2308 §5)."""
        rcode = dns.rcode.NXDOMAIN if kind == "nxdomain" else dns.rcode.NOERROR
        soa = next((r for r in _rrsets(reply.authority, SOA) if name.is_subdomain(r.name)), None)
        authority = [soa] if soa is not None else []
        ttl = min(soa.ttl, soa[0].minimum) if soa is not None else 0
        if not secure:
            return Answer(rcode, Verdict.INSECURE, [], authority, None, "", proof, ttl)
        nsecs = self._denial_rrsets(reply)
        checked = ([soa] if soa is not None else []) + nsecs
        evidence = self._check_signatures(checked, reply, zone, ctx)
        proof.signatures += [e[:7] for e in evidence]
        ttl = min([ttl] + [e[7] for e in evidence]) if soa is not None else 0
        if not nsecs:
            raise ResolutionFailed(EDE.NSEC_MISSING, f"zone {zone.name}: "
                                   f"{'name error' if kind == 'nxdomain' else 'no data'} for "
                                   f"{name} without NSEC or NSEC3", proof)
        if kind == "nxdomain":
            result = denial.prove_nxdomain(name, nsecs, config=self.s.validator,
                                           budget=ctx.budget)
        else:
            result = denial.prove_nodata(name, qtype, nsecs, config=self.s.validator,
                                         budget=ctx.budget)
        if result.verdict is Verdict.BOGUS:
            raise ResolutionFailed(result.ede or EDE.DNSSEC_BOGUS,
                                   f"zone {zone.name}: {result.reason}", proof)
        proof.denial = result.kind
        for rrset in checked:
            authority += [rrset] if rrset is not soa else []
            sigs = _sigs(reply.authority, rrset.name, rrset.rdtype)
            if sigs is not None:
                authority.append(sigs)
        return Answer(rcode, result.verdict, [], authority, result.ede, result.reason, proof,
                      ttl)

    async def _forwarded_zone_security(self, forward: Zone, name: dns.name.Name,
                                       reply: dns.message.Message, ctx: Context) -> Zone:
        """The security of the zone a forwarder's answer came from: the deepest zone that
        signed data for ``name``, or, for unsigned data, the closest enclosing zone cut found by
        walking DS records down from the closest known ancestor (RFC 4035 §5.2)."""
        nta = self._nta_for(name)
        if nta is not None:
            return Zone(nta, list(forward.servers), security=Verdict.INSECURE, recursive=True,
                        proof=[f"nta {nta}"], reason=f"negative trust anchor {nta}")
        signers = [s for s in _signers(reply) if name.is_subdomain(s)]
        target = max(signers, key=lambda s: len(s.labels)) if signers else name
        return await self._zone_on_path(target, forward, ctx)

    async def _forwarded_root(self, ctx: Context) -> Zone:
        if ROOT in self.forwards:
            root = Zone(ROOT, list(self.forwards[ROOT]), recursive=True)
            root = await self._prime_root(root, ctx)
        else:
            root = self._root()
            if root.security is Verdict.INDETERMINATE:
                root = await self._prime_root(root, ctx)
        self.secured[ROOT] = root
        return root

    async def _zone_on_path(self, target: dns.name.Name, forward: Zone, ctx: Context) -> Zone:
        """Walk from the deepest zone of known security towards ``target`` one label at a time,
        looking up DS (validated like any answer): a DS starts a secure child whose DNSKEY set
        comes through the forwarders; a proven absence at a delegation ends the walk insecure."""
        current, name = None, target
        while current is None:
            current = self.secured.get(name)
            if current is None and name == ROOT:
                current = await self._forwarded_root(ctx)
            name = name.parent() if current is None else name
        while current.name != target and current.security is Verdict.SECURE:
            candidate = dns.name.Name(target.labels[-(len(current.name.labels) + 1):])
            while True:
                answer = await self.lookup(candidate, DS, ctx)
                ds = next((r for r in answer.rrsets if r.rdtype == DS and r.name == candidate),
                          None)
                if ds is not None or answer.verdict is not Verdict.SECURE:
                    break
                nsecs = [r for r in answer.authority if r.rdtype in (NSEC, NSEC3)]
                cut = denial.prove_no_ds(candidate, nsecs, config=self.s.validator,
                                         budget=ctx.budget)
                if cut.verdict is not Verdict.BOGUS or candidate == target:
                    break  # an insecure delegation, or the target is no zone cut of its own
                candidate = dns.name.Name(target.labels[-(len(candidate.labels) + 1):])
            child = Zone(candidate, list(forward.servers), recursive=True, parent=current)
            if ds is not None and answer.verdict is Verdict.SECURE:
                child = await self._load_keys(child, ds, ctx, f"DS from {current.name}")
            elif answer.verdict is Verdict.SECURE and ds is None and candidate == target \
                    and cut.verdict is Verdict.BOGUS:
                return current  # target is inside current, not a cut
            else:
                child.security = Verdict.INSECURE
                child.proof.append(f"no-ds {candidate}")
            self.secured[candidate] = child
            current = child
        return current


def _weaker(a: Verdict, b: Verdict) -> Verdict:
    order = (Verdict.SECURE, Verdict.INSECURE, Verdict.INDETERMINATE, Verdict.BOGUS)
    return a if order.index(a) >= order.index(b) else b


def _chain_end(name: dns.name.Name, qtype: int, rrsets: list[dns.rrset.RRset]) -> dns.name.Name | None:
    """Where the CNAME chain in ``rrsets`` starting at ``name`` leads, if it ends without data
    of ``qtype``; None when the chain is complete."""
    if qtype == CNAME:
        return None
    current = name
    for _ in range(len(rrsets) + 1):
        data = next((r for r in rrsets if r.name == current and r.rdtype == qtype), None)
        if data is not None:
            return None
        cname = next((r for r in rrsets if r.name == current and r.rdtype == CNAME), None)
        if cname is None:
            return current if current != name else None
        current = cname[0].target
    return None
