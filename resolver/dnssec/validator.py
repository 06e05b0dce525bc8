"""The validator stage: one upstream response, the zone it was asked of and that zone's
authenticated keys in; a classification and a verdict with its proof out (RFC 4035 §5,
RFC 6840 §4). It sends nothing: the iterator fetches, the chain of trust (resolver.dnssec.chain)
decides which keys a zone has, and this module judges what a reply says with them.

Kinds of response (RFC 1034 §5.3.3 step 4, RFC 4035 §5): answer (with CNAME and DNAME chains
in the zone and wildcard expansions), nxdomain, nodata, referral, lame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from resolver.dnssec.canonical import label_count, name_text, same, within
from resolver.dnssec import denial
from resolver.dnssec.config import Budget, BudgetName, ValidatorConfig
from resolver.dnssec.result import Answer, Proof, ResolutionFailed, ValidationResult, Verdict
from resolver.dnssec.sigcrypt import authenticate_dnskeys, validate_rrset
from resolver.dnssec.zone import Zone
from resolver.ede import EDE

A, NS, SOA, DS, DNSKEY, CNAME, DNAME, RRSIG, NSEC, NSEC3 = (
    dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.SOA, dns.rdatatype.DS,
    dns.rdatatype.DNSKEY, dns.rdatatype.CNAME, dns.rdatatype.DNAME, dns.rdatatype.RRSIG,
    dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
# Plain ints for the reply's header bits: ``Flag & int`` and ``Message.rcode()`` build enum
# members (about a microsecond each) on a path every upstream reply takes.
_AA, _NOERROR, _NXDOMAIN = int(dns.flags.AA), int(dns.rcode.NOERROR), int(dns.rcode.NXDOMAIN)
INSECURE_REASONS = frozenset((EDE.UNSUPPORTED_DNSKEY_ALGORITHM, EDE.UNSUPPORTED_DS_DIGEST_TYPE,
                              EDE.UNSUPPORTED_NSEC3_ITERATIONS))


def rcode_of(reply: dns.message.Message) -> int:
    """``reply.rcode()`` as a plain int: the header's four bits under the OPT record's eight
    (RFC 6891 §6.1.3), read off the OPT RRset's TTL (``ednsflags``, without its property's
    Python-level calls)."""
    opt = reply.opt
    return int(reply.flags) & 0xF | ((opt.ttl >> 20) & 0xFF0 if opt is not None else 0)


# At most one entry per RR type number (65536); dnspython's named types made at import, so
# that a fresh server's first lookups of a type (its record's qtype, an RRSIG's type covered)
# do not pay for the enum lookup (15-30 us the first time).
_TYPE_TEXT: dict[int, str] = {int(t): dns.rdatatype.to_text(t) for t in dns.rdatatype.RdataType}


def type_text(rdtype: int) -> str:
    """``dns.rdatatype.to_text(rdtype)`` (a mnemonic, or RFC 3597 §5's TYPEnnn), looked up
    once per type: dnspython's enum lookup costs a microsecond per call."""
    text = _TYPE_TEXT.get(rdtype)
    if text is None:
        text = _TYPE_TEXT[rdtype] = dns.rdatatype.to_text(rdtype)
    return text


def rrsets_of(section, rdtype: int, covers: int = 0) -> list[dns.rrset.RRset]:
    return [r for r in section if r.rdtype == rdtype and r.covers == covers]


def find(section, name: dns.name.Name, rdtype: int, covers: int = 0) -> dns.rrset.RRset | None:
    for r in section:
        if r.rdtype == rdtype and r.covers == covers and same(r.name, name):
            return r
    return None


def sigs_of(section, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
    return find(section, name, RRSIG, rdtype)


def signers(reply: dns.message.Message) -> list[dns.name.Name]:
    """The signer of every RRSIG in the answer and authority sections, repeats included (a
    list: a set would hash each Name in Python)."""
    return [rd.signer for section in (reply.answer, reply.authority)
            for r in section if r.rdtype == RRSIG for rd in r]


def signer_in(reply: dns.message.Message, zone: dns.name.Name) -> bool:
    """Whether ``zone`` is among :func:`signers` (an RRSIG of the reply names it as its
    signer); not :func:`_signed_by`, which asks it of one RRset."""
    return any(same(signer, zone) for signer in signers(reply))


def _signed_by(reply: dns.message.Message, rrset: dns.rrset.RRset,
               signer: dns.name.Name) -> bool:
    """Whether ``rrset`` has no RRSIG in the reply (its absence is for the proof to judge) or
    one by ``signer``."""
    sigs = sigs_of(reply.authority, rrset.name, rrset.rdtype)
    return sigs is None or any(same(rd.signer, signer) for rd in sigs)


_STRENGTH = (Verdict.SECURE, Verdict.INSECURE, Verdict.INDETERMINATE, Verdict.BOGUS)


def _evidence(rrset: dns.rrset.RRset, sig) -> tuple:
    """A validated signature as a proof lists it: owner, type, signer, key tag, algorithm,
    inception, expiration."""
    return (name_text(rrset.name), type_text(rrset.rdtype), name_text(sig.signer),
            sig.key_tag, int(sig.algorithm), sig.inception, sig.expiration)


def weaker(a: Verdict, b: Verdict) -> Verdict:
    return a if _STRENGTH.index(a) >= _STRENGTH.index(b) else b


@dataclass(slots=True)
class Delegation:
    """What the parent's signed data says of a child zone (RFC 4035 §5.2): a validated DS
    (``ds`` set, SECURE), a proven absence of DS (INSECURE), or BOGUS with the reason."""

    verdict: Verdict
    ds: dns.rrset.RRset | None = None
    ede: EDE | None = None
    reason: str = ""
    note: str = ""
    budget: BudgetName | None = None


class Validator:
    """Judges replies with the keys it is given (RFC 4035 §5.3-§5.4); no I/O."""

    def __init__(self, config: ValidatorConfig, clock: Callable[[], int],
                 max_cname_chain: int) -> None:
        self.config = config
        self.now = clock
        self.max_cname_chain = max_cname_chain

    # --- classifying ----------------------------------------------------------------------

    @staticmethod
    def classify(zone: Zone, qname: dns.name.Name, qtype: int,
                 reply: dns.message.Message) -> str:
        """What kind of reply this is for the question asked of ``zone`` (RFC 1034 §5.3.3
        step 4; Unbound's response types): answer, nxdomain, nodata, referral or lame.

        A reply that starts a CNAME or DNAME chain at ``qname`` is an answer whatever its
        rcode: the rcode speaks of the chain's last name (RFC 6604 §2), which may lie in
        another zone; only the links in ``zone`` are judged here, and the rest is asked
        again of its own zone."""
        rcode = rcode_of(reply)
        if rcode != _NOERROR and rcode != _NXDOMAIN:
            return "lame"
        for rrset in reply.answer:
            if rrset.rdtype in (qtype, CNAME) and same(rrset.name, qname):
                return "answer"
            if rrset.rdtype == DNAME and within(qname, rrset.name) and \
                    not same(qname, rrset.name) and within(rrset.name, zone.name):
                return "answer"  # in bailiwick only (RFC 2181 §5.4.1)
        if rcode == _NXDOMAIN:
            return "nxdomain"
        if not zone.recursive and not int(reply.flags) & _AA:
            for rrset in rrsets_of(reply.authority, NS):
                cut = rrset.name
                if same(cut, zone.name) or not within(cut, zone.name):
                    continue  # upward or sideways: lame (RFC 1034 §5.3.3 step 4c)
                if not within(qname, cut) or (qtype == DS and same(cut, qname)):
                    continue  # a DS lives on the parent side of its cut (RFC 4035 §3.1.4.1)
                return "referral"
            return "lame"  # neither authoritative nor a downward referral
        if reply.answer:
            return "lame"  # an answer about something else
        return "nodata"

    # --- the chain of trust's judgements (RFC 4035 §5.2) ----------------------------------

    def delegation(self, name: dns.name.Name, parent: Zone, reply: dns.message.Message,
                   budget: Budget) -> Delegation:
        """The child ``name``'s DS set validated with the parent's keys, or the parent's
        proof that it is an unsigned delegation, from ``reply`` (a referral or the answer to
        a DS query). Raises ResolutionFailed when the parent's signed data proves neither."""
        where = reply.answer  # the answer to a DS query, else the referral's authority
        ds = find(where, name, DS)
        if ds is None:
            where = reply.authority
            ds = find(where, name, DS)
        if ds is not None:
            result = validate_rrset(ds, sigs_of(where, name, DS), parent.keys, now=self.now(),
                                    budget=budget, config=self.config)
            if not result.secure:
                return Delegation(Verdict.BOGUS, None, result.ede, f"DS of {name}: {result.reason}",
                                  budget=result.budget)
            return Delegation(Verdict.SECURE, ds, note=f"ds {name_text(name)} " + " ".join(
                f"{rd.key_tag}/{rd.algorithm}/{rd.digest_type}" for rd in ds))
        proof_rrsets = self.denial_rrsets(reply, parent.name)
        self.check_signatures(proof_rrsets, reply, parent, budget)
        proof = denial.prove_no_ds(name, proof_rrsets, config=self.config, budget=budget)
        if proof.verdict is Verdict.BOGUS:
            # Only an NSEC (NSEC3) at the name with NS and neither DS nor SOA, or an opt-out
            # span, proves an unsigned delegation. Anything else contradicts the zone cut the
            # referral or a signer name claimed: Bogus, and no cut is learned.
            raise ResolutionFailed(EDE.DNSSEC_BOGUS if proof_rrsets else EDE.NSEC_MISSING,
                                   f"zone {parent.name}: no delegation to {name} is proven: "
                                   f"{proof.reason}", budget=proof.budget)
        return Delegation(Verdict.INSECURE, note=f"no-ds {name_text(name)} {proof.kind}")

    def dnskeys(self, name: dns.name.Name, trust: dns.rrset.RRset, reply: dns.message.Message,
                kind: str, budget: Budget) -> tuple[dns.rrset.RRset | None, ValidationResult]:
        """The zone's DNSKEY set from the reply to its DNSKEY query, authenticated by the DS
        set or trust anchor ``trust`` (RFC 4035 §5.2)."""
        keys = find(reply.answer, name, DNSKEY) if kind == "answer" else None
        if keys is None:
            return None, ValidationResult(Verdict.BOGUS, EDE.DNSKEY_MISSING,
                                          f"{name} has no DNSKEY set")
        return keys, authenticate_dnskeys(keys, sigs_of(reply.answer, name, DNSKEY), trust,
                                          now=self.now(), budget=budget, config=self.config)

    # --- answers --------------------------------------------------------------------------

    def answer(self, zone: Zone, name: dns.name.Name, qtype: int, reply: dns.message.Message,
               kind: str, budget: Budget) -> Answer:
        """The verdict on a reply of ``kind`` "answer", "nxdomain" or "nodata" from ``zone``,
        whose security and keys are established, with its proof."""
        chain = zone.chain()
        proof = Proof(zone.name, notes=[note for z in chain for note in z.proof],
                      zones=[name_text(z.name) for z in chain])
        if zone.security is Verdict.BOGUS:
            raise ResolutionFailed(zone.ede or EDE.DNSSEC_BOGUS, zone.reason, proof, zone.budget)
        secure = zone.security is Verdict.SECURE
        if kind == "answer":
            answer = self.positive(zone, name, qtype, reply, proof, secure, budget)
        else:
            answer = self.negative(zone, name, qtype, reply, kind, proof, secure, budget)
        if not secure and answer.ede is None and zone.ede in INSECURE_REASONS:
            # Say why data is insecure where a DS named an algorithm or digest we cannot use
            # (RFC 8914 §4.2, §4.3).
            answer.ede, answer.reason = zone.ede, zone.reason
        return answer

    def positive(self, zone: Zone, name: dns.name.Name, qtype: int, reply: dns.message.Message,
                 proof: Proof, secure: bool, budget: Budget) -> Answer:
        """The RRsets answering ``name`` in this reply, following CNAMEs and DNAMEs that stay
        in the zone, each validated (RFC 4035 §5.3) and wildcard expansions proven
        (RFC 4035 §5.3.4). A chain longer than the CNAME budget is refused before any of its
        signatures is checked."""
        links = self.links(zone, name, qtype, reply, proof)
        cnames = sum((rrset if synthesized is None else synthesized).rdtype == CNAME
                     for rrset, synthesized in links)
        if cnames > self.max_cname_chain:
            raise ResolutionFailed(EDE.OTHER, f"CNAME chain from {name} longer than "
                                   f"{self.max_cname_chain}", proof)
        rrsets, authority = [], []
        ttl, verdict = 2**31, Verdict.SECURE if secure else Verdict.INSECURE
        for rrset, synthesized in links:
            sigs = sigs_of(reply.answer, rrset.name, rrset.rdtype)
            if secure:
                result = validate_rrset(rrset, sigs, zone.keys, now=self.now(),
                                        budget=budget, config=self.config)
                if not result.secure:
                    raise ResolutionFailed(result.ede or EDE.DNSSEC_BOGUS,
                                           f"zone {zone.name}: {result.reason}", proof,
                                           result.budget)
                ttl = min(ttl, result.ttl)
                sig = result.rrsig
                proof.signatures.append(_evidence(rrset, sig))
                if sig.labels < label_count(rrset.name.labels):
                    wildcard = dns.name.Name((b"*",) + rrset.name.labels[-(sig.labels + 1):])
                    nsecs = self.denial_rrsets(reply, zone.name)
                    proof.signatures += [e[:7] for e in
                                         self.check_signatures(nsecs, reply, zone, budget)]
                    expansion = denial.prove_wildcard_answer(rrset.name, wildcard, nsecs,
                                                             config=self.config, budget=budget)
                    if expansion.verdict is Verdict.BOGUS:
                        raise ResolutionFailed(expansion.ede or EDE.DNSSEC_BOGUS,
                                               f"wildcard answer for {rrset.name}: "
                                               f"{expansion.reason}", proof, expansion.budget)
                    verdict = weaker(verdict, expansion.verdict)
                    proof.denial = expansion.kind
                    for nsec in nsecs:
                        authority.append(nsec)
                        nsec_sigs = sigs_of(reply.authority, nsec.name, nsec.rdtype)
                        if nsec_sigs is not None:
                            authority.append(nsec_sigs)
            else:
                ttl = min(ttl, rrset.ttl)
            rrsets.append(rrset)
            if sigs is not None:
                rrsets.append(sigs)
            if synthesized is not None:
                rrsets.append(synthesized)
        if not rrsets:
            raise ResolutionFailed(EDE.OTHER, f"no usable answer for {name}", proof)
        return Answer(dns.rcode.NOERROR, verdict, rrsets, authority, None, "", proof, ttl)

    def provisional(self, zone: Zone, name: dns.name.Name, qtype: int,
                    reply: dns.message.Message, kind: str) -> list[dns.rrset.RRset]:
        """Where a reply of ``kind`` leads, none of it validated: the RRsets of the chain
        answering ``name`` as :meth:`positive` follows it (a DNAME by the CNAME synthesised
        from it), empty for a negative reply. For an iterator to follow a chain before it is
        judged, never to answer with."""
        if kind != "answer":
            return []
        return [rrset if synthesized is None else synthesized
                for rrset, synthesized in self.links(zone, name, qtype, reply, Proof(zone.name))]

    def links(self, zone: Zone, name: dns.name.Name, qtype: int, reply: dns.message.Message,
              proof: Proof) -> list[tuple[dns.rrset.RRset, dns.rrset.RRset | None]]:
        """The chain answering ``name`` in this reply, none of it validated yet: at each name
        its data of ``qtype``, else a DNAME of the zone above it with the CNAME synthesised
        from it (RFC 6672 §3.2: the server's own CNAME is unsigned and not used), else its
        CNAME, while the targets stay in the zone; at most ``max_cname_chain`` + 1 links,
        each RRset once (RFC 2181 §5: a loop ends the chain; the iterator names the loop).
        Each link is (RRset, the CNAME synthesised from it, or None)."""
        links: list[tuple[dns.rrset.RRset, dns.rrset.RRset | None]] = []
        current, followed = name, []
        dnames = rrsets_of(reply.answer, DNAME)
        for _ in range(self.max_cname_chain + 1):
            if followed and any(same(current, n) for n in followed):
                break
            followed.append(current)
            rrset = find(reply.answer, current, qtype)
            synthesized = None
            dname = next((r for r in dnames if within(current, r.name) and
                          not same(current, r.name) and within(r.name, zone.name)),
                         None) if dnames else None
            if rrset is None and dname is not None:
                rrset = dname
                try:
                    target = current.relativize(rrset.name).concatenate(rrset[0].target)
                except dns.name.NameTooLong:
                    raise ResolutionFailed(EDE.OTHER, f"DNAME at {rrset.name} makes {current} "
                                           "too long", proof) from None
                synthesized = dns.rrset.from_text(current, rrset.ttl, "IN", "CNAME",
                                                  target.to_text())
            elif rrset is None and qtype != CNAME:
                rrset = find(reply.answer, current, CNAME)
            if rrset is None:
                break
            links.append((rrset, synthesized))
            last = rrset if synthesized is None else synthesized
            if last.rdtype == qtype or last.rdtype != CNAME:
                break
            current = last[0].target
            if not within(current, zone.name):
                break
        return links

    def negative(self, zone: Zone, name: dns.name.Name, qtype: int,
                 reply: dns.message.Message, kind: str, proof: Proof, secure: bool,
                 budget: Budget) -> Answer:
        """A name error or no-data reply, proven from NSEC or NSEC3 in a signed zone
        (RFC 4035 §5.4), cached for the SOA's negative TTL (RFC 2308 §5)."""
        rcode = dns.rcode.NXDOMAIN if kind == "nxdomain" else dns.rcode.NOERROR
        soa = next((r for r in rrsets_of(reply.authority, SOA) if within(name, r.name)
                    and within(r.name, zone.name)), None)  # in bailiwick (RFC 2181 §5.4.1)
        authority = [soa] if soa is not None else []
        ttl = min(soa.ttl, soa[0].minimum) if soa is not None else 0
        if not secure:
            return Answer(rcode, Verdict.INSECURE, [], authority, None, "", proof, ttl)
        nsecs = self.denial_rrsets(reply, zone.name)
        checked = ([soa] if soa is not None else []) + nsecs
        evidence = self.check_signatures(checked, reply, zone, budget)
        proof.signatures += [e[:7] for e in evidence]
        ttl = min([ttl] + [e[7] for e in evidence]) if soa is not None else 0
        if not nsecs:
            raise ResolutionFailed(EDE.NSEC_MISSING, f"zone {zone.name}: "
                                   f"{'name error' if kind == 'nxdomain' else 'no data'} for "
                                   f"{name} without NSEC or NSEC3", proof)
        if kind == "nxdomain":
            result = denial.prove_nxdomain(name, nsecs, config=self.config, budget=budget)
        else:
            result = denial.prove_nodata(name, qtype, nsecs, config=self.config, budget=budget)
        if result.verdict is Verdict.BOGUS:
            raise ResolutionFailed(result.ede or EDE.DNSSEC_BOGUS,
                                   f"zone {zone.name}: {result.reason}", proof, result.budget)
        proof.denial = result.kind
        for rrset in checked:
            authority += [rrset] if rrset is not soa else []
            sigs = sigs_of(reply.authority, rrset.name, rrset.rdtype)
            if sigs is not None:
                authority.append(sigs)
        return Answer(rcode, result.verdict, [], authority, result.ede, result.reason, proof,
                      ttl)

    # --- shared steps ---------------------------------------------------------------------

    def denial_rrsets(self, reply: dns.message.Message,
                      zone: dns.name.Name) -> list[dns.rrset.RRset]:
        """The NSEC and NSEC3 RRsets of ``zone`` in a reply: another zone's (outside it, or
        signed only by another signer) are left out, never judged with this zone's keys
        (RFC 2181 §5.4.1). More NSEC3 RRsets than one proof may use is a proof flood
        (CVE-2023-50868), refused before any signature is checked."""
        rrsets = [r for r in reply.authority if r.rdtype in (NSEC, NSEC3)
                  and within(r.name, zone) and _signed_by(reply, r, zone)]
        count, limit = sum(r.rdtype == NSEC3 for r in rrsets), \
            self.config.limits.max_nsec3_per_proof
        if count > limit:
            raise ResolutionFailed(EDE.DNSSEC_BOGUS, f"validation budget exhausted: {count} "
                                   f"NSEC3 records in one answer, more than {limit} per proof",
                                   budget=BudgetName.NSEC3_RECORDS)
        return rrsets

    def check_signatures(self, rrsets: list[dns.rrset.RRset], reply: dns.message.Message,
                         zone: Zone, budget: Budget) -> list[tuple]:
        """Validate each RRset with the zone's keys; raise ResolutionFailed on the first that
        does not validate. Returns the signatures' evidence."""
        found = []
        for rrset in rrsets:
            section = reply.answer if rrset in reply.answer else reply.authority
            result = validate_rrset(rrset, sigs_of(section, rrset.name, rrset.rdtype),
                                    zone.keys, now=self.now(), budget=budget,
                                    config=self.config)
            if not result.secure:
                raise ResolutionFailed(result.ede or EDE.DNSSEC_BOGUS,
                                       f"zone {zone.name}: {result.reason}",
                                       budget=result.budget)
            found.append(_evidence(rrset, result.rrsig) + (result.ttl,))
        return found
