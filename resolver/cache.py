"""The answer cache: RRsets with their validation state, and negative answers with their proofs
(RFC 2308 §5), bounded in entries with least-recently-used eviction.

Keys are dnspython names, whose hashing and equality ignore ASCII case (RFC 4343). TTLs are
capped by the configured maximum and, for validated data, by the signature expiry
(RFC 4035 §5.3.3); what is served counts down from the time it was stored. Entries keep their
RRsets as message bytes and the texts of their proofs interned, for memory (issue #5); the
entries used last keep the parsed RRsets instead, and are packed when they leave that set.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rrset

from resolver.dnssec import Verdict
from resolver.ede import EDE

HOT_ENTRIES = 4096  # answers kept parsed as well as packed
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
    """A stored answer: its RRsets as one DNS message's bytes (RFC 1035 §4.1; answer and
    authority sections), parsed again when read; about a third of the memory of the objects.
    None while the parsed RRsets are kept hot (packed when they leave, off the miss path)."""

    packed: bytes | tuple[list, list] | None  # the objects when they do not fit a message
    rcode: int
    verdict: Verdict
    ede: EDE | None
    reason: str
    proof: Proof
    stored: float
    expires: float


def _interned(signature: tuple) -> tuple:
    """A proof's signature (owner, type, signer, key tag, algorithm, inception, expiration)
    with its texts interned: the type and signer repeat across a zone's answers."""
    return tuple(sys.intern(v) if type(v) is str else v for v in signature)


def _pack(rrsets: list, authority: list) -> bytes | tuple[list, list]:
    message = dns.message.Message(id=0)
    message.answer, message.authority = list(rrsets), list(authority)
    try:
        return message.to_wire()
    except dns.exception.TooBig:  # near 64 KiB: kept as objects
        return (rrsets, authority)


def _unpack(packed: bytes | tuple[list, list]) -> tuple[list, list]:
    if type(packed) is tuple:
        return packed
    message = dns.message.from_wire(packed)
    return message.answer, message.authority


class Cache:
    """Validated answers by (name, type), bounded by ``max_entries``."""

    def __init__(self, max_entries: int = 100_000, max_ttl: int = 86400,
                 max_negative_ttl: int = 3600, min_ttl: int = 0, clock=time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_ttl, self.max_negative_ttl, self.min_ttl = max_ttl, max_negative_ttl, min_ttl
        self.clock = clock
        self._entries: OrderedDict[tuple[dns.name.Name, int], _Entry] = OrderedDict()
        # The parsed RRsets of the entries used last (entry, rrsets, authority), bounded.
        self._hot: OrderedDict[tuple[dns.name.Name, int], tuple] = OrderedDict()
        self._hot_size = min(max_entries, HOT_ENTRIES)
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
            hot = self._hot.get(key)
            if hot is not None and hot[0] is entry:
                self._hot.move_to_end(key)
                rrsets, authority = hot[1], hot[2]
            else:
                rrsets, authority = _unpack(entry.packed)
                self._keep_hot(key, entry, rrsets, authority)
            return Answer(entry.rcode, entry.verdict, rrsets, authority, entry.ede,
                          entry.reason, entry.proof, int(entry.expires - now))
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
        proof = answer.proof
        proof.zones = [sys.intern(zone) for zone in proof.zones]
        proof.notes = [sys.intern(note) for note in proof.notes]
        proof.signatures = [_interned(signature) for signature in proof.signatures]
        entry = _Entry(None, answer.rcode, answer.verdict, answer.ede, answer.reason, proof,
                       now, now + ttl)
        self._entries[key] = entry
        self._keep_hot(key, entry, answer.rrsets, answer.authority)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1

    def _keep_hot(self, key: tuple, entry: _Entry, rrsets: list, authority: list) -> None:
        """Keep the parsed RRsets of the most recently used entries: parsing a message back
        costs about 150 µs with dnspython, too much for names asked again and again. The entry
        that leaves is packed if it is still stored and was not yet."""
        self._hot[key] = (entry, rrsets, authority)
        self._hot.move_to_end(key)
        if len(self._hot) > self._hot_size:
            old_key, (old, old_rrsets, old_authority) = self._hot.popitem(last=False)
            if old.packed is None and self._entries.get(old_key) is old:
                old.packed = _pack(old_rrsets, old_authority)

    def clear(self) -> None:
        self._entries.clear()
        self._hot.clear()
