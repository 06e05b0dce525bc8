"""The answer cache: RRsets with their validation state, and negative answers with their proofs
(RFC 2308 §5), bounded in entries with least-recently-used eviction.

Keys are dnspython names, whose hashing and equality ignore ASCII case (RFC 4343). TTLs are
capped by the configured maximum and, for validated data, by the signature expiry
(RFC 4035 §5.3.3); what is served counts down from the time it was stored.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rrset

from resolver.dnssec import Verdict
from resolver.ede import EDE

ANY_TYPE = 255  # the key of a name error: it covers every type (RFC 2308 §5)


@dataclass(slots=True)
class Proof:
    """What a verdict rests on, for answers and for the forensic log."""

    zone: dns.name.Name | None = None
    zones: list[str] = field(default_factory=list)  # the chain of zone cuts, root first
    signatures: list = field(default_factory=list)  # (owner, type, signer, key tag, alg, inc, exp)
    denial: str | None = None  # "nsec", "nsec3", "nsec3-optout"
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Answer:
    """The validated outcome for one name and type: positive (``rrsets``, the answer RRsets
    with their RRSIGs, the chain of CNAMEs included) or negative (``rcode`` NXDOMAIN or NOERROR,
    ``authority`` the SOA and denial records with their RRSIGs)."""

    rcode: int
    verdict: Verdict
    rrsets: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    ede: EDE | None = None
    reason: str = ""
    proof: Proof = field(default_factory=Proof)
    ttl: int = 0


@dataclass(slots=True)
class _Entry:
    answer: Answer
    stored: float
    expires: float


class Cache:
    """Validated answers by (name, type), bounded by ``max_entries``."""

    def __init__(self, max_entries: int = 100_000, max_ttl: int = 86400,
                 max_negative_ttl: int = 3600, min_ttl: int = 0, clock=time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_ttl, self.max_negative_ttl, self.min_ttl = max_ttl, max_negative_ttl, min_ttl
        self.clock = clock
        self._entries: OrderedDict[tuple[dns.name.Name, int], _Entry] = OrderedDict()
        self._proofs: OrderedDict[tuple, dns.rrset.RRset] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: dns.name.Name, rdtype: int) -> Answer | None:
        """The answer for ``name``/``rdtype`` with its TTL counted down, or a cached name error
        for ``name``; None when absent or expired."""
        now = self.clock()
        for key in ((name, rdtype), (name, ANY_TYPE)):
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.expires <= now:
                del self._entries[key]
                continue
            self._entries.move_to_end(key)
            self.hits += 1
            answer = entry.answer
            left = int(entry.expires - now)
            return Answer(answer.rcode, answer.verdict, answer.rrsets, answer.authority,
                          answer.ede, answer.reason, answer.proof, left)
        self.misses += 1
        return None

    def put(self, name: dns.name.Name, rdtype: int, answer: Answer) -> None:
        """Store ``answer`` for ``answer.ttl`` seconds, capped (RFC 2308 §5 for negatives).
        Bogus answers are not cached here."""
        if answer.verdict is Verdict.BOGUS:
            return
        negative = not answer.rrsets
        cap = self.max_negative_ttl if negative else self.max_ttl
        ttl = max(self.min_ttl, min(answer.ttl, cap))
        if ttl <= 0:
            return
        key = (name, ANY_TYPE if answer.rcode == dns.rcode.NXDOMAIN else rdtype)
        now = self.clock()
        answer.authority = [self._shared(rrset) for rrset in answer.authority]
        proof = answer.proof
        proof.zones = [sys.intern(zone) for zone in proof.zones]
        proof.notes = [sys.intern(note) for note in proof.notes]
        self._entries[key] = _Entry(answer, now, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1

    def _shared(self, rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        """One object for identical authority RRsets: a zone's SOA and the NSEC/NSEC3 records
        and RRSIGs that prove a wildcard or a denial are repeated in every answer they cover.
        Cached RRsets are never changed (answers copy them to set a TTL), so sharing is safe;
        the table is bounded like the cache and only saves memory."""
        key = (rrset.name, rrset.rdtype, rrset.covers, rrset.ttl, frozenset(rrset))
        found = self._proofs.get(key)
        if found is None:
            self._proofs[key] = found = rrset
            if len(self._proofs) > self.max_entries:
                self._proofs.popitem(last=False)
        else:
            self._proofs.move_to_end(key)
        return found

    def clear(self) -> None:
        self._entries.clear()
        self._proofs.clear()
