"""The rewrites of an on-path attacker without private keys, one ``Attack`` each.

Every rewrite touches only the replies it names and leaves the rest of the tree honest. What an
attacker may use: records it makes up (unsigned, or with made-up RRSIGs), and signed records of
the tree replayed from elsewhere (``zonedata``: anyone who watches the zone's traffic has them).
Target zone: ``ecdsap256.example.`` (NSEC, served at 127.0.0.22) unless said otherwise; the
NSEC3 twins of some cases attack ``ed25519.example.``.
"""

from __future__ import annotations

import base64
import dataclasses

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.testtree import EXPIRATION, INCEPTION, zonedata

from .relay import ATTACKER, FORGED_A

T = dns.rdatatype
S = "ecdsap256.example."
E = "ed25519.example."  # NSEC3, served at 127.0.0.24


def _n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _pairs(pairs) -> list:
    """Flatten [(rrset, rrsigs), ...] into the RRsets of a section."""
    return [r for pair in pairs for r in pair if r is not None]


def _soa(zone: str) -> list:
    """The zone's SOA and RRSIG, as a negative answer carries them."""
    return _pairs([zonedata.load(zone).pair(zone, T.SOA)])


def _forged(owner: str, rdtype: str = "A", data: str = FORGED_A) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner, 300, "IN", rdtype, data)


def _fake_rrsig(rrset: dns.rrset.RRset, signer: str):
    """An RRSIG no key made: right shape, valid window, made-up signature bytes."""
    sig = base64.b64encode(bytes(range(64))).decode()
    labels = len(rrset.name) - 1
    text = (f"{T.to_text(rrset.rdtype)} 13 {labels} {rrset.ttl} {EXPIRATION} {INCEPTION} "
            f"4242 {signer} {sig}")
    return dns.rrset.from_text(rrset.name, rrset.ttl, "IN", "RRSIG", text)


def _at(query: dns.message.Message, name: str, rdtype: str | None = None,
        below: bool = False) -> bool:
    """Whether the query asks for ``name`` (or a name below it), of ``rdtype`` if given."""
    q = query.question[0]
    at = q.name.is_subdomain(_n(name)) if below else q.name == _n(name)
    return at and (rdtype is None or q.rdtype == T.from_text(rdtype))


def _server(zone: str) -> str:
    return zonedata.entry(zone)["server"]


def _negative(reply: dns.message.Message, rcode: int, authority: list) -> dns.message.Message:
    reply.set_rcode(rcode)
    reply.flags |= dns.flags.AA
    reply.answer, reply.authority, reply.additional = [], authority, []
    return reply


def _referral(reply: dns.message.Message, cut: str) -> dns.message.Message:
    """A forged referral to ``cut``, its name server at the attacker's address."""
    ns = f"ns.{cut}"
    reply.set_rcode(dns.rcode.NOERROR)
    reply.flags &= ~dns.flags.AA
    reply.answer = []
    reply.authority = [dns.rrset.from_text(cut, 3600, "IN", "NS", ns)]
    reply.additional = [dns.rrset.from_text(ns, 3600, "IN", "A", ATTACKER)]
    return reply


def _answer(reply: dns.message.Message, *rrsets) -> dns.message.Message:
    reply.set_rcode(dns.rcode.NOERROR)
    reply.flags |= dns.flags.AA
    reply.answer, reply.authority, reply.additional = list(rrsets), [], []
    return reply


def _drop_types(section: list, *rdtypes: int) -> list:
    return [r for r in section if r.rdtype not in rdtypes and r.covers not in rdtypes]


@dataclasses.dataclass(frozen=True)
class Attack:
    """One tamper case: the rewrite, the query it targets, what the resolver must say.

    ``expect``: ``servfail`` (SERVFAIL with an EDE naming one of ``zones``) or ``honest`` (the
    forged records are dropped as out of zone and the true answer is given). ``honest_rcode``:
    the true answer, asked again once the relay is honest (and ``AD``); ``remembered``: the
    resolver kinds allowed to answer SERVFAIL then, because the attack broke a zone's chain of
    trust, which they remember for a while (RFC 9520 §3.2: the sidecar 60 s, Unbound its key
    cache), or (Unbound) because they keep the forged delegation.
    ``bystanders``: names the rewrite does not touch, Secure while it runs. ``known``:
    resolver kind -> reason, where the resolver fails this case today (xfail, strict)."""
    name: str
    qname: str
    qtype: str
    rewrite: object
    zones: tuple[str, ...] = (S,)
    expect: str = "servfail"
    honest_rcode: str = "NOERROR"
    remembered: tuple[str, ...] = ()
    bystanders: tuple[tuple[str, str], ...] = (("mail.ecdsap256.example.", "A"),
                                               ("www.ed25519.example.", "A"))
    known: dict = dataclasses.field(default_factory=dict)
    note: str = ""


# ---------------------------------------------------------------------------- forged cuts


def _forged_cut(zone: str, cut: str):
    """A forged referral to ``cut`` (glue at the attacker) from the server of ``zone``, for
    every question at or below ``cut`` but its DS, which gets the honest signed answer."""
    def rewrite(server, query, reply):
        if server == _server(zone) and _at(query, cut, below=True) and not _at(query, cut, "DS"):
            return _referral(reply, cut)
        return reply
    return rewrite


# to an existing name: the honest DS NODATA (NSEC or NSEC3 at www without the NS bit) proves
# there is no cut at all
referral_existing = _forged_cut(S, "www." + S)
referral_existing_nsec3 = _forged_cut(E, "www." + E)
# below an existing name: x.www.S does not exist, its DS query gets the honest NXDOMAIN
referral_below = _forged_cut(S, "x.www." + S)


def _strip_ds_referrals(reply, cut: str, proof: list):
    """A referral to ``cut`` without its DS, with ``proof`` (replayed records) in place."""
    if any(r.rdtype == T.NS and r.name == _n(cut) for r in reply.authority):
        reply.authority = [r for r in _drop_types(reply.authority, T.DS)] + proof
    return reply


def _child_forged_www(query, reply, child: str):
    """The child's ``www`` A made up and unsigned, for when its DS is gone."""
    if _at(query, "www." + child, "A"):
        return _answer(reply, _forged("www." + child))
    return reply


def cut_ds_removed(server, query, reply):
    """At the real cut rsasha256.example.: the DS dropped from the referral, the DS query
    answered NODATA with the SOA and no proof, the child's data forged without signatures."""
    child = "rsasha256.example."
    if server == _server("example."):
        if _at(query, child, "DS"):
            return _negative(reply, dns.rcode.NOERROR, _soa("example."))
        return _strip_ds_referrals(reply, child, [])
    if server == _server(child):
        return _child_forged_www(query, reply, child)
    return reply


def ds_replayed_nsec(server, query, reply):
    """The DS of rsasha256.example. removed, and in its place (referral and DS query) the
    no-DS proof of another delegation of ``example.``: the NSEC of insecure.example."""
    child = "rsasha256.example."
    proof = _pairs([zonedata.load("example.").pair("insecure.example.", T.NSEC)])
    if server == _server("example."):
        if _at(query, child, "DS"):
            return _negative(reply, dns.rcode.NOERROR, _soa("example.") + proof)
        return _strip_ds_referrals(reply, child, proof)
    if server == _server(child):
        return _child_forged_www(query, reply, child)
    return reply


def ds_replayed_nsec3(server, query, reply):
    """The same below the NSEC3 opt-out parent ``test.``: the DS of rsasha512.test. replaced
    by the no-DS proof of insecure.test. (closest encloser test. and the opt-out NSEC3 that
    covers insecure.test., not rsasha512.test.)."""
    child = "rsasha512.test."
    proof = _pairs(zonedata.load("test.").select_no_ds("insecure.test."))
    if server == _server("test."):
        if _at(query, child, "DS"):
            return _negative(reply, dns.rcode.NOERROR, _soa("test.") + proof)
        return _strip_ds_referrals(reply, child, proof)
    if server == _server(child):
        return _child_forged_www(query, reply, child)
    return reply


# ---------------------------------------------------------------------------- forged data


def dnskey_unsigned(server, query, reply):
    """S's DNSKEY RRset without its RRSIGs, and www.S forged without signatures."""
    if server == _server(S) and _at(query, S, "DNSKEY"):
        reply.answer = _drop_types(reply.answer, T.RRSIG)
    elif server == _server(S) and _at(query, "www." + S, "A"):
        return _answer(reply, _forged("www." + S))
    return reply


def ds_algorithm_rewritten(server, query, reply):
    """The DS of rsasha256.example. kept with its RRSIG but rewritten to algorithm 200 (which
    would make the zone Insecure, RFC 4035 §5.2, if the DS were believed); the child's data
    forged without signatures."""
    child = "rsasha256.example."
    if server == _server("example."):
        for section in (reply.answer, reply.authority):
            for i, rrset in enumerate(section):
                if rrset.rdtype == T.DS and rrset.name == _n(child):
                    section[i] = dns.rrset.from_rdata(rrset.name, rrset.ttl, *(
                        rd.replace(algorithm=200) for rd in rrset))
        return reply
    if server == _server(child):
        return _child_forged_www(query, reply, child)
    return reply


def forged_signer(server, query, reply):
    """``www.S A`` forged, with an RRSIG whose signer is the owner name itself (a zone cut
    that does not exist)."""
    if server == _server(S) and _at(query, "www." + S, "A"):
        forged = _forged("www." + S)
        return _answer(reply, forged, _fake_rrsig(forged, "www." + S))
    return reply


def stripped_rrsig(server, query, reply):
    """``www.S A`` forged, and no RRSIG at all."""
    if server == _server(S) and _at(query, "www." + S, "A"):
        return _answer(reply, _forged("www." + S))
    return reply


def _denial(rcode: int, authority, zone: str = S):
    """A rewrite of the answer for www.<zone> A into a negative answer with ``authority()``."""
    def rewrite(server, query, reply):
        if server == _server(zone) and _at(query, "www." + zone, "A"):
            return _negative(reply, rcode, authority())
        return reply
    return rewrite


nxdomain_no_proof = _denial(dns.rcode.NXDOMAIN, lambda: _soa(S))
nxdomain_other_name = _denial(dns.rcode.NXDOMAIN, lambda: _soa(S) + _pairs(
    zonedata.load(S).select_nxdomain("nope." + S)))
nxdomain_other_name_nsec3 = _denial(dns.rcode.NXDOMAIN, lambda: _soa(E) + _pairs(
    zonedata.load(E).select_nxdomain("nope." + E)), E)
nxdomain_other_zone = _denial(dns.rcode.NXDOMAIN, lambda: _soa("ed448.test.") + _pairs(
    zonedata.load("ed448.test.").select_nxdomain("nope.ed448.test.")))
nodata_no_proof = _denial(dns.rcode.NOERROR, lambda: _soa(S))
nodata_no_proof_nsec3 = _denial(dns.rcode.NOERROR, lambda: _soa(E), E)
nodata_other_name = _denial(dns.rcode.NOERROR, lambda: _soa(S) + _pairs(
    [zonedata.load(S).pair("cname." + S, T.NSEC)]))


def nodata_parent_nsec(server, query, reply):
    """``rsasha256.example. TXT`` (the apex has a TXT) answered NODATA with the parent's NSEC
    at the same owner (NS DS RRSIG NSEC, signed by ``example.``): proof from the other side
    of the cut, which says nothing of the child's apex (RFC 6840 §4.1)."""
    child = "rsasha256.example."
    if server == _server(child) and _at(query, child, "TXT"):
        proof = _pairs([zonedata.load("example.").pair(child, T.NSEC)])
        return _negative(reply, dns.rcode.NOERROR, _soa(child) + proof)
    return reply


def cname_unsigned(server, query, reply):
    """``www.S A`` answered with an unsigned CNAME into the unsigned zone insecure.example."""
    if server == _server(S) and _at(query, "www." + S, "A"):
        return _answer(reply, _forged("www." + S, "CNAME", "www.insecure.example."))
    return reply


def dname_unsigned(server, query, reply):
    """``www.S A`` answered with an unsigned DNAME at the apex of S into insecure.example.,
    and the CNAME synthesised from it."""
    if server == _server(S) and _at(query, "www." + S, "A"):
        return _answer(reply, _forged(S, "DNAME", "insecure.example."),
                       _forged("www." + S, "CNAME", "www.insecure.example."))
    return reply


def dname_synthesis_forged(server, query, reply):
    """The real signed ``dname.S DNAME ed25519.example.``, but the synthesised (never signed)
    CNAME pointed at the unsigned www.insecure.example. instead of www.ed25519.example."""
    if server == _server(S) and _at(query, "www.dname." + S, "A"):
        reply.answer = [r for r in reply.answer if r.rdtype != T.CNAME] + [
            _forged("www.dname." + S, "CNAME", "www.insecure.example.")]
    return reply


def _wildcard_strip(zone: str):
    def rewrite(server, query, reply):
        """A real wildcard expansion for ``x.wild.<zone>`` without the proof that the name
        itself does not exist (RFC 4035 §5.3.4, RFC 5155 §8.8)."""
        if server == _server(zone) and _at(query, "x.wild." + zone, "A"):
            reply.authority = _drop_types(reply.authority, T.NSEC, T.NSEC3)
        return reply
    return rewrite


def wildcard_other_proof(server, query, reply):
    """A real wildcard expansion for ``x.wild.S`` whose proof is the NSEC that covers another
    name (nope.S), not x.wild.S."""
    if server == _server(S) and _at(query, "x.wild." + S, "A"):
        reply.authority = _drop_types(reply.authority, T.NSEC) + _pairs(
            [zonedata.load(S).nsec_covering("nope." + S)])
    return reply


def wildcard_labels(server, query, reply):
    """``www.S A``: the real RRSIG with its labels field lowered to 2 (it claims an expansion
    of ``*.S``) and the address forged, plus the NSEC that covers a name next to www.S."""
    if server == _server(S) and _at(query, "www." + S, "A"):
        forged = _forged("www." + S)
        sig = zonedata.load(S).rrsigs("www." + S, T.A)
        sig = dns.rrset.from_rdata(sig.name, sig.ttl, *(rd.replace(labels=2) for rd in sig))
        reply.answer = [forged, sig]
        reply.authority = _pairs([zonedata.load(S).nsec_covering("wwv." + S)])
    return reply


def _nsec_span_forged(signed: bool):
    """The true NXDOMAIN for ``nx.S``, and beside its proof an NSEC made up to span the whole
    zone, unsigned or with a made-up RRSIG: kept for aggressive use (RFC 8198), it would deny
    every name of S with no query."""
    def rewrite(server, query, reply):
        if server == _server(S) and _at(query, "nx." + S, "A"):
            forged = dns.rrset.from_text("a." + S, 3600, "IN", "NSEC", f"zzz.{S} A RRSIG NSEC")
            reply.authority += [forged] + ([_fake_rrsig(forged, S)] if signed else [])
        return reply
    return rewrite


# ---------------------------------------------------------------------------- mixed zones


def mixed_into_answer(server, query, reply):
    """S's answer for ``www.S A`` carries, besides the true RRset, forged unsigned records of
    another zone: an A for www.ed25519.example., its NS at the attacker with glue."""
    if server == _server(S) and _at(query, "www." + S, "A"):
        reply.answer.append(_forged("www.ed25519.example."))
        reply.authority.append(dns.rrset.from_text("ed25519.example.", 3600, "IN", "NS",
                                                   "ns.attacker.example."))
        reply.additional.append(_forged("ns.attacker.example.", "A", ATTACKER))
        reply.additional.append(_forged("ns.ed25519.example.", "A", ATTACKER))
    return reply


def mixed_into_referral(server, query, reply):
    """Referrals from ``example.`` carry forged glue for another zone's name server (the
    server of ``test.``) and a forged A for www.ed448.test."""
    if server == _server("example.") and any(r.rdtype == T.NS for r in reply.authority):
        reply.additional += [_forged("ns.test.", "A", ATTACKER), _forged("www.ed448.test.")]
    return reply


BOTH = ("dnssec-sidecar", "unbound")
# Unbound's iterator caches the NS of the forged referral as a delegation point (unvalidated,
# for its TTL). The validator rejects what the attacker's server says, so no forged data gets
# out, but the name stays SERVFAIL after the relay is honest. The sidecar must do better:
# issue #15 learns cuts only from validated data or proven insecure delegations.
UNBOUND_KEEPS_FORGED_CUT = ("unbound",)

ATTACKS = [
    Attack("referral-to-existing-name", "www." + S, "A", referral_existing,
           remembered=UNBOUND_KEEPS_FORGED_CUT),
    Attack("referral-to-existing-name-deeper", "deep.www." + S, "A", referral_existing,
           honest_rcode="NXDOMAIN", remembered=UNBOUND_KEEPS_FORGED_CUT),
    Attack("referral-to-existing-name-nsec3", "www." + E, "A", referral_existing_nsec3,
           zones=(E,), remembered=UNBOUND_KEEPS_FORGED_CUT,
           bystanders=(("mail." + E, "A"), ("www." + S, "A"))),
    Attack("referral-below-existing-name", "x.www." + S, "A", referral_below,
           honest_rcode="NXDOMAIN", remembered=BOTH),
    Attack("cut-with-ds-removed", "www.rsasha256.example.", "A", cut_ds_removed,
           zones=("example.", "rsasha256.example."), remembered=BOTH),
    Attack("ds-stripped-nsec-replayed", "www.rsasha256.example.", "A", ds_replayed_nsec,
           zones=("example.", "rsasha256.example."), remembered=BOTH),
    Attack("ds-stripped-nsec3-replayed", "www.rsasha512.test.", "A", ds_replayed_nsec3,
           zones=("test.", "rsasha512.test."), remembered=BOTH,
           bystanders=(("www.ecdsap384.test.", "A"), ("www.ed448.test.", "A"))),
    Attack("ds-algorithm-rewritten", "www.rsasha256.example.", "A", ds_algorithm_rewritten,
           zones=("example.", "rsasha256.example."), remembered=BOTH),
    Attack("dnskey-rrsig-stripped", "www." + S, "A", dnskey_unsigned, remembered=BOTH,
           bystanders=(("www.ed25519.example.", "A"), ("www.rsasha256.example.", "A"))),
    Attack("forged-signer-owner", "www." + S, "A", forged_signer),
    Attack("rrsig-stripped", "www." + S, "A", stripped_rrsig),
    Attack("nxdomain-without-proof", "www." + S, "A", nxdomain_no_proof),
    Attack("nxdomain-proof-of-other-name", "www." + S, "A", nxdomain_other_name),
    Attack("nxdomain-proof-of-other-name-nsec3", "www." + E, "A", nxdomain_other_name_nsec3,
           zones=(E,), bystanders=(("mail." + E, "A"), ("www." + S, "A"))),
    Attack("nxdomain-proof-of-other-zone", "www." + S, "A", nxdomain_other_zone),
    Attack("nsec-span-forged-unsigned", "nx." + S, "A", _nsec_span_forged(False),
           honest_rcode="NXDOMAIN", bystanders=(("www." + S, "A"), ("mail." + S, "A")),
           note="never kept: www and mail, inside the forged span, stay Secure"),
    Attack("nsec-span-forged-signature", "nx." + S, "A", _nsec_span_forged(True),
           honest_rcode="NXDOMAIN", bystanders=(("www." + S, "A"), ("mail." + S, "A"))),
    Attack("nodata-without-proof", "www." + S, "A", nodata_no_proof),
    Attack("nodata-without-proof-nsec3", "www." + E, "A", nodata_no_proof_nsec3, zones=(E,),
           bystanders=(("mail." + E, "A"), ("www." + S, "A"))),
    Attack("nodata-proof-of-other-name", "www." + S, "A", nodata_other_name),
    Attack("nodata-parent-side-nsec", "rsasha256.example.", "TXT", nodata_parent_nsec,
           zones=("rsasha256.example.",)),
    Attack("cname-into-unsigned-zone", "www." + S, "A", cname_unsigned),
    Attack("dname-into-unsigned-zone", "www." + S, "A", dname_unsigned),
    Attack("dname-synthesis-forged", "www.dname." + S, "A", dname_synthesis_forged,
           expect="honest",
           note="the synthesised CNAME is unsigned: a validator derives it from the signed "
                "DNAME (RFC 6672 §3.3, RFC 4035 §5.3.4) and follows that, not the forgery"),
    Attack("wildcard-proof-stripped-nsec", "x.wild." + S, "A", _wildcard_strip(S)),
    Attack("wildcard-proof-stripped-nsec3", "x.wild.ed25519.example.", "A",
           _wildcard_strip("ed25519.example."), zones=("ed25519.example.",),
           bystanders=(("www.ed25519.example.", "A"), ("mail." + S, "A"))),
    Attack("wildcard-proof-of-other-name", "x.wild." + S, "A", wildcard_other_proof),
    Attack("wildcard-labels-forged", "www." + S, "A", wildcard_labels),
    Attack("other-zone-in-answer", "www." + S, "A", mixed_into_answer, expect="honest",
           bystanders=(("www.ed25519.example.", "A"), ("mail.ed25519.example.", "A")),
           note="records outside the answering zone are dropped (RFC 2181 §5.4.1)"),
    Attack("other-zone-in-referral", "www.rsasha256.example.", "A", mixed_into_referral,
           expect="honest", bystanders=(("www.ed448.test.", "A"), ("www.ecdsap384.test.", "A")),
           note="glue and data outside the referring zone are dropped (RFC 2181 §5.4.1)"),
]
