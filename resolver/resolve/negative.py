"""Aggressive use of the DNSSEC-validated cache (RFC 8198): the NSEC and NSEC3 records of
answers validated Secure are kept by zone, and answer NXDOMAIN, NODATA and wildcard
expansions for other names they cover without asking a server (§5.1-§5.3).

The proofs are the validator's own (resolver.dnssec.nsec, nsec3), run over the kept records:
what a name below a delegation or a DNAME, an NSEC3 opt-out span (§5.2: only Secure proofs
answer), or NSEC3 iterations above the cap (RFC 9276 §3.2) cannot prove is asked upstream as
before. Records are taken only with the evidence of their validated signature, and used only
within that signature's validity window and their TTL, a negative answer's TTL capped by the
SOA's (its TTL and MINIMUM: §5.4, RFC 9077). An answer carries the SOA, NSEC or NSEC3 records
and RRSIGs a server's would. Work is bounded: NSEC3 proofs only for names a few labels below
the zone (each label a hash, spent from the query's budget), and a bounded number of zones,
and of records per zone, least recently used first out.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from resolver.dnssec import Budget, ValidatorConfig, Verdict, nsec, nsec3
from resolver.dnssec.canonical import label_count, name_text
from resolver.dnssec.result import Answer, DenialResult, Proof
from resolver.dnssec.typemap import wildcard_of
from resolver.dnssec.validator import type_text
from resolver.dnssec.zone import name_key, parent_key
from resolver.dnssec.verify import WINDOW_OK, check_window

SOA, DS, RRSIG, NSEC, NSEC3 = (dns.rdatatype.SOA, dns.rdatatype.DS, dns.rdatatype.RRSIG,
                               dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
MAX_ZONES = 256  # zones whose records are kept
MAX_RECORDS_PER_ZONE = 512  # NSEC, NSEC3 and wildcard RRsets kept per zone
MAX_HASHED_LABELS = 6  # an NSEC3 proof for a name at most this many labels below the zone
#: Types answered from a zone's own records only: a DS lives in the parent zone
#: (RFC 4035 §3.1.4.1), and DNSSEC's own types are not synthesised.
NOT_SYNTHESISED = frozenset((DS, RRSIG, NSEC, NSEC3, dns.rdatatype.ANY))


@dataclass(slots=True)
class _Held:
    """A validated RRset with its RRSIGs, the evidence of the signature that validated it
    (owner, type, signer, key tag, algorithm, inception, expiration), and when it goes."""

    rrset: dns.rrset.RRset
    sigs: dns.rrset.RRset
    evidence: tuple
    expires: float

    def usable(self, now: int, clock: float) -> bool:
        """Within its TTL and its signature's validity window (RFC 4034 §3.1.5)."""
        return self.expires > clock and \
            check_window(self.evidence[5], self.evidence[6], now) == WINDOW_OK


class _Zone:
    """One zone's kept records: its SOA, NSEC records sorted in canonical order (RFC 4034
    §6.1), an NSEC3 index, and wildcard RRsets by (wildcard, type), in one LRU."""

    def __init__(self, name: dns.name.Name) -> None:
        self.name = name
        self.soa: _Held | None = None
        self.zones: list[str] = []
        self.notes: list[str] = []
        self.held: OrderedDict[tuple, _Held] = OrderedDict()
        self.owners: list[dns.name.Name] = []  # of the NSEC records held, sorted
        self.index: nsec3.Index | None = None

    def keep(self, held: _Held) -> None:
        rrset = held.rrset
        if rrset.rdtype == NSEC:
            key = (NSEC, rrset.name)
            if key not in self.held:
                bisect.insort(self.owners, rrset.name)
        elif rrset.rdtype == NSEC3:
            rd = rrset[0]
            if self.index is None or (rd.salt, rd.iterations) != (self.index.salt,
                                                                  self.index.iterations):
                self._drop_nsec3()
                self.index = nsec3.Index(self.name, rd.salt, rd.iterations)
            digest = self.index.add(rrset.name, rd)
            if digest is None:
                return
            key = (NSEC3, digest)
        else:
            key = (rrset.rdtype, rrset.name)  # a wildcard's data
        self.held[key] = held
        self.held.move_to_end(key)
        while len(self.held) > MAX_RECORDS_PER_ZONE:
            self._forget(*self.held.popitem(last=False))

    def _forget(self, key: tuple, held: _Held) -> None:
        if key[0] == NSEC:
            del self.owners[bisect.bisect_left(self.owners, key[1])]
        elif key[0] == NSEC3 and self.index is not None:
            self.index.remove(key[1])

    def _drop_nsec3(self) -> None:
        for key in [k for k in self.held if k[0] == NSEC3]:
            del self.held[key]
        self.index = None

    def get(self, key: tuple, now: int, clock: float) -> _Held | None:
        """A held record still usable, marked used; an unusable one is forgotten."""
        held = self.held.get(key)
        if held is None:
            return None
        if not held.usable(now, clock):
            self._forget(key, self.held.pop(key))
            return None
        self.held.move_to_end(key)
        return held

    def nsec_before(self, name: dns.name.Name, now: int, clock: float) -> _Held | None:
        """The NSEC whose owner is ``name`` or the last before it in canonical order."""
        at = bisect.bisect_right(self.owners, name) - 1
        return self.get((NSEC, self.owners[at]), now, clock) if at >= 0 else None


class Ranges:
    """The validated NSEC and NSEC3 records of Secure answers, by zone (RFC 8198 §4), and
    the answers they prove. ``clock`` is the cache's (TTLs); ``now`` passed in is the
    validation time (signature windows)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._zones: OrderedDict[bytes, _Zone] = OrderedDict()  # by name_key
        self.answered = 0

    def __len__(self) -> int:
        return sum(len(zone.held) for zone in self._zones.values())

    def clear(self) -> None:
        self._zones.clear()

    def forget(self, zone: dns.name.Name) -> None:
        """Drop the records kept for ``zone``: its denial is to be asked of its servers afresh
        (the posture check, resolver.monitor)."""
        self._zones.pop(name_key(zone), None)

    # --- learning -------------------------------------------------------------------------

    def learn(self, name: dns.name.Name, answer: Answer, ttl: int) -> None:
        """Keep the SOA, NSEC and NSEC3 records of a Secure answer proven with them, and the
        data of a wildcard expansion (RFC 8198 §5.3), each with its validated signature's
        evidence: a record without one (never validated) is never kept."""
        proof = answer.proof
        if answer.verdict is not Verdict.SECURE or proof.zone is None or \
                proof.denial not in (nsec.KIND, nsec3.KIND) or proof.synthesised:
            return
        key = name_key(proof.zone)
        zone = self._zones.get(key)
        if zone is None:
            zone = self._zones[key] = _Zone(proof.zone)
            while len(self._zones) > MAX_ZONES:
                self._zones.popitem(last=False)
        self._zones.move_to_end(key)
        zone.zones, zone.notes = list(proof.zones), list(proof.notes)
        evidence = {(e[0], e[1]): e for e in proof.signatures}
        sigs = {(r.name, r.covers): r for r in answer.rrsets + answer.authority
                if r.rdtype == RRSIG}
        clock = self.clock()
        for rrset in answer.authority:
            if rrset.rdtype not in (SOA, NSEC, NSEC3) or not rrset.name.is_subdomain(zone.name):
                continue
            held = _held(rrset, sigs, evidence, clock + min(ttl, rrset.ttl))
            if held is None:
                continue
            if rrset.rdtype == SOA:
                zone.soa = held
            else:
                zone.keep(held)
        for rrset in answer.rrsets:
            if rrset.name == name and rrset.rdtype not in NOT_SYNTHESISED:
                wildcard = _expanded_from(rrset, sigs.get((name, rrset.rdtype)))
                held = _held(rrset, sigs, evidence, clock + min(ttl, rrset.ttl))
                if wildcard is not None and held is not None:
                    zone.keep(_renamed(held, wildcard))

    # --- answering ------------------------------------------------------------------------

    def answer(self, name: dns.name.Name, qtype: int, now: int, config: ValidatorConfig,
               budget: Budget) -> Answer | None:
        """The answer the kept records prove for ``name``/``qtype``: NODATA (an empty
        non-terminal, a wildcard without the type included), a wildcard expansion, or
        NXDOMAIN, in that order; None when they prove none of them Secure."""
        if qtype in NOT_SYNTHESISED:
            return None
        zone = self._zone_of(name)
        if zone is None:
            return None
        clock = self.clock()
        soa = zone.soa if zone.soa is not None and zone.soa.usable(now, clock) else None
        if zone.owners:
            found = self._with_nsec(zone, name, qtype, now, clock)
        elif zone.index is not None and \
                len(name.labels) - len(zone.name.labels) <= MAX_HASHED_LABELS:
            found = self._with_nsec3(zone, name, qtype, now, clock, config, budget)
        else:
            return None
        if found is None:
            return None
        rcode, data, used, result = found
        if not data and soa is None:
            return None  # a negative answer carries the zone's SOA (RFC 2308 §3)
        self.answered += 1
        return self._build(zone, name, rcode, data, used, result, [] if data else [soa])

    def _zone_of(self, name: dns.name.Name) -> _Zone | None:
        """The deepest zone with kept records that holds ``name``."""
        if not self._zones:
            return None
        key = name_key(name)
        while key:
            zone = self._zones.get(key)
            if zone is not None:
                return zone
            key = parent_key(key)
        return None

    def _with_nsec(self, zone: _Zone, name: dns.name.Name, qtype: int, now: int,
                   clock: float) -> tuple | None:
        """RFC 8198 §5.1: the NSEC at or before ``name``, and the one at or before the
        wildcard at the closest encloser it shows."""
        before = zone.nsec_before(name, now, clock)
        if before is None:
            return None
        used = [before]
        if before.rrset.name != name:
            cover = nsec.find_cover(name, nsec.records([before.rrset]))
            if cover is None:
                return None  # not covered, or below a delegation or DNAME (RFC 6840 §4.1)
            wildcard = wildcard_of(nsec.closest_encloser(name, cover))
            other = zone.nsec_before(wildcard, now, clock)
            if other is not None and other is not before:
                used.append(other)
        rrsets = [held.rrset for held in used]
        result = nsec.prove_nodata(name, qtype, rrsets)
        if result.secure:
            return dns.rcode.NOERROR, None, used, result
        data = self._wildcard_data(zone, name, qtype, now, clock)
        if data is not None:
            result = nsec.prove_wildcard_answer(name, data.rrset.name, [before.rrset])
            if result.secure:
                return dns.rcode.NOERROR, data, [before], result
        result = nsec.prove_nxdomain(name, rrsets)
        return (dns.rcode.NXDOMAIN, None, used, result) if result.secure else None

    def _with_nsec3(self, zone: _Zone, name: dns.name.Name, qtype: int, now: int,
                    clock: float, config: ValidatorConfig, budget: Budget) -> tuple | None:
        """RFC 8198 §5.2: the NSEC3 proofs over the zone's index; an opt-out span proves
        nothing Secure, and so answers nothing."""
        prover = nsec3.Prover(zone.index, config, budget)

        def found(rcode: int, data, proven: tuple) -> tuple | None:
            result, digests = proven
            if not result.secure:
                return None
            used = [zone.get((NSEC3, digest), now, clock) for digest in digests]
            return None if None in used else (rcode, data, used, result)

        answer = found(dns.rcode.NOERROR, None, prover.nodata(name, qtype))
        data = self._wildcard_data(zone, name, qtype, now, clock)
        if answer is None and data is not None:
            answer = found(dns.rcode.NOERROR, data, prover.wildcard_answer(name, data.rrset.name))
        return answer or found(dns.rcode.NXDOMAIN, None, prover.nxdomain(name))

    def _wildcard_data(self, zone: _Zone, name: dns.name.Name, qtype: int, now: int,
                       clock: float) -> _Held | None:
        """The kept data of type ``qtype`` of a wildcard at an ancestor of ``name``, the
        deepest first."""
        for at in range(1, len(name.labels) - len(zone.name.labels) + 1):
            held = zone.get((qtype, wildcard_of(dns.name.Name(name.labels[at:]))), now, clock)
            if held is not None:
                return held
        return None

    def _build(self, zone: _Zone, name: dns.name.Name, rcode: int, data: _Held | None,
               used: list[_Held], result: DenialResult, soa: list[_Held]) -> Answer:
        """The answer as a server's would be (RFC 4035 §3.1.3): the expanded data with its
        RRSIGs, the SOA and the NSEC or NSEC3 records with theirs, their signatures' evidence
        in the proof, and the shortest TTL left among them."""
        clock = self.clock()
        held = soa + used
        authority = [r for h in held for r in (h.rrset, h.sigs)]
        if data is not None:
            data = _renamed(data, name)
            held = [data] + held
        ttl = int(min(h.expires for h in held) - clock)
        signatures = [h.evidence for h in held]
        rrsets = [data.rrset, data.sigs] if data is not None else []
        proof = Proof(zone.name, list(zone.zones), signatures, result.kind, list(zone.notes),
                      [f"{name_text(h.rrset.name)} {type_text(h.rrset.rdtype)}" for h in used])
        return Answer(rcode, Verdict.SECURE, rrsets, authority, None, "", proof, max(ttl, 0))


def _held(rrset: dns.rrset.RRset, sigs: dict, evidence: dict, expires: float) -> _Held | None:
    """``rrset`` with its RRSIGs and its validated signature's evidence; None without them."""
    found = evidence.get((name_text(rrset.name), type_text(rrset.rdtype)))
    signatures = sigs.get((rrset.name, rrset.rdtype))
    if found is None or signatures is None:
        return None
    return _Held(rrset, signatures, found, expires)


def _expanded_from(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None) -> dns.name.Name | None:
    """The wildcard ``rrset`` was expanded from, read off its RRSIGs' label count (RFC 4035
    §5.3.4), or None when it was not."""
    if sigs is None:
        return None
    labels = min(rd.labels for rd in sigs)
    if labels >= label_count(rrset.name.labels):
        return None
    return dns.name.Name((b"*",) + rrset.name.labels[-(labels + 1):])


def _renamed(held: _Held, owner: dns.name.Name) -> _Held:
    """A wildcard's RRset and RRSIGs at ``owner``: kept at the wildcard, expanded to a name
    (RFC 4592 §3.3.1); the signature over the wildcard's form verifies for either."""
    def at(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(owner, rrset.ttl, list(rrset))
    return _Held(at(held.rrset), at(held.sigs), (name_text(owner),) + held.evidence[1:],
                 held.expires)
