"""The chain of trust (RFC 4035 §5.2): the security of each zone cut, from the trust anchors
down, its DNSKEY set authenticated by the parent's validated DS, or its insecurity proven by the
parent's signed denial of that DS. The validator (resolver.dnssec.validator) judges each reply;
the queries go out through ``ask`` and ``lookup``, the iterator's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

from resolver.dnssec.config import BudgetName
from resolver.dnssec.result import ResolutionFailed, Verdict
from resolver.dnssec.sigcrypt import key_tags
from resolver.dnssec import denial
from resolver.dnssec.validator import NSEC, NSEC3, Validator, find, signers
from resolver.dnssec.canonical import name_text, same, within
from resolver.dnssec.zone import NameLru, Zone, ancestor, name_key
from resolver.ede import EDE

log = logging.getLogger(__name__)

DS, DNSKEY = dns.rdatatype.DS, dns.rdatatype.DNSKEY
ROOT = dns.name.root
BOGUS_TTL = 60  # seconds a zone that failed is remembered (RFC 6840 §3.1: briefly)
MAX_CUT_PROBES = 8  # DS questions asked to find a cut no referral showed (find_cut)


class ChainOfTrust:
    """Zone security for the iterator: ``ask(zone, qname, qtype, ctx)`` sends one query to a
    zone's servers and returns (reply, kind); ``lookup(name, qtype, ctx)`` resolves and
    validates a whole answer (used for the DS walk under forwarders); ``event(name)`` is told of
    DNSSEC health events ("key_rollover", "nta_used"); ``delegation(parent, referral, name)``
    is the zone a referral leads to, with its servers; ``observer(zone)``, when its owner sets
    one, of every zone cut whose security :meth:`establish` or :meth:`prime_root` decided (the
    posture of expected zones, resolver.monitor)."""

    def __init__(self, validator: Validator, anchors: list[dns.rrset.RRset],
                 negative_anchors: list[dns.name.Name], max_zones: int,
                 ask: Callable[..., Awaitable[tuple[dns.message.Message, str]]],
                 lookup: Callable[..., Awaitable], event: Callable[[str], None],
                 delegation: Callable[..., Zone]) -> None:
        self.v = validator
        self.anchors = {name_key(rrset.name): rrset for rrset in anchors}  # by name_key
        self.negative_anchors = negative_anchors
        self.ask, self.lookup, self.event, self.delegation = ask, lookup, event, delegation
        # Security of zones met through forwarders, kept apart from the zone cuts used to route
        # queries so a forwarded walk never redirects iterative resolution.
        self.secured: NameLru[Zone] = NameLru(max_zones)
        self.key_tags: NameLru[frozenset[int]] = NameLru(max_zones)  # rollover events
        self.observer: Callable[[Zone], None] | None = None

    def anchor(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        """The trust anchor configured at ``name`` (a DS or DNSKEY set), if any."""
        return self.anchors.get(name_key(name))

    def nta_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The negative trust anchor ``name`` is at or below, its use counted and logged
        (RFC 7646: no validation below it); None outside every NTA."""
        for nta in self.negative_anchors:
            if within(name, nta):
                self.event("nta_used")
                log.warning("negative trust anchor %s applied to %s", nta, name)
                return nta
        return None

    def island_between(self, top: dns.name.Name, name: dns.name.Name) -> dns.name.Name | None:
        """The shallowest trust anchor strictly below ``top`` and at or above ``name``: the
        apex of an island of security (RFC 4035 §4.4) a zone cut from ``top`` would go past."""
        found = [a.name for a in self.anchors.values() if within(name, a.name)
                 and not same(a.name, top) and within(a.name, top)]
        return min(found, key=lambda a: len(a.labels)) if found else None

    async def establish(self, child: Zone, parent: Zone, reply: dns.message.Message | None,
                        ctx, keys: asyncio.Future | None = None) -> Zone:
        """Decide the child zone's security from its parent (RFC 4035 §5.2): a validated DS
        leads to its DNSKEY set (``keys``: its query, sent ahead); a proven unsigned delegation
        makes it insecure; a claimed cut (a referral, a signer name) that the parent's signed
        data does not prove raises ResolutionFailed, and no zone is learned."""
        return self._observed(await self._establish(child, parent, reply, ctx, keys))

    def _observed(self, zone: Zone) -> Zone:
        """``zone``, after telling the observer: its failure never fails a resolution."""
        if self.observer is not None:
            try:
                self.observer(zone)
            except Exception:  # noqa: BLE001
                log.exception("zone observer failed on %s", zone.name)
        return zone

    async def _establish(self, child: Zone, parent: Zone, reply: dns.message.Message | None,
                         ctx, keys: asyncio.Future | None) -> Zone:
        name = child.name
        nta = self.nta_for(name)
        if nta is not None:
            child.security, child.reason = Verdict.INSECURE, f"negative trust anchor {nta}"
            child.proof.append(f"nta {nta}")
            return child
        anchor = self.anchor(name)
        if anchor is not None:
            return await self.load_keys(child, anchor, ctx, f"anchor {name}", keys)
        if parent.security is Verdict.INSECURE:
            island = self.island_between(parent.name, name.parent())
            if island is not None:  # a referral past a trust anchor: never insecure from above
                raise ResolutionFailed(EDE.DNSSEC_BOGUS, f"{parent.name} referred to {name}, "
                                       f"below the trust anchor {island}, past its zone cut")
            child.security = Verdict.INSECURE
            child.proof.append(f"parent {parent.name} insecure")
            return child
        if parent.security is Verdict.BOGUS:
            child.security, child.ede, child.reason = parent.security, parent.ede, parent.reason
            child.budget = parent.budget
            return child
        if reply is None or not self._speaks_of_ds(name, parent, reply):
            reply, _ = await self.ask(parent, name, DS, ctx)
        elif keys is not None and find(reply.authority, name, DS) is not None:
            await asyncio.sleep(0)  # the queries sent ahead leave before the DS is validated
        judged = self.v.delegation(name, parent, reply, ctx.budget)
        if judged.verdict is Verdict.BOGUS:
            return self.bogus(child, judged.ede, judged.reason, judged.budget)
        child.proof.append(judged.note)
        if judged.verdict is Verdict.INSECURE:
            child.security = Verdict.INSECURE
            return child
        return await self.load_keys(child, judged.ds, ctx, f"DS from {name_text(parent.name)}",
                                    keys)

    def _speaks_of_ds(self, name: dns.name.Name, parent: Zone,
                      reply: dns.message.Message) -> bool:
        """Whether ``reply`` holds a DS for ``name`` or the parent's denial records."""
        return find(reply.answer, name, DS) is not None or \
            find(reply.authority, name, DS) is not None or \
            bool(self.v.denial_rrsets(reply, parent.name))

    async def find_cut(self, zone: Zone, name: dns.name.Name, ctx) -> Zone | None:
        """The zone cut between the secure ``zone`` and ``name`` (below it), for data a server
        holding both zones answered from the child with no referral, or a referral from further
        down (RFC 4035 §5.2; Unbound asks DS likewise when data lacks signatures). DS is asked
        of ``zone`` for the names
        between them, top-down, at most MAX_CUT_PROBES, each within the query's upstream
        budget; the first name for which the parent's signed data proves a delegation (a
        validated DS, then the child's keys; an NSEC or NSEC3 with NS and neither DS nor SOA,
        or an opt-out span) is the cut, established. None when none is proven: the data stays
        the zone's to judge, so unsigned data never escapes its keys without that proof."""
        candidate = zone.name
        for _ in range(MAX_CUT_PROBES):
            if candidate == name:
                break
            candidate = ancestor(name, len(candidate.labels) + 1)
            try:
                reply, kind = await self.ask(zone, candidate, DS, ctx)
            except ResolutionFailed:
                return None  # unreachable, or the budget spent
            if kind == "nxdomain":
                return None  # nothing below a name that does not exist
            child = Zone(candidate, list(zone.servers), list(zone.ns_names),
                         expires=zone.expires, parent=zone)
            try:
                if self._speaks_of_ds(candidate, zone, reply):
                    return await self.establish(child, zone, reply, ctx)
            except ResolutionFailed:
                pass  # the parent's data proves no delegation here
        return None

    async def load_keys(self, zone: Zone, trust: dns.rrset.RRset, ctx, how: str,
                        sent: asyncio.Future | None = None) -> Zone:
        """Fetch (or await, ``sent`` ahead) and authenticate the zone's DNSKEY set
        (RFC 4035 §5.2)."""
        if sent is None:
            sent = self._ask_keys(zone, ctx)
        reply, kind = await sent
        keys, result = self.v.dnskeys(zone.name, trust, reply, kind, ctx.budget)
        if keys is None:
            return self.bogus(zone, EDE.DNSKEY_MISSING, f"{zone.name} has no DNSKEY set ({how})")
        if result.verdict is Verdict.INSECURE:
            zone.security, zone.ede, zone.reason = Verdict.INSECURE, result.ede, result.reason
            zone.proof.append(f"insecure {zone.name}: {result.reason}")
            return zone
        if not result.secure:
            return self.bogus(zone, result.ede, result.reason, result.budget)
        zone.security, zone.keys = Verdict.SECURE, keys
        zone.ds, zone.key_expiration = (trust if trust.rdtype == DS else None), \
            result.rrsig.expiration
        tags = key_tags(keys)
        seen = self.key_tags.get(zone.name)
        if seen is not None and seen != tags:
            self.event("key_rollover")
            log.info("DNSKEY set of %s changed: %s -> %s", zone.name, sorted(seen), sorted(tags))
        self.key_tags.put(zone.name, tags)
        zone.proof.append(f"dnskey {name_text(zone.name)} {result.key.tag}/{result.key.algorithm} "
                          f"({how})")
        zone.expires = time.monotonic() + max(1, result.ttl or 0)
        return zone

    async def _ask_keys(self, zone: Zone, ctx) -> tuple[dns.message.Message, str]:
        """The zone's DNSKEY reply. A cut found by its DS (find_cut) has only its parent's
        servers: they are asked as the parent's, and answer if they hold the child too, else
        refer to it, and the child's own servers are asked."""
        parent = zone.parent
        if parent is None or parent.recursive or zone.servers != parent.servers:
            return await self.ask(zone, zone.name, DNSKEY, ctx)
        reply, kind = await self.ask(parent, zone.name, DNSKEY, ctx)
        if kind == "referral":
            found = self.delegation(parent, reply, zone.name)
            if found.name == zone.name:
                zone.servers, zone.ns_names = list(found.servers), list(found.ns_names)
                zone.not_queried = list(found.not_queried)
                return await self.ask(zone, zone.name, DNSKEY, ctx)
        return reply, kind

    @staticmethod
    def bogus(zone: Zone, ede: EDE | None, reason: str, budget: BudgetName | None = None) -> Zone:
        zone.security, zone.ede, zone.reason = Verdict.BOGUS, ede or EDE.DNSSEC_BOGUS, reason
        zone.budget = budget
        zone.expires = time.monotonic() + BOGUS_TTL
        return zone

    async def prime_root(self, root: Zone, ctx) -> Zone:
        """Authenticate the root's DNSKEY set from the trust anchor (RFC 8109 priming with
        validation); with no anchor for the root the tree above any other anchor is
        insecure."""
        anchor = self.anchor(ROOT)
        if anchor is None:
            root.security = Verdict.INSECURE
            root.proof.append("no trust anchor for the root")
            return root
        return self._observed(await self.load_keys(root, anchor, ctx, "root trust anchor"))

    # --- zones behind forwarders -----------------------------------------------------------

    async def forwarded_zone_security(self, forward: Zone, name: dns.name.Name,
                                      reply: dns.message.Message, root: Callable, ctx) -> Zone:
        """The security of the zone a forwarder's answer came from: the deepest zone that
        signed data for ``name``, or, for unsigned data, the closest enclosing zone cut found by
        walking DS records down from the closest known ancestor (RFC 4035 §5.2). ``root()``
        gives the root zone, established."""
        nta = self.nta_for(name)
        if nta is not None:
            return Zone(nta, list(forward.servers), security=Verdict.INSECURE, recursive=True,
                        proof=[f"nta {nta}"], reason=f"negative trust anchor {nta}")
        found = [s for s in signers(reply) if name.is_subdomain(s)]
        target = max(found, key=lambda s: len(s.labels)) if found else name
        return await self._zone_on_path(target, forward, root, ctx)

    async def _zone_on_path(self, target: dns.name.Name, forward: Zone, root: Callable,
                            ctx) -> Zone:
        """Walk from the deepest zone of known security or trust anchor towards ``target`` one
        label at a time, looking up DS (validated like any answer): a DS starts a secure child whose DNSKEY set
        comes through the forwarders; a proven absence at a delegation ends the walk insecure."""
        current, name = None, target
        while current is None:
            current = self.secured.get(name)
            anchor = self.anchor(name) if current is None else None
            if anchor is not None:  # an island of security (RFC 4035 §4.4)
                island = Zone(name, list(forward.servers), recursive=True)
                current = self.secured.put(name, await self.load_keys(
                    island, anchor, ctx, f"anchor {name}"))
            if current is None and name == ROOT:
                current = self.secured.put(ROOT, await root(ctx))
            name = name.parent() if current is None else name
        while current.name != target and current.security is Verdict.SECURE:
            candidate = ancestor(target, len(current.name.labels) + 1)
            while True:
                answer = await self.lookup(candidate, DS, ctx)
                ds = next((r for r in answer.rrsets if r.rdtype == DS and r.name == candidate),
                          None)
                if ds is not None or answer.verdict is not Verdict.SECURE:
                    break
                nsecs = [r for r in answer.authority if r.rdtype in (NSEC, NSEC3)]
                cut = denial.prove_no_ds(candidate, nsecs, config=self.v.config,
                                         budget=ctx.budget)
                if cut.verdict is not Verdict.BOGUS or candidate == target:
                    break  # an insecure delegation, or the target is no zone cut of its own
                candidate = ancestor(target, len(candidate.labels) + 1)
            child = Zone(candidate, list(forward.servers), recursive=True, parent=current)
            if ds is not None and answer.verdict is Verdict.SECURE:
                child = await self.load_keys(child, ds, ctx, f"DS from {current.name}")
            elif answer.verdict is Verdict.SECURE and ds is None and candidate == target \
                    and cut.verdict is Verdict.BOGUS:
                return current  # target is inside current, not a cut
            else:
                child.security = Verdict.INSECURE
                child.proof.append(f"no-ds {candidate}")
            self.secured.put(candidate, child)
            current = child
        return current

