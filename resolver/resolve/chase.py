"""CNAME and DNAME chains (RFC 1034 §3.6.2, RFC 6672 §3.2), followed over the iterator's lookups:
each link is validated in the zone that holds it, and the answer is the whole chain.

A chain is fetched before it is judged, as Unbound's iterator follows one before its validator
runs: a chain over the CNAME budget (``limits.max_cname_chain``) fails with none of its links
validated. The answer is then made by walking the chain again over the judged links alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

from resolver.dnssec import Verdict
from resolver.dnssec.canonical import same
from resolver.dnssec.result import Answer, Proof, ResolutionFailed
from resolver.dnssec.validator import Validator, weaker
from resolver.dnssec.zone import Zone, name_key
from resolver.ede import EDE
from resolver.errors import ResolverError

CNAME = dns.rdatatype.CNAME


class Denied(ResolverError):
    """A name in the resolution (a CNAME or DNAME target) is outside the client's policy: no
    query is sent for it. Carries the policy's decision."""

    def __init__(self, decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


@dataclass(slots=True, eq=False)
class Fetched:
    """A reply to ``name``/``qtype`` from ``zone`` (whose security is established), of
    ``kind``, not yet judged: a link of a CNAME chain, followed before it is validated."""

    zone: Zone
    name: dns.name.Name
    qtype: int
    reply: dns.message.Message
    kind: str


class Chains:
    """Chains over ``lookup(name, qtype, ctx, judge=...)`` (the iterator's: an Answer, or with
    ``judge`` False possibly a :class:`Fetched` reply) and ``settle(fetched, ctx)`` (its
    verdict, cached), at most ``most`` CNAMEs a chain."""

    def __init__(self, lookup: Callable[..., Awaitable[Answer | Fetched]],
                 settle: Callable[..., Awaitable[Answer]], validator: Validator, cache,
                 most: int) -> None:
        self.lookup, self.settle, self.validator = lookup, settle, validator
        self.cache, self.most = cache, most

    async def chase(self, qname: dns.name.Name, qtype: int, ctx,
                    permit=None) -> Answer:
        """Resolve ``qname``/``qtype`` following CNAME and DNAME chains (RFC 1034 §3.6.2,
        RFC 6672 §3.2), each step validated in its own zone. ``permit(name)``, when given, is
        asked before any CNAME or DNAME target is resolved; a refusal raises :class:`Denied`
        before a query for the target leaves.

        The chain is fetched first and judged after (:meth:`follow`); the answer is then
        made by walking it again over the judged links only, so that it follows validated
        data alone (a link whose validated data leads elsewhere than the reply said is asked
        again)."""
        if permit is not None:
            permit = _once(permit)
        judged = await self.follow(qname, qtype, ctx, permit)
        rrsets: list[dns.rrset.RRset] = []
        verdict = Verdict.SECURE
        # Each link's verdict by the names it holds, keyed by their canonical wire form (a
        # Name's hash is computed in Python at every use): (name, verdict).
        verdicts: dict[bytes, tuple[dns.name.Name, Verdict]] = {}
        proof = Proof()
        name, asked, ttl = qname, name_key(qname), 2**31
        seen = {asked}  # names asked, by canonical form
        most, cnames = self.most, 0
        for _ in range(most + 1):
            answer = judged.pop(asked, None) or await self.lookup(name, qtype, ctx)
            rrsets += answer.rrsets
            cnames += sum(r.rdtype == CNAME for r in answer.rrsets)  # in the chain so far
            if cnames > most:
                raise ResolutionFailed(EDE.OTHER, f"CNAME chain from {qname} longer than "
                                       f"{most}", proof)
            verdict = weaker(verdict, answer.verdict)
            owners = [name]  # a name once, not once per RRset it owns
            owners += [r.name for r in answer.rrsets if not same(r.name, name)]
            for owner in owners:
                key = name_key(owner)
                held = verdicts.get(key)
                verdicts[key] = (owner, answer.verdict) if held is None else \
                    (held[0], weaker(held[1], answer.verdict))
            proof.signatures += answer.proof.signatures
            proof.notes += [n for n in answer.proof.notes if n not in proof.notes]  # once each
            proof.zone = answer.proof.zone
            proof.zones += [z for z in answer.proof.zones if z not in proof.zones]
            proof.denial = answer.proof.denial or proof.denial
            proof.synthesised += answer.proof.synthesised
            ttl = min(ttl, answer.ttl)
            target = chain_end(name, qtype, answer.rrsets)
            if target is None or not answer.rrsets:
                whole = Answer(answer.rcode, verdict, rrsets, answer.authority, answer.ede,
                               answer.reason, proof, ttl, dict(verdicts.values()))
                # A chain lives as long as its shortest link, within the cache's caps.
                whole.ttl = self.cache.ttl_for(whole, negative=not answer.rrsets)
                return whole
            asked = name_key(target)
            if asked in seen:
                raise ResolutionFailed(EDE.OTHER, f"CNAME loop at {target}", proof)
            if permit is not None:
                decision = permit(target)
                if not decision.allowed:
                    raise Denied(decision)
            seen.add(asked)
            name = target
        raise ResolutionFailed(EDE.OTHER, f"CNAME chain longer than {most}", proof)

    async def follow(self, qname: dns.name.Name, qtype: int, ctx,
                     permit) -> dict[bytes, Answer]:
        """The chain from ``qname`` fetched before any link is validated, as Unbound's
        iterator follows it before its validator runs, then each link judged in order:
        {name_key: Answer}. A chain over the CNAME budget fails with none of its links
        validated (whatever their signatures, the answer would be SERVFAIL). A link that
        cannot be fetched fails only once the links before it are judged, so that their own
        failure (a forged CNAME's) is the one reported. The walk stops, leaving the verdict to
        :meth:`chase`'s validated walk, at a loop and at a target ``permit`` refuses (never
        asked)."""
        most, cnames = self.most, 0
        name, asked, links = qname, name_key(qname), []
        seen = {asked}
        for _ in range(most + 1):
            try:
                got = await self.lookup(name, qtype, ctx, judge=False)
            except ResolutionFailed:
                await self._judged(links, ctx)
                raise
            links.append((asked, got))
            rrsets = got.rrsets if isinstance(got, Answer) else self.validator.provisional(
                got.zone, name, qtype, got.reply, got.kind)
            cnames += sum(r.rdtype == CNAME for r in rrsets)
            if cnames > most:
                raise ResolutionFailed(EDE.OTHER, f"CNAME chain from {qname} longer than "
                                       f"{most}", Proof())
            target = chain_end(name, qtype, rrsets)
            if target is None or not rrsets:
                break
            asked = name_key(target)
            if asked in seen or (permit is not None and not permit(target).allowed):
                break
            seen.add(asked)
            name = target
        return await self._judged(links, ctx)

    async def _judged(self, links: list, ctx) -> dict[bytes, Answer]:
        """Each link fetched judged in order, the first to fail raising: {name_key: Answer}."""
        return {key: got if isinstance(got, Answer) else await self.settle(got, ctx)
                for key, got in links}


def _once(permit):
    """``permit`` asked once a name (by canonical form): both of a chase's walks ask it, and
    a policy counts each refusal."""
    decisions: dict[bytes, object] = {}

    def ask(name: dns.name.Name):
        key = name_key(name)
        found = decisions.get(key)
        if found is None:
            found = decisions[key] = permit(name)
        return found
    return ask


def chain_end(name: dns.name.Name, qtype: int,
              rrsets: list[dns.rrset.RRset]) -> dns.name.Name | None:
    """Where the CNAME chain in ``rrsets`` starting at ``name`` leads, if it ends without data
    of ``qtype``; None when the chain is complete. A chain that comes back to a name it passed
    leads there: the caller, which has asked for that name before, finds the loop."""
    if qtype == CNAME:
        return None
    current, passed = name, []
    while True:
        cname = None
        for rrset in rrsets:  # one pass a link: data of qtype at the name, else its CNAME
            rdtype = rrset.rdtype
            if (rdtype == qtype or rdtype == CNAME) and same(rrset.name, current):
                if rdtype == qtype:
                    return None
                if cname is None:
                    cname = rrset
        if cname is None:
            return None if same(current, name) else current
        passed.append(current)
        current = cname[0].target
        if any(same(current, n) for n in passed):
            return current
