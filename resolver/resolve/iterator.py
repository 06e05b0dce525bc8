"""Iterative resolution from the root (RFC 1034 §5.3.3, RFC 9156), and forwarding: this module
fetches. Each reply goes to the validator stage (resolver.dnssec.validator) with the zone it was
asked of; the security of each zone cut comes from the chain of trust (resolver.dnssec.chain),
built as resolution descends (RFC 4035 §5.2). Forwarded zones are asked recursively (with CD)
and their answers validated the same way, the zones' keys found by walking DS records down
from the closest known secure zone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from resolver.resolve import tls, transport
from resolver.resolve.ahead import Ahead, failed_early
from resolver.resolve.cache import Answer, Cache, Proof
from resolver.resolve.chase import Chains, Fetched
from resolver.resolve.cuts import Cuts
from resolver.resolve.failures import Holds, Infra
from resolver.resolve.qmin import Minimiser
from resolver.config.schema import Config, Forward, ResolverLimits, Timeouts, default
from resolver.dnssec import Budget, BudgetName, ValidatorConfig, Verdict
from resolver.dnssec.anchors import RootHint
from resolver.dnssec.chain import ChainOfTrust
from resolver.dnssec.result import ResolutionFailed
from resolver.dnssec.canonical import same, within
from resolver.dnssec.validator import Validator, rrsets_of, signer_in, signers
from resolver.dnssec.zone import NameLru, Zone, name_key, parent, parent_key
from resolver.ede import EDE
from resolver.outgoing import DoNotQuery

A, AAAA, NS, SOA, DS, DNSKEY, CNAME, DNAME, RRSIG, NSEC, NSEC3 = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.DS,
    dns.rdatatype.DNSKEY, dns.rdatatype.CNAME, dns.rdatatype.DNAME, dns.rdatatype.RRSIG,
    dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
ROOT = dns.name.root
ROOT_KEY = name_key(ROOT)
MAX_NOT_QUERIED_SHOWN = 4  # addresses outgoing.do_not_query left out, named in a failure's text


@dataclass(slots=True)
class Settings:
    """What the iterator reads from the configuration: the fields of resolver.config's
    ``Config`` of the same names, types and defaults (:meth:`from_config` takes them by name),
    and the bounds of two tables of the iterator's own."""

    root_hints: tuple[RootHint, ...]
    trust_anchors: Sequence[dns.rrset.RRset]
    forward: tuple[Forward, ...] = default("forward")
    validator: ValidatorConfig = default("validator")
    validation_time: int | None = default("validation_time")
    qname_minimisation: bool = default("qname_minimisation")
    negative_trust_anchors: Sequence[dns.name.Name] = default("negative_trust_anchors")
    outgoing_ipv4: bool = default("outgoing_ipv4")
    outgoing_ipv6: bool = default("outgoing_ipv6")
    #: Addresses learned from zones (glue, NS names' A/AAAA) that are never asked; root hints
    #: and forwarders are not filtered. Unlike the configuration's default (resolver.outgoing),
    #: an iterator built without it filters nothing.
    outgoing_do_not_query: tuple = ()  # of ipaddress networks
    limits: ResolverLimits = default("limits")
    timeouts: Timeouts = default("timeouts")
    max_zones: int = 10000  # zone cuts remembered (Iterator.zones)
    max_servers: int = 10000  # server addresses whose round-trip times are kept (Infra)

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        """The settings of a checked configuration: each of its fields named here."""
        return cls(**{name: getattr(config, name) for name in _FROM_CONFIG})

    @property
    def upstream_timeout(self) -> float:
        """Seconds for one try of one upstream server."""
        return self.timeouts.upstream_ms / 1000

    @property
    def query_timeout(self) -> float:
        """Seconds for the whole of one client query."""
        return self.timeouts.query_ms / 1000


_FROM_CONFIG = tuple(f.name for f in fields(Settings) if f.name in Config.__dataclass_fields__)


@dataclass(slots=True)
class Context:
    """One client query's budgets and trail."""

    budget: Budget
    deadline: float
    queries: int = 0
    referrals: int = 0
    ns_lookups: int = 0
    ns_nxdomain: int = 0  # NS names whose address lookup was NXDOMAIN
    resolving_ns: set = field(default_factory=set)  # NS names being looked up, by name_key
    ns_exhausted: set = field(default_factory=set)  # zones whose NS lookup budget ran out, too
    servers_asked: list[str] = field(default_factory=list)
    stale: bool = False  # cached data past its TTL may answer (resolver.resolve.stale)
    refresh_until: float = 0.0  # cached data expiring before this is asked again (prefetch)


def _import_rdata_classes() -> None:
    """dnspython imports a record type's module when it first parses one: done at start-up,
    not inside a client's first query (about 2 ms for a referral's NS and A records)."""
    for rdtype in (A, AAAA, NS, SOA, DS, DNSKEY, CNAME, DNAME, RRSIG, NSEC, NSEC3,
                   dns.rdatatype.NSEC3PARAM, dns.rdatatype.OPT, dns.rdatatype.PTR,
                   dns.rdatatype.MX, dns.rdatatype.TXT, dns.rdatatype.SRV):
        dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)


_import_rdata_classes()


class Iterator:
    """Resolves names iteratively from the root hints, or through forwarders, validating."""

    def __init__(self, settings: Settings, cache: Cache, *, exchange=transport.exchange) -> None:
        self.s = settings
        self.cache = cache
        self.exchange = exchange
        self.infra = Infra(settings.max_servers, settings.upstream_timeout)
        # Zones none of whose servers answered (RFC 9520 §3.2, resolver.resolve.failures), by
        # name_key, as the forward zones are.
        self.zone_holds: Holds[bytes] = Holds(settings.max_zones, settings.query_timeout)
        self.do_not_query = DoNotQuery(settings.outgoing_do_not_query)
        self.zones: NameLru[Zone] = NameLru(settings.max_zones)  # the zone cuts
        self.forwards = {name_key(fwd.zone): [(ep.host, ep.port) for ep in fwd.servers]
                         for fwd in settings.forward}
        self.tls = tls.upstreams(settings.forward)  # forwarders asked only over TLS (RFC 8310)
        self.validator = Validator(settings.validator, self.now, settings.limits.max_cname_chain)
        self.chains = Chains(self.lookup, self._settle, self.validator, cache,
                             settings.limits.max_cname_chain)
        self.trust = ChainOfTrust(self.validator, settings.trust_anchors,
                                  settings.negative_trust_anchors, settings.max_zones,
                                  self._ask, self.lookup, self._event, self._delegation)
        self.cuts = Cuts(self.trust, self._known_zone, self._remember)  # cuts a reply went past
        self.stats = {"upstream_queries": 0, "upstream_timeouts": 0, "nta_uses": 0,
                      "not_queried": 0}
        self.on_rtt = None  # called with each upstream round trip in seconds
        self.on_event = None  # called with DNSSEC health events: "key_rollover", "nta_used"
        self.tap = None  # resolver.ops.dnstap.Dnstap: told of each upstream query and reply
        self.ahead = Ahead(self._ask, self._delegation)  # queries sent early

    # --- time, budgets, zones -------------------------------------------------------------

    def now(self) -> int:
        """The validation time: the configured one (like Unbound's val-override-date), else
        the clock."""
        return self.s.validation_time if self.s.validation_time is not None else int(time.time())

    def new_context(self) -> Context:
        return Context(Budget(self.s.validator.limits), time.monotonic() + self.s.query_timeout)

    def _spend_query(self, ctx: Context) -> None:
        most = self.s.limits.max_upstream_queries
        if ctx.queries >= most:
            raise ResolutionFailed(EDE.OTHER, f"budget exhausted: {most} "
                                   "upstream queries per client query",
                                   budget=BudgetName.UPSTREAM_QUERIES)
        ctx.queries += 1
        self.stats["upstream_queries"] += 1

    def _remember(self, zone: Zone) -> Zone:
        return self.zones.put(zone.name, zone)

    def _known_zone(self, name: dns.name.Name) -> Zone | None:
        return self._known_at(name_key(name))

    def _known_at(self, key: bytes) -> Zone | None:
        zone = self.zones.get_key(key)
        if zone is not None and zone.expires <= time.monotonic():
            self.zones.pop_key(key)
            return None
        return zone

    def _root(self) -> Zone:
        zone = self._known_at(ROOT_KEY)
        if zone is None:
            servers = [(addr, 53) for hint in self.s.root_hints for addr in hint.addresses
                       if self._family_ok(addr)]
            zone = self._remember(Zone(ROOT, servers, [hint.name for hint in self.s.root_hints]))
        return zone

    def _family_ok(self, addr: str) -> bool:
        return self.s.outgoing_ipv6 if ":" in addr else self.s.outgoing_ipv4

    def _closest_zone(self, name: dns.name.Name) -> Zone:
        """The deepest known zone cut or forward zone enclosing ``name``; a zone held after
        its servers failed (RFC 9520 §3.2) on the way raises its failure again. Each candidate,
        ``name`` less its first ``cut`` labels, is looked up once per table by its key."""
        key, cut = name_key(name), 0
        while True:
            hold = self.zone_holds.held(key)
            if hold is not None:
                left = max(0.0, hold.until - self.zone_holds.clock())
                raise ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY, f"{hold.what} (cached "
                                       f"failure, RFC 9520: {dns.name.Name(name.labels[cut:])} "
                                       f"retried in {left:.1f} s)")
            if key in self.forwards:
                return self._forward_zone(dns.name.Name(name.labels[cut:]), key)
            zone = self._known_at(key)
            if zone is not None:
                return zone
            if key == ROOT_KEY:
                return self._root()
            key, cut = parent_key(key), cut + 1

    def _forward_zone(self, name: dns.name.Name, key: bytes) -> Zone:
        zone = self._known_at(key)
        if zone is None or not zone.recursive:
            zone = self._remember(Zone(name, list(self.forwards[key]), recursive=True))
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
        unresponsive = bool(zone.servers)  # every server timed out, unreachable, or held
        for server in self.infra.order(zone.servers):
            if time.monotonic() >= ctx.deadline:
                unresponsive = False
                break
            hold = self.infra.holds.held(server)
            if hold is not None:  # RFC 9520 §3.2: not asked while its failure is cached
                last = f"{server[0]}: {hold.what} (cached failure, not asked)"
                continue
            self._spend_query(ctx)
            query = transport.make_query(qname, qtype, recursion=zone.recursive)
            ctx.servers_asked.append(f"{server[0]}:{server[1]}")
            tap = self.tap
            upstream = self.tls.get(server) if zone.recursive else None
            if tap is not None:
                query_wire, sent = query.to_wire(), time.time_ns()
                tap.resolver_query(query_wire, server, zone.name, sent, forwarder=zone.recursive,
                                   transport="udp" if upstream is None else "dot")
            send = self.exchange if upstream is None else upstream.exchange
            try:
                reply = await send(query, server[0], server[1], timeout=self.s.upstream_timeout)
            except transport.UpstreamError as exc:
                last = f"{server[0]}: {exc}"
                if exc.kind in ("timeout", "network"):
                    self.infra.unresponsive(server, self.s.upstream_timeout, str(exc))
                else:
                    self.infra.failure(server, self.s.upstream_timeout)
                    unresponsive = False
                if exc.kind == "timeout":
                    self.stats["upstream_timeouts"] += 1
                continue
            if tap is not None:
                tap.resolver_response(query_wire, reply.wire or reply.message.to_wire(), server,
                                      zone.name, reply.transport, sent, time.time_ns(),
                                      forwarder=zone.recursive)
            if self.on_rtt is not None:
                self.on_rtt(reply.rtt)
            kind = self.validator.classify(zone, qname, qtype, reply.message)
            if kind == "lame":
                self.infra.failure(server, self.s.upstream_timeout)  # ask the others first
                last = (f"{server[0]} answered {dns.rcode.to_text(reply.message.rcode())} "
                        f"for {qname} in {zone.name}")
                unresponsive = False
                continue
            self.infra.success(server, reply.rtt)
            self.zone_holds.answered(name_key(zone.name))
            return reply.message, kind
        reason = f"no server of {zone.name} answered for {qname}: {last}"
        if unresponsive:
            self.zone_holds.failed(name_key(zone.name), reason)
        raise ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY, reason)

    async def _find_server_addresses(self, zone: Zone, ctx: Context) -> None:
        """Resolve the zone's nameserver names that came without glue, with loop protection
        (RFC 1034 §5.3.3 step 3) and NXNS bounds like Unbound's target fetch limits: at most
        ``max_ns_lookups`` names for this delegation and ``max_ns_lookups_per_query`` for the
        client query, and no more once ``max_ns_nxdomain_per_query`` names of the client
        query did not exist; a name whose A lookup is NXDOMAIN gets no AAAA lookup (RFC 8020)."""
        lookups, zone_key = 0, name_key(zone.name)
        for ns in zone.ns_names:
            if lookups >= self.s.limits.max_ns_lookups or zone_key in ctx.ns_exhausted or \
                    ctx.ns_lookups >= self.s.limits.max_ns_lookups_per_query:
                ctx.ns_exhausted.add(zone_key)  # not again for a retry without minimisation
                raise ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY, (
                    f"no address for the NS names of {zone.name} within the NS lookup budget "
                    f"({self.s.limits.max_ns_lookups} per delegation, "
                    f"{self.s.limits.max_ns_lookups_per_query} per query)"))
            ns_key = name_key(ns)
            if ns_key in ctx.resolving_ns or within(ns, zone.name):
                continue  # in-bailiwick names need glue; asking the zone itself would loop
            ctx.resolving_ns.add(ns_key)
            ctx.ns_lookups += 1
            lookups += 1
            try:
                for rdtype, wanted in ((A, self.s.outgoing_ipv4), (AAAA, self.s.outgoing_ipv6)):
                    if not wanted:
                        continue
                    try:
                        answer = await self.chase(ns, rdtype, ctx)
                    except ResolutionFailed:
                        continue
                    if answer.rcode == dns.rcode.NXDOMAIN:
                        ctx.ns_nxdomain += 1
                        break
                    for rrset in answer.rrsets:
                        if rrset.rdtype == rdtype:
                            zone.servers += self._askable(rrset, zone.not_queried)
            finally:
                ctx.resolving_ns.discard(ns_key)
            if zone.servers:
                return
            if ctx.ns_nxdomain >= self.s.limits.max_ns_nxdomain_per_query:
                ctx.ns_exhausted.add(zone_key)
                raise ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY, (
                    f"no address for the NS names of {zone.name}: {ctx.ns_nxdomain} NS names "
                    f"of this query do not exist (NXDOMAIN), the NS lookup budget's limit "
                    f"(max_ns_nxdomain_per_query {self.s.limits.max_ns_nxdomain_per_query})"))

    # --- resolution -----------------------------------------------------------------------

    async def chase(self, qname: dns.name.Name, qtype: int, ctx: Context,
                    permit=None) -> Answer:
        """Resolve ``qname``/``qtype`` following CNAME and DNAME chains, each link validated
        in its own zone (resolver.resolve.chase). ``permit(name)``, when given, is asked
        before any CNAME or DNAME target is resolved; a refusal raises :class:`Denied` before
        a query for the target leaves."""
        return await self.chains.chase(qname, qtype, ctx, permit)

    async def _settle(self, fetched: Fetched, ctx: Context) -> Answer:
        """The verdict on a fetched reply (:meth:`_judge`), cached."""
        answer = await self._judge(fetched.zone, fetched.name, fetched.qtype, fetched.reply,
                                   fetched.kind, ctx)
        self.cache.put(fetched.name, fetched.qtype, answer)
        return answer

    async def lookup(self, name: dns.name.Name, qtype: int, ctx: Context, *,
                     judge: bool = True) -> Answer | Fetched:
        """The validated answer for exactly ``name``/``qtype`` (a CNAME at the name counts);
        with ``judge`` False, a reply fetched from a zone whose security is established
        (not a forwarder's) is returned unjudged (:meth:`_settle` judges it)."""
        use = {"stale": ctx.stale, "refresh_until": ctx.refresh_until}
        cached = self.cache.get(name, qtype, **use)
        if cached is None and qtype != CNAME:
            alias = self.cache.get(name, CNAME, **use)
            if alias is not None and alias.rrsets:
                cached = alias  # a CNAME stands for every type (RFC 1034 §3.6.2); its NODATA not
        if cached is None:  # proven by NSEC or NSEC3 records kept (RFC 8198)
            cached = self.cache.synthesise(name, qtype, self.now(), self.s.validator, ctx.budget)
        if cached is not None:
            return cached
        owner = parent(name) if qtype == DS and name != ROOT else name
        zone = self._closest_zone(owner)
        if same(zone.name, ROOT) and not zone.recursive and \
                zone.security is Verdict.INDETERMINATE:
            zone = await self.trust.prime_root(zone, ctx)  # forwarded answers are judged one by one
        minimiser = Minimiser(name, qtype, self.s.qname_minimisation and not zone.recursive)
        ahead = None  # the Hop sent while the zone was being established (resolve.ahead)
        try:
            while True:
                if ctx.referrals > self.s.limits.max_referral_depth:
                    raise ResolutionFailed(EDE.OTHER, f"more than "
                                           f"{self.s.limits.max_referral_depth} referrals")
                if zone.security is Verdict.BOGUS:
                    raise ResolutionFailed(zone.ede or EDE.DNSSEC_BOGUS, zone.reason,
                                           Proof(zone.name, notes=list(zone.proof)), zone.budget)
                question = minimiser.question(zone.name)  # RFC 9156 §2.3 (resolve.qmin)
                qname, qt = question
                hop, ahead = ahead, None
                if hop is not None and hop.zone is zone and hop.question[1] == qt and \
                        same(hop.question[0], qname) and not failed_early(hop.task):
                    sent = hop.task
                else:
                    if hop is not None:
                        hop.cancel()
                    sent, hop = self._ask(zone, qname, qt, ctx), None
                try:
                    reply, kind = await sent
                except ResolutionFailed:
                    if qname == name:
                        raise
                    minimiser = minimiser.relaxed()  # some servers mishandle minimised queries
                    continue
                minimiser = minimiser.after(qname, kind == "referral")
                if kind == "referral":
                    ctx.referrals += 1
                    ahead = hop.follow if hop is not None else None  # sent on the reply's arrival
                    child = ahead.zone if ahead is not None else \
                        self._delegation(zone, reply, qname)
                    if child.security is Verdict.INDETERMINATE:
                        ahead = ahead or self.ahead.hop(child, reply, minimiser, ctx)
                        keys = ahead.keys if ahead is not None else None
                        try:
                            below = len(child.name.labels) - len(zone.name.labels)
                            if below > 1 and not signer_in(reply, zone.name) and \
                                    self.cuts.matter(zone, child.name):
                                # a cut several labels down, signed further down (resolve.cuts)
                                child.parent = zone = await self.cuts.down_to(
                                    zone, parent(child.name), ctx)
                            child = await self.trust.establish(child, zone, reply, ctx, keys)
                        finally:
                            if keys is not None:
                                keys.cancel()  # not needed: no DS, an anchor, an NTA
                        self._remember(child)
                    zone = child
                    continue
                if not same(qname, name):
                    if kind == "nxdomain":  # RFC 9156 §2.3 relaxed: confirm with the full name
                        minimiser = minimiser.relaxed()
                    continue
                if zone.security is Verdict.INSECURE and self.cuts.matter(zone, owner):
                    zone = await self.cuts.down_to(zone, owner, ctx)  # an island it went past
                signed = {s for s in signers(reply) if not same(s, zone.name)
                          and within(s, zone.name) and within(name, s)}
                if signed and not zone.recursive and self.cuts.matter(zone, max(signed)):
                    zone = await self.cuts.signer(zone, max(signed), ctx)
                    if zone.security is Verdict.BOGUS:
                        continue
                fetched = Fetched(zone, name, qtype, reply, kind)
                if not judge and not zone.recursive and zone.security is not Verdict.BOGUS:
                    return fetched
                return await self._settle(fetched, ctx)
        finally:
            if ahead is not None:
                ahead.cancel()

    def _delegation(self, zone: Zone, reply: dns.message.Message,
                    qname: dns.name.Name) -> Zone:
        """The child zone of a referral: the known one when its security is established, else a
        new one whose servers come from NS and in-bailiwick glue (RFC 1034 §5.3.3 step 4b), its
        security still to be established (RFC 4035 §5.2)."""
        ns = max((r for r in rrsets_of(reply.authority, NS) if within(qname, r.name)
                  and within(r.name, zone.name) and not same(r.name, zone.name)),
                 key=lambda r: len(r.name.labels))
        known = self._known_zone(ns.name)
        if known is not None and known.security is not Verdict.INDETERMINATE:
            return known
        ns_names = [rd.target for rd in ns]
        servers, not_queried = [], []
        for rdtype, wanted in ((A, self.s.outgoing_ipv4), (AAAA, self.s.outgoing_ipv6)):
            if not wanted:
                continue
            for rrset in rrsets_of(reply.additional, rdtype):
                # Glue only for the referral's own nameservers and only from within the bailiwick
                # of the zone that gave it (RFC 1034 §4.2.2; the Kaminsky defence).
                if rrset.name in ns_names and within(rrset.name, zone.name):
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

    # --- validating replies ---------------------------------------------------------------

    async def _judge(self, zone: Zone, name: dns.name.Name, qtype: int,
                     reply: dns.message.Message, kind: str, ctx: Context) -> Answer:
        """:meth:`_validate`, and when a secure zone's reply fails without a signature of that
        zone, the cut a server holding the zone and a child answered across with no referral
        is looked for (ChainOfTrust.find_cut: proven by the parent's signed data only), and
        the reply judged again in the child. A DS lives on the parent side, so a DS answer is
        looked for above its owner only (RFC 4035 §3.1.4.1)."""
        owner = parent(name) if qtype == DS and name != ROOT else name
        while True:
            try:
                return await self._validate(zone, name, qtype, reply, kind, ctx)
            except ResolutionFailed:
                if zone.recursive or zone.security is not Verdict.SECURE or \
                        owner == zone.name or signer_in(reply, zone.name):
                    raise
                cut = await self.trust.find_cut(zone, owner, ctx)
                if cut is None:
                    raise
            zone = self._remember(cut)

    async def _validate(self, zone: Zone, name: dns.name.Name, qtype: int,
                        reply: dns.message.Message, kind: str, ctx: Context) -> Answer:
        """The validator's verdict on a reply, once the security of the zone it came from is
        established (for forwarded answers, by walking DS records down: RFC 4035 §5.2)."""
        if zone.recursive:
            zone = await self.trust.forwarded_zone_security(zone, name, reply,
                                                            self._forwarded_root, ctx)
        return self.validator.answer(zone, name, qtype, reply, kind, ctx.budget)

    async def _forwarded_root(self, ctx: Context) -> Zone:
        if ROOT_KEY in self.forwards:
            return await self.trust.prime_root(Zone(ROOT, list(self.forwards[ROOT_KEY]),
                                                    recursive=True), ctx)
        root = self._root()
        if root.security is Verdict.INDETERMINATE:
            root = await self.trust.prime_root(root, ctx)
        return root

    def _event(self, event: str) -> None:
        if event == "nta_used":
            self.stats["nta_uses"] += 1
        if self.on_event is not None:
            self.on_event(event)
