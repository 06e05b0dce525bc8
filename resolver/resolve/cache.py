"""The answer cache: RRsets with their validation state, and negative answers with their proofs
(RFC 2308 §5), bounded in entries with least-recently-used eviction.

Keys are the question's name in lowercased wire form with its type, so that names differing
only in ASCII case meet (RFC 4343); answers keep the case they were served in. TTLs are capped
by the configured maximum and, for validated data, by the signature expiry (RFC 4035 §5.3.3);
what is served counts down from the time it was stored.

For memory (issue #5), an entry keeps its RRsets packed, one wire form each (RFC 1035 §4.1.3),
the owner left out when it is the entry's own name. What does not depend on that name (the
zone's SOA, NSEC and NSEC3 records with their RRSIGs, a wildcard's signature, the proof's chain
of zones and keys) is the same for many entries and is held once in a table, counted, until the
last entry holding it goes; so is the entry's layout of those among its own (issue #20: one
shared object, not a tuple an entry). The entries used last keep their parsed RRsets as well.

With ``aggressive_nsec`` (the default), the NSEC and NSEC3 records of Secure answers are kept
apart as well (resolver.resolve.negative) and answer other names they cover (RFC 8198).

With serve-stale on (``max_stale``, RFC 8767 §4), an expired entry is kept that much longer, a
miss for every lookup but one that asks for stale data (resolver.resolve.stale), and only if
stored in the current ``epoch``: a reload starts a new one (:meth:`Cache.new_epoch`).
"""

from __future__ import annotations

import struct
import sys
import time

import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import dns.wire

from resolver.dnssec.canonical import label_count, name_text, name_wire, wire_text
from resolver.dnssec import Verdict
from resolver.dnssec.config import Budget, ValidatorConfig
from resolver.dnssec.result import Answer, Proof  # noqa: F401 (the cache's unit, re-exported)
from resolver.resolve._entry import Entry
from resolver.resolve._lru import LruDict
from resolver.resolve.negative import Ranges

HOT_ENTRIES = 4096  # answers kept parsed as well as packed
ANY_TYPE = 255  # the key of a name error: it covers every type (RFC 2308 §5)
OWN_NAME = b"\xc0\x00"  # a packed RRset's owner when it is the entry's name: a pointer to it
RRSET_HEADER = struct.Struct("!HHHIH")  # type, covered type, class, TTL, number of RRs


class _Held:
    """A value in a :class:`_Table`, with the number of entries holding it."""

    __slots__ = ("value", "holders")

    def __init__(self, value) -> None:
        self.value, self.holders = value, 0


class _Table:
    """Immutable values shared by entries (packed RRsets, layouts of them, proofs), each held
    once for as long as an entry holds it."""

    def __init__(self) -> None:
        self._held: dict[object, _Held] = {}

    def take(self, value) -> _Held:
        held = self._held.get(value)
        if held is None:
            held = self._held[value] = _Held(value)
        held.holders += 1
        return held

    def give_back(self, held: _Held) -> bool:
        """Whether that was the last holder (the value is let go)."""
        held.holders -= 1
        if not held.holders:
            del self._held[held.value]
            return True
        return False

    def clear(self) -> None:
        self._held.clear()

    def __len__(self) -> int:
        return len(self._held)


def _key(wire: bytes, rdtype: int) -> bytes:
    return wire + rdtype.to_bytes(2, "big")


def _owner(key: bytes, entry: Entry) -> str:
    """The name ``entry`` was stored under, as text: its own, or its key's."""
    return entry.owner if entry.owner is not None else wire_text(key)


def pack_rrset(rrset: dns.rrset.RRset, name: dns.name.Name) -> bytes:
    """The RRset as its owner (:data:`OWN_NAME` for ``name`` exactly, in case too), type,
    covered type, class, TTL and RR count, then each RDATA uncompressed after its length
    (RFC 1035 §3.2.1, §4.1.3), so that any RRset packs, however large."""
    owner = OWN_NAME if rrset.name.labels == name.labels else rrset.name.to_wire()
    out = [owner, RRSET_HEADER.pack(rrset.rdtype, rrset.covers, rrset.rdclass, rrset.ttl,
                                    len(rrset))]
    for rdata in rrset:
        wire = rdata.to_wire()
        out += (len(wire).to_bytes(2, "big"), wire)
    return b"".join(out)


def unpack_rrset(wire: bytes, name: dns.name.Name) -> dns.rrset.RRset:
    return _unpack_next(dns.wire.Parser(wire), name)


def _unpack_next(parser: dns.wire.Parser, name: dns.name.Name) -> dns.rrset.RRset:
    """The packed RRset at the parser's position (one of several packed one after the other)."""
    if parser.wire.startswith(OWN_NAME, parser.current):
        parser.seek(parser.current + len(OWN_NAME))
        owner = name
    else:
        owner = parser.get_name()
    rdtype, covers, rdclass, ttl, count = parser.get_struct(RRSET_HEADER.format)
    rrset = dns.rrset.RRset(owner, rdclass, rdtype, covers)
    for _ in range(count):
        with parser.restrict_to(parser.get_uint16()):
            rrset.add(dns.rdata.from_wire_parser(rdclass, rdtype, parser))
    rrset.ttl = ttl
    return rrset


def _shared(rrset: dns.rrset.RRset, name: dns.name.Name) -> bool:
    """Whether other entries are likely to hold the same packed RRset: one owned by another
    name (a zone's SOA, NSEC and NSEC3 records, a CNAME target's data), or the signatures of a
    wildcard expansion, which are the wildcard's own for every name it expands to (fewer
    labels than the owner, RFC 4035 §5.3.4)."""
    if rrset.name.labels != name.labels:
        return True
    return rrset.rdtype == dns.rdatatype.RRSIG and any(
        rdata.labels < label_count(name.labels) for rdata in rrset)


def _proof_tuple(proof: Proof, owner: str) -> tuple:
    """The proof as (zone, zones, signatures, denial, notes, synthesised), immutable and with
    its texts interned; a signature of the entry's own name has None for its owner, so that the
    proofs of a zone's names are equal as often as their signatures allow. A signature is
    (owner, type, signer, key tag, algorithm, inception, expiration): three texts, then numbers
    (``Proof.signatures``)."""
    intern = sys.intern
    signatures = tuple((None if s[0] == owner else intern(s[0]), intern(s[1]), intern(s[2]))
                       + s[3:] for s in proof.signatures)
    return (proof.zone, tuple(map(sys.intern, proof.zones)), signatures, proof.denial,
            tuple(map(sys.intern, proof.notes)), tuple(proof.synthesised))


def _proof(stored: tuple, owner: str) -> Proof:
    zone, zones, signatures, denial, notes, synthesised = stored
    return Proof(zone, list(zones), [(owner,) + s[1:] if s[0] is None else s
                                     for s in signatures], denial, list(notes),
                 list(synthesised))


class Cache:
    """Validated answers by (name, type), bounded by ``max_entries``; ``ranges`` the NSEC and
    NSEC3 records kept for aggressive use (None when ``aggressive_nsec`` is off)."""

    def __init__(self, max_entries: int = 100_000, max_ttl: int = 86400,
                 max_negative_ttl: int = 3600, min_ttl: int = 0, clock=time.monotonic,
                 aggressive_nsec: bool = True, max_stale: int = 0) -> None:
        self.max_entries = max_entries
        self.max_stale, self.epoch = max_stale, 0
        self.max_ttl, self.max_negative_ttl, self.min_ttl = max_ttl, max_negative_ttl, min_ttl
        self.clock = clock
        self._entries: LruDict = LruDict()  # OrderedDict's eviction, without its memory
        self._shared = _Table()
        # The parsed RRsets of the entries used last (entry, rrsets, authority), bounded.
        self._hot = LruDict()
        self._hot_size = min(max_entries, HOT_ENTRIES)
        self.hits = self.misses = self.evictions = 0
        self.ranges = Ranges(lambda: self.clock()) if aggressive_nsec else None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: dns.name.Name, rdtype: int, *, stale: bool = False,
            refresh_until: float = 0.0) -> Answer | None:
        """The answer for ``name``/``rdtype`` with its TTL counted down, or a cached name error
        for ``name``; None when absent or expired. With ``stale``, an expired entry kept for
        serve-stale comes back too, with TTL 0; an entry expiring before ``refresh_until``
        (the cache's clock) is a miss, so that a prefetch asks again."""
        now = self.clock()
        wire = name_wire(name.labels)
        for key in (_key(wire, rdtype), _key(wire, ANY_TYPE)):
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.expires <= now:
                if entry.expires + self.max_stale <= now or entry.epoch != self.epoch:
                    self._drop(self._entries.pop(key))
                    continue
                if not stale:
                    continue
            if entry.expires < refresh_until:
                continue
            self._entries.move_to_end(key)
            self.hits += 1
            hot = self._hot.get(key)
            if hot is not None and hot[0] is entry:
                self._hot.move_to_end(key)
            return self._answer(key, entry, now, keep=True)
        self.misses += 1
        return None

    def fresh(self, newest: int):
        """(name, type, answer) of the unexpired entries among the ``newest`` used last, least
        recently used first, its TTL what is left: what resolver.resolve.persist writes at
        shutdown (or hands over while serving: an entry gone meanwhile is left out)."""
        now = self.clock()
        for key, entry in list(self._entries.items())[-newest:]:
            if entry.expires > now and self._entries.get(key) is entry:
                yield (dns.name.from_text(_owner(key, entry)), int.from_bytes(key[-2:], "big"),
                       self._answer(key, entry, now, keep=False))

    def _answer(self, key: bytes, entry: Entry, now: float, *, keep: bool) -> Answer:
        """``entry`` as an Answer, its RRsets parsed (or kept parsed, with ``keep``)."""
        hot = self._hot.get(key)
        if hot is not None and hot[0] is entry:
            rrsets, authority = hot[1], hot[2]
        else:
            rrsets, authority = self._unpack(key, entry)
            if keep:
                self._keep_hot(key, entry, rrsets, authority)
        return Answer(entry.rcode, entry.verdict, rrsets, authority, entry.ede, entry.reason,
                      _proof(entry.proof.value, _owner(key, entry)),
                      max(0, int(entry.expires - now)))

    def put(self, name: dns.name.Name, rdtype: int, answer: Answer) -> None:
        """Store ``answer`` for ``answer.ttl`` seconds, capped (RFC 2308 §5 for negatives).
        Bogus answers are not cached here."""
        if answer.verdict is Verdict.BOGUS:
            return
        ttl = self.ttl_for(answer, negative=not answer.rrsets)
        if ttl <= 0:
            return
        if self.ranges is not None:
            self.ranges.learn(name, answer, ttl)
        key = _key(name_wire(name.labels),
                   ANY_TYPE if answer.rcode == dns.rcode.NXDOMAIN else rdtype)
        owner = name_text(name)
        entry = Entry(None if owner == owner.lower() else owner, None, None, len(answer.rrsets),
                       answer.rcode, answer.verdict, answer.ede, answer.reason,
                       self._shared.take(_proof_tuple(answer.proof, owner)), self.clock() + ttl,
                       ttl, self.epoch)
        old = self._entries.pop(key, None)
        if old is not None:
            self._drop(old)
        self._entries[key] = entry
        self._keep_hot(key, entry, answer.rrsets, answer.authority)
        while len(self._entries) > self.max_entries:
            self._drop(self._entries.popitem(last=False)[1])
            self.evictions += 1

    def synthesise(self, name: dns.name.Name, rdtype: int, now: int, config: ValidatorConfig,
                   budget: Budget) -> Answer | None:
        """The answer the kept NSEC or NSEC3 records prove for ``name``/``rdtype`` at the
        validation time ``now`` (RFC 8198), stored like one fetched; None when they prove
        nothing or ``aggressive_nsec`` is off."""
        if self.ranges is None:
            return None
        answer = self.ranges.answer(name, rdtype, now, config, budget)
        if answer is not None:
            self.put(name, rdtype, answer)
        return answer

    def expiring(self, name: dns.name.Name, rdtype: int, fraction: float) -> float | None:
        """When the fresh entry for ``name``/``rdtype`` expires (the cache's clock), if it is
        in the last ``fraction`` of its TTL; else None."""
        wire = name_wire(name.labels)
        for key in (_key(wire, rdtype), _key(wire, ANY_TYPE)):
            entry = self._entries.get(key)
            if entry is not None:
                left = entry.expires - self.clock()
                return entry.expires if 0 < left <= entry.ttl * fraction else None
        return None

    def new_epoch(self) -> None:
        """Entries stored from now on are a new epoch: those before are never served stale
        (a reload may have changed the policy or the trust they were judged by)."""
        self.epoch += 1

    def ttl_for(self, answer: Answer, *, negative: bool) -> int:
        """How long ``answer`` may be kept, here or as the bytes sent: its TTL within
        ``min_ttl`` and the cap, ``max_negative_ttl`` for a negative answer (RFC 2308 §5),
        else ``max_ttl``."""
        cap = self.max_negative_ttl if negative else self.max_ttl
        return max(self.min_ttl, min(answer.ttl, cap))

    def _pack(self, key: bytes, entry: Entry, rrsets: list, authority: list) -> None:
        """Pack ``entry``'s RRsets: its own one after the other in ``own``, and in ``shared``
        the layout, held in the table, of the shared ones among them (None where the next own
        one goes); ``shared`` is None when it has none."""
        name = dns.name.from_text(_owner(key, entry))
        own, layout = [], []
        for rrset in rrsets + authority:
            wire = pack_rrset(rrset, name)
            if _shared(rrset, name):
                layout.append(self._shared.take(wire))
            else:
                own.append(wire)
                layout.append(None)
        entry.own = b"".join(own)
        if len(own) < len(layout):
            entry.shared = self._shared.take(tuple(layout))
            if entry.shared.holders > 1:  # the layout was held already, with its RRsets
                self._give_back_rrsets(layout)

    def _unpack(self, key: bytes, entry: Entry) -> tuple[list, list]:
        name = dns.name.from_text(_owner(key, entry))
        own = dns.wire.Parser(entry.own)
        if entry.shared is None:
            rrsets = []
            while own.remaining():
                rrsets.append(_unpack_next(own, name))
        else:
            rrsets = [_unpack_next(own, name) if held is None else unpack_rrset(held.value, name)
                      for held in entry.shared.value]
        return rrsets[:entry.answers], rrsets[entry.answers:]

    def _drop(self, entry: Entry) -> None:
        """Give back what a removed entry held in the table."""
        self._shared.give_back(entry.proof)
        if entry.shared is not None and self._shared.give_back(entry.shared):
            self._give_back_rrsets(entry.shared.value)

    def _give_back_rrsets(self, layout: tuple | list) -> None:
        """Give back the shared RRsets a layout holds (None marks an entry's own)."""
        for held in layout:
            if held is not None:
                self._shared.give_back(held)

    def _keep_hot(self, key: bytes, entry: Entry, rrsets: list, authority: list) -> None:
        """Keep the parsed RRsets of the most recently used entries: parsing them back costs
        tens of µs with dnspython, too much for names asked again and again. The entry that
        leaves is packed if it is still stored and was not yet."""
        self._hot.pop(key, None)  # inserted again: the newest, in one insertion
        self._hot[key] = (entry, rrsets, authority)
        if len(self._hot) > self._hot_size:
            old_key, (old, old_rrsets, old_authority) = self._hot.popitem(last=False)
            if old.own is None and self._entries.get(old_key) is old:
                self._pack(old_key, old, old_rrsets, old_authority)

    def clear(self) -> None:
        if self.ranges is not None:
            self.ranges.clear()
        self._entries.clear()
        self._hot.clear()
        self._shared.clear()
