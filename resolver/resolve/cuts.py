"""Zone cuts a reply went past (RFC 4035 §5.2): a server that holds several zones answers a
question from the deepest zone it has, or refers to a cut several labels down, signed by a zone
between (QNAME minimisation asks deep names early, RFC 9156 §2.3; so does a lookup without it).
Nothing is skipped for validation: each cut between the zone asked and the zone that answered is
found and established top-down, from its parent's signed data, by DS questions
(ChainOfTrust.find_cut), or taken from the zones already established.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.name

from resolver.dnssec import Verdict
from resolver.dnssec.chain import ChainOfTrust
from resolver.dnssec.zone import Zone


class Cuts:
    """``known(name)`` is an iterator's known zone cut at ``name`` (or None), ``remember(zone)``
    keeps a zone cut just established and returns it."""

    def __init__(self, trust: ChainOfTrust, known: Callable[[dns.name.Name], Zone | None],
                 remember: Callable[[Zone], Zone]) -> None:
        self.trust, self.known, self.remember = trust, known, remember

    def matter(self, zone: Zone, name: dns.name.Name) -> bool:
        """Whether the cuts between the established ``zone`` and ``name`` below it decide how
        data is judged: below a secure zone, or past a trust anchor (an island of security,
        RFC 4035 §4.4) below an insecure one."""
        return zone.security is Verdict.SECURE or (
            zone.security is Verdict.INSECURE and not zone.recursive
            and self.trust.island_between(zone.name, name) is not None)

    async def down_to(self, zone: Zone, target: dns.name.Name, ctx) -> Zone:
        """The deepest zone cut from the established ``zone`` down to ``target`` (``target``'s
        own zone when it is one), every cut on the way established from its parent (or its
        trust anchor), top-down. The walk stops at an insecure or bogus cut (the caller judges
        with it), or where no further cut is proven: data signed deeper is then judged with this
        zone's keys, and fails (never Secure without every DS and DNSKEY checked)."""
        current = zone
        while current.name != target and self.matter(current, target):
            nearer = self._known_below(current.name, target)
            if nearer is not None:
                current = nearer
                continue
            if current.security is Verdict.SECURE:
                cut = await self.trust.find_cut(current, target, ctx)
            else:  # the island's apex, from its anchor: its parent's servers lead to it
                cut = await self.trust.establish(self._below(current, self.trust.island_between(
                    current.name, target)), current, None, ctx)
            if cut is None:
                break
            current = self.remember(cut)
        return current

    async def signer(self, zone: Zone, signer: dns.name.Name, ctx) -> Zone:
        """The zone of ``signer``, whose signatures a reply from the established ``zone`` carries
        for data below it: the cuts above it established first (:meth:`down_to`), then the
        signer's own from its parent, which must prove that cut (a forged signer name is Bogus,
        never a new zone)."""
        known = self.known(signer)
        if known is not None and known.security is not Verdict.INDETERMINATE:
            return known
        parent = await self.down_to(zone, signer.parent(), ctx)
        if parent.security is not Verdict.SECURE and (parent.security is Verdict.BOGUS or
                                                       self.trust.anchor(signer) is None):
            return parent
        return self.remember(await self.trust.establish(self._below(parent, signer), parent,
                                                        None, ctx))

    @staticmethod
    def _below(parent: Zone, name: dns.name.Name) -> Zone:
        """A cut at ``name`` no referral showed: asked through its parent's servers until its
        own are known (ChainOfTrust asks its DNSKEY set that way)."""
        return Zone(name, list(parent.servers), list(parent.ns_names), expires=parent.expires,
                    parent=parent)

    def _known_below(self, top: dns.name.Name, target: dns.name.Name) -> Zone | None:
        """The deepest zone cut of known security strictly below ``top``, at or above
        ``target``: established earlier, from its own parent."""
        name = target
        while name != top and name.is_subdomain(top):
            zone = self.known(name)
            if zone is not None and zone.security is not Verdict.INDETERMINATE:
                return zone
            name = name.parent()
        return None
