"""The validator stage alone (resolver/dnssec/validator.py, issue #15): replies built by the
test tree's responder (tests/testtree/authority.py, what its servers send), some rewritten as
an attacker could, are classified and judged with the keys of the zone asked. No iterator,
no I/O.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from resolver.dnssec import Budget, ValidatorConfig, Verdict
from resolver.dnssec.result import ResolutionFailed
from resolver.dnssec.validator import Validator
from resolver.dnssec.zone import Zone
from resolver.ede import EDE
from resolver.resolve.transport import make_query
from tests.testtree import NOW, authority, zonedata

N = dns.name.from_text
A, NS, DS, CNAME, DNAME = (dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.DS,
                           dns.rdatatype.CNAME, dns.rdatatype.DNAME)
VALIDATOR = Validator(ValidatorConfig(), lambda: NOW, max_cname_chain=12)
WWW = N("www.rsasha256.example.")


def _zone(name: str, *, secure: bool = True) -> Zone:
    """The zone with its keys established, as the chain of trust hands it over."""
    return Zone(N(name), [], security=Verdict.SECURE if secure else Verdict.INSECURE,
                keys=zonedata.load(name).dnskeys() if secure else None)


def _reply(zones: list[str], qname: str, rdtype: int = A, *,
           tcp: bool = False) -> dns.message.Message:
    """What a server for ``zones`` answers (the wire round trip included; over TCP, beyond
    the query's EDNS payload size)."""
    response, _ = authority.Responder([zonedata.load(z) for z in zones]).respond(
        make_query(N(qname), rdtype).message())
    return dns.message.from_wire(response.to_wire(max_size=65535 if tcp else 0))


def _judge(zone: str, qname: str, rdtype: int = A, reply=None, *, secure: bool = True):
    asked = _zone(zone, secure=secure)
    reply = reply if reply is not None else _reply([zone], qname, rdtype)
    kind = VALIDATOR.classify(asked, N(qname), rdtype, reply)
    return kind, VALIDATOR.answer(asked, N(qname), rdtype, reply, kind, Budget())


@pytest.mark.parametrize("zones, qname, rdtype, kind", [
    (["rsasha256.example."], "www.rsasha256.example.", A, "answer"),
    (["rsasha256.example."], "cname.rsasha256.example.", A, "answer"),
    (["rsasha256.example."], "nope.rsasha256.example.", A, "nxdomain"),
    (["rsasha256.example."], "www.rsasha256.example.", dns.rdatatype.TXT, "nodata"),
    (["rsasha256.example."], "b.c.rsasha256.example.", A, "nodata"),  # empty non-terminal
    (["example."], "www.rsasha256.example.", A, "referral"),
    (["example."], "rsasha256.example.", DS, "answer"),  # DS on the parent side of the cut
    (["ecdsap256.example."], "x.dname.ecdsap256.example.", A, "answer"),
    # a chain into another zone the server also holds: the rcode is the target's
    (["ecdsap256.example.", "ed25519.example."], "nope.dname.ecdsap256.example.", A, "answer"),
])
def test_classify(zones, qname, rdtype, kind):
    assert VALIDATOR.classify(_zone(zones[0]), N(qname), rdtype,
                              _reply(zones, qname, rdtype)) == kind


def test_a_reply_from_another_zone_is_lame():
    reply = _reply(["rsasha256.example."], "www.rsasha256.example.")
    reply.flags &= ~dns.flags.AA
    reply.answer = []
    reply.authority = [dns.rrset.from_text("example.", 300, "IN", "NS", "ns.example.")]
    assert VALIDATOR.classify(_zone("rsasha256.example."), WWW, A, reply) == "lame"


def test_secure_answer_with_its_proof():
    kind, answer = _judge("rsasha256.example.", "www.rsasha256.example.")
    assert kind == "answer" and answer.verdict is Verdict.SECURE
    assert [(r.name, r.rdtype) for r in answer.rrsets if r.rdtype != dns.rdatatype.RRSIG] == \
        [(WWW, A)]
    (owner, rdtype, signer, *_), = answer.proof.signatures
    assert (owner, rdtype, signer) == (str(WWW), "A", "rsasha256.example.")
    assert 0 < answer.ttl <= 3600


def test_cname_chain_in_the_zone_is_followed():
    _, answer = _judge("rsasha256.example.", "cname.rsasha256.example.")
    assert {(r.name, r.rdtype) for r in answer.rrsets if r.rdtype != dns.rdatatype.RRSIG} == \
        {(N("cname.rsasha256.example."), CNAME), (WWW, A)}
    assert answer.verdict is Verdict.SECURE and len(answer.proof.signatures) == 2


def test_a_chain_over_the_cname_budget_is_refused_before_any_signature_check():
    """15 CNAMEs in one zone (chain1, in one reply): over the budget of 12, refused with no
    signature checked; 12 (chain4) is within it, every link validated."""
    zone, budget = _zone("ecdsap256.example."), Budget()
    reply = _reply(["ecdsap256.example."], "chain1.ecdsap256.example.", tcp=True)
    with pytest.raises(ResolutionFailed) as failure:
        VALIDATOR.answer(zone, N("chain1.ecdsap256.example."), A, reply, "answer", budget)
    assert failure.value.ede == EDE.OTHER and "longer than 12" in str(failure.value)
    assert budget.sig_checks == 0
    chain4 = _reply(["ecdsap256.example."], "chain4.ecdsap256.example.", tcp=True)
    _, answer = _judge("ecdsap256.example.", "chain4.ecdsap256.example.", reply=chain4)
    assert sum(r.rdtype == CNAME for r in answer.rrsets) == 12
    assert answer.verdict is Verdict.SECURE and len(answer.proof.signatures) == 13


def test_chain_leaving_the_zone_keeps_only_its_own_links():
    """The server follows the DNAME into ed25519.example. and adds that zone's NXDOMAIN proof:
    only the DNAME and the CNAME synthesised from it are judged here (with ecdsap256's keys);
    the other zone's records are left to be asked of their own zone."""
    reply = _reply(["ecdsap256.example.", "ed25519.example."], "nope.dname.ecdsap256.example.")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    _, answer = _judge("ecdsap256.example.", "nope.dname.ecdsap256.example.", reply=reply)
    assert answer.verdict is Verdict.SECURE and answer.rcode == dns.rcode.NOERROR
    owners = {(r.name.to_text(), r.rdtype) for r in answer.rrsets}
    assert owners == {("dname.ecdsap256.example.", DNAME),
                      ("dname.ecdsap256.example.", dns.rdatatype.RRSIG),
                      ("nope.dname.ecdsap256.example.", CNAME)}
    assert not answer.authority


def test_wildcard_expansion_is_proven():
    kind, answer = _judge("rsasha256.example.", "x.wild.rsasha256.example.")
    assert kind == "answer" and answer.verdict is Verdict.SECURE
    assert answer.proof.denial == "nsec" and answer.authority


def test_wildcard_expansion_without_its_proof_is_bogus():
    reply = _reply(["rsasha256.example."], "x.wild.rsasha256.example.")
    reply.authority = []
    with pytest.raises(ResolutionFailed) as failure:
        _judge("rsasha256.example.", "x.wild.rsasha256.example.", reply=reply)
    assert "wildcard" in failure.value.reason


@pytest.mark.parametrize("zone, qname, rdtype, rcode, denial", [
    ("rsasha256.example.", "nope.rsasha256.example.", A, dns.rcode.NXDOMAIN, "nsec"),
    ("rsasha256.example.", "www.rsasha256.example.", dns.rdatatype.TXT, dns.rcode.NOERROR,
     "nsec"),
    ("rsasha512.test.", "nope.rsasha512.test.", A, dns.rcode.NXDOMAIN, "nsec3"),
])
def test_denials_are_proven(zone, qname, rdtype, rcode, denial):
    _, answer = _judge(zone, qname, rdtype)
    assert answer.rcode == rcode and answer.verdict is Verdict.SECURE
    assert answer.proof.denial == denial
    assert [r for r in answer.authority if r.rdtype == dns.rdatatype.SOA]


def test_forged_address_is_bogus():
    reply = _reply(["rsasha256.example."], "www.rsasha256.example.")
    forged = dns.rrset.from_text(WWW, 3600, "IN", "A", "198.51.100.66")
    reply.answer = [forged if r.rdtype == A else r for r in reply.answer]
    with pytest.raises(ResolutionFailed) as failure:
        _judge("rsasha256.example.", "www.rsasha256.example.", reply=reply)
    assert failure.value.ede == EDE.DNSSEC_BOGUS and "rsasha256.example." in failure.value.reason


def test_name_error_replayed_from_another_name_is_bogus():
    replayed = _reply(["rsasha256.example."], "nope.rsasha256.example.")
    replayed.question = _reply(["rsasha256.example."], "www.rsasha256.example.").question
    with pytest.raises(ResolutionFailed):
        _judge("rsasha256.example.", "www.rsasha256.example.", reply=replayed)


def test_unsigned_zone_answers_insecure_with_its_own_soa_only():
    reply = _reply(["insecure.example."], "nope.insecure.example.")
    reply.authority.append(zonedata.load(".").rrset(".", "SOA"))
    _, answer = _judge("insecure.example.", "nope.insecure.example.", reply=reply,
                       secure=False)
    assert answer.verdict is Verdict.INSECURE and answer.rcode == dns.rcode.NXDOMAIN
    assert [r.name for r in answer.authority] == [N("insecure.example.")]


# --- the chain of trust's judgements ---------------------------------------------------------

def test_referral_with_a_validated_ds():
    reply = _reply(["example."], "www.rsasha256.example.")
    judged = VALIDATOR.delegation(N("rsasha256.example."), _zone("example."), reply, Budget())
    assert judged.verdict is Verdict.SECURE and judged.ds is not None


def test_referral_to_an_unsigned_zone_is_proven_insecure():
    reply = _reply(["example."], "www.insecure.example.")
    judged = VALIDATOR.delegation(N("insecure.example."), _zone("example."), reply, Budget())
    assert judged.verdict is Verdict.INSECURE and judged.note.startswith("no-ds")


def test_no_ds_for_a_name_that_is_no_delegation_is_bogus():
    """The parent's honest NODATA for 'www DS' lists A AAAA RRSIG NSEC: no NS bit, so no zone
    cut there (finding 1): never an insecure child."""
    reply = _reply(["rsasha256.example."], "www.rsasha256.example.", DS)
    with pytest.raises(ResolutionFailed) as failure:
        VALIDATOR.delegation(WWW, _zone("rsasha256.example."), reply, Budget())
    assert failure.value.ede == EDE.DNSSEC_BOGUS
    assert failure.value.reason.startswith("zone rsasha256.example.: no delegation")


def test_dnskey_set_authenticated_from_the_ds():
    zone = zonedata.load("rsasha256.example.")
    reply = _reply(["rsasha256.example."], "rsasha256.example.", dns.rdatatype.DNSKEY)
    keys, result = VALIDATOR.dnskeys(zone.name, zone.ds(), reply, "answer", Budget())
    assert keys is not None and result.secure
    wrong = zonedata.load("ecdsap256.example.").ds()
    _, result = VALIDATOR.dnskeys(zone.name, wrong, reply, "answer", Budget())
    assert result.verdict is Verdict.BOGUS


def test_another_zones_denial_records_mixed_in_are_left_out():
    """A child zone's NSEC (its own signer) added to the parent's proof is not judged with
    the parent's keys: the parent's own records still prove the name error."""
    reply = _reply(["rsasha256.example."], "nope.rsasha256.example.")
    child = _reply(["ecdsap256.example."], "nope.ecdsap256.example.")
    reply.authority += [r for r in child.authority
                        if dns.rdatatype.NSEC in (r.rdtype, r.covers)]
    _, answer = _judge("rsasha256.example.", "nope.rsasha256.example.", reply=reply)
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.verdict is Verdict.SECURE
    assert all(r.name.is_subdomain(N("rsasha256.example.")) for r in answer.authority)
