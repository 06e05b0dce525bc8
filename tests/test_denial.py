"""Denial proofs on hand-built NSEC and NSEC3 chains, for the cases real zones rarely show:
ancestor delegations, empty non-terminals, opt-out, the iteration cap and record floods."""

from __future__ import annotations

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from resolver.dnssec import EDE, Budget, BudgetName, Limits, ValidatorConfig, Verdict, denial

ZONE = dns.name.from_text("example.")
# name -> types present. b.example. is an empty non-terminal (x.b.example. exists);
# d.example. is a delegation; n.example. owns a DNAME.
NAMES = {
    "example.": "SOA NS DNSKEY",
    "a.example.": "A TXT",
    "x.b.example.": "A",
    "d.example.": "NS",
    "s.example.": "NS DS",
    "n.example.": "DNAME",
    "*.w.example.": "A",
    "c.example.": "CNAME",
}


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def nsec_chain(names: dict[str, str]) -> list[dns.rrset.RRset]:
    owners = sorted(n(name) for name in names)
    out = []
    for i, owner in enumerate(owners):
        nxt = owners[(i + 1) % len(owners)]
        types = names[owner.to_text()] + " RRSIG NSEC"
        out.append(dns.rrset.from_text(owner, 300, "IN", "NSEC", f"{nxt} {types}"))
    return out


def nsec3_chain(names: dict[str, str], *, iterations: int = 0, salt: str = "",
                optout: bool = False) -> list[dns.rrset.RRset]:
    # Every existing name and every empty non-terminal gets an NSEC3 (RFC 5155 §7.1).
    full = dict(names)
    for name in names:
        parent = n(name).parent()
        while parent != ZONE and parent.is_subdomain(ZONE):
            full.setdefault(parent.to_text(), "")
            parent = parent.parent()
    if optout:  # unsigned delegations are left out of an opt-out chain
        full = {k: v for k, v in full.items() if v != "NS"}
    hashed = sorted((dns.dnssec.nsec3_hash(name, salt or None, iterations, 1), types)
                    for name, types in full.items())
    out = []
    for i, (digest, types) in enumerate(hashed):
        nxt = hashed[(i + 1) % len(hashed)][0]
        flags = 1 if optout else 0
        bitmap = (types + " RRSIG").strip() if types else ""
        out.append(dns.rrset.from_text(f"{digest}.example.", 300, "IN", "NSEC3",
                                       f"1 {flags} {iterations} {salt or '-'} {nxt} {bitmap}"))
    return out


NSEC = nsec_chain(NAMES)
NSEC3 = nsec3_chain(NAMES)


@pytest.mark.parametrize("chain", [NSEC, NSEC3], ids=["nsec", "nsec3"])
class TestBothKinds:
    def test_nxdomain(self, chain):
        result = denial.prove_nxdomain(n("nope.example."), chain)
        assert result.verdict is Verdict.SECURE and result.closest_encloser == ZONE

    def test_nxdomain_deep(self, chain):
        result = denial.prove_nxdomain(n("q.r.a.example."), chain)
        assert result.secure and result.closest_encloser == n("a.example.")

    def test_existing_name_is_not_nxdomain(self, chain):
        assert denial.prove_nxdomain(n("a.example."), chain).verdict is Verdict.BOGUS

    def test_nodata(self, chain):
        assert denial.prove_nodata(n("a.example."), dns.rdatatype.AAAA, chain).secure

    def test_nodata_for_present_type_fails(self, chain):
        result = denial.prove_nodata(n("a.example."), dns.rdatatype.TXT, chain)
        assert result.verdict is Verdict.BOGUS and "TXT" in result.reason

    def test_nodata_cname_bit_fails(self, chain):
        # RFC 6840 §4.3: a CNAME exists, so the answer must have been the CNAME.
        result = denial.prove_nodata(n("c.example."), dns.rdatatype.A, chain)
        assert result.verdict is Verdict.BOGUS and "CNAME" in result.reason

    def test_empty_non_terminal_nodata(self, chain):
        assert denial.prove_nodata(n("b.example."), dns.rdatatype.A, chain).secure

    def test_wildcard_answer(self, chain):
        result = denial.prove_wildcard_answer(n("q.w.example."), n("*.w.example."), chain)
        assert result.secure and result.closest_encloser == n("w.example.")

    def test_wildcard_answer_with_a_closer_name_fails(self, chain):
        # x.b.example. exists: *.example. cannot answer for y.x.b.example.
        result = denial.prove_wildcard_answer(n("y.x.b.example."), n("*.example."), chain)
        assert result.verdict is Verdict.BOGUS

    def test_wildcard_answer_needs_a_wildcard_name(self, chain):
        for name in (dns.name.root, n("w.example.")):
            result = denial.prove_wildcard_answer(n("q.w.example."), name, chain)
            assert result.verdict is Verdict.BOGUS and "not a wildcard" in result.reason

    def test_wildcard_nodata(self, chain):
        result = denial.prove_wildcard_nodata(n("q.w.example."), dns.rdatatype.MX, chain)
        assert result.secure and result.closest_encloser == n("w.example.")
        assert denial.prove_nodata(n("q.w.example."), dns.rdatatype.MX, chain).secure
        assert not denial.prove_wildcard_nodata(n("q.w.example."), dns.rdatatype.A,
                                                chain).secure

    def test_no_ds_at_insecure_delegation(self, chain):
        result = denial.prove_no_ds(n("d.example."), chain)
        assert result.verdict is Verdict.SECURE

    def test_no_ds_where_ds_exists_fails(self, chain):
        assert denial.prove_no_ds(n("s.example."), chain).verdict is Verdict.BOGUS

    def test_no_ds_at_non_delegation_fails(self, chain):
        assert denial.prove_no_ds(n("a.example."), chain).verdict is Verdict.BOGUS

    def test_ds_nodata_from_parent_side(self, chain):
        assert denial.prove_nodata(n("d.example."), dns.rdatatype.DS, chain).secure

    def test_delegation_record_cannot_deny_other_types(self, chain):
        # RFC 6840 §4.1: the parent's record at a cut says nothing of the child's data.
        result = denial.prove_nodata(n("d.example."), dns.rdatatype.A, chain)
        assert result.verdict is Verdict.BOGUS and "delegation" in result.reason

    def test_names_below_a_delegation_are_not_denied(self, chain):
        assert denial.prove_nxdomain(n("www.d.example."), chain).verdict is Verdict.BOGUS

    def test_names_below_a_dname_are_not_denied(self, chain):
        assert denial.prove_nxdomain(n("www.n.example."), chain).verdict is Verdict.BOGUS

    def test_missing_wildcard_proof(self, chain):
        qname = n("nope.example.")
        wildcard = n("*.example.")
        kept = [r for r in chain if not _proves_absent(r, wildcard, chain) or
                _proves_absent(r, qname, chain)]
        if len(kept) == len(chain):
            pytest.skip("the same record covers the name and the wildcard")
        assert denial.prove_nxdomain(qname, kept).verdict is Verdict.BOGUS


def _proves_absent(rrset, name, chain):
    if rrset.rdtype == dns.rdatatype.NSEC:
        from resolver.dnssec.nsec import covers
        return covers(rrset.name, rrset[0].next, name)
    digest = dns.dnssec.nsec3_hash(name, None, 0, 1)
    owner = rrset.name.labels[0].decode().upper()
    import base64
    table = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
                            b"0123456789ABCDEFGHIJKLMNOPQRSTUV")
    nxt_text = base64.b32encode(rrset[0].next).translate(table).decode()
    if owner < nxt_text:
        return owner < digest < nxt_text
    return digest > owner or digest < nxt_text


def test_no_records_at_all():
    result = denial.prove_nxdomain(n("x.example."), [])
    assert result.verdict is Verdict.BOGUS and result.ede is EDE.NSEC_MISSING


def test_nsec_single_record_zone_wraps():
    only = nsec_chain({"example.": "SOA NS"})
    assert denial.prove_nxdomain(n("anything.example."), only).secure
    assert not denial.prove_nxdomain(n("other."), only).secure


def test_nsec3_iterations_above_cap_are_insecure():
    chain = nsec3_chain(NAMES, iterations=100, salt="aabb")
    result = denial.prove_nxdomain(n("nope.example."), chain)
    assert result.verdict is Verdict.INSECURE
    assert result.ede is EDE.UNSUPPORTED_NSEC3_ITERATIONS and "100" in result.reason
    at_cap = nsec3_chain(NAMES, iterations=50, salt="aabb")
    assert denial.prove_nxdomain(n("nope.example."), at_cap).secure


def test_nsec3_iteration_cap_is_configurable():
    chain = nsec3_chain(NAMES, iterations=10)
    strict = ValidatorConfig(limits=Limits(nsec3_max_iterations=5))
    assert denial.prove_nxdomain(n("nope.example."), chain,
                                 config=strict).verdict is Verdict.INSECURE


def test_nsec3_opt_out_insecure_delegation():
    chain = nsec3_chain(NAMES, optout=True)
    result = denial.prove_no_ds(n("d.example."), chain)
    assert result.verdict is Verdict.INSECURE and result.kind == "nsec3-optout"
    assert denial.prove_nodata(n("d.example."), dns.rdatatype.DS,
                               chain).verdict is Verdict.INSECURE
    # Without opt-out the same missing record is a failed proof.
    plain = [r for r in NSEC3 if r.name != _nsec3_owner("d.example.")]
    assert denial.prove_no_ds(n("d.example."), plain).verdict is Verdict.BOGUS


def test_nsec3_nxdomain_in_opt_out_span_is_insecure():
    chain = nsec3_chain(NAMES, optout=True)
    result = denial.prove_nxdomain(n("nope.example."), chain)
    assert result.verdict is Verdict.INSECURE and result.kind == "nsec3-optout"


@pytest.mark.parametrize("prove", [
    lambda chain: denial.prove_wildcard_answer(n("q.w.example."), n("*.w.example."), chain),
    lambda chain: denial.prove_wildcard_nodata(n("q.w.example."), dns.rdatatype.MX, chain),
    lambda chain: denial.prove_nodata(n("q.w.example."), dns.rdatatype.MX, chain),
], ids=["wildcard-answer", "wildcard-nodata", "nodata"])
def test_nsec3_proofs_resting_on_opt_out_are_never_secure(prove):
    # RFC 5155 §9.2, and §8.6 for every type per Errata 3441.
    result = prove(nsec3_chain(NAMES, optout=True))
    assert result.verdict is Verdict.INSECURE and result.kind == "nsec3-optout"
    assert prove(NSEC3).secure


def _nsec3_owner(name: str) -> dns.name.Name:
    return n(f"{dns.dnssec.nsec3_hash(name, None, 0, 1)}.example.")


def test_nsec3_record_flood_is_refused():
    big = {f"h{i}.example.": "A" for i in range(12)}
    chain = nsec3_chain(big)
    result = denial.prove_nxdomain(n("nope.example."), chain)
    assert result.verdict is Verdict.BOGUS and "budget" in result.reason
    assert result.budget is BudgetName.NSEC3_RECORDS


def test_nsec3_hash_budget_per_query():
    budget = Budget(Limits(max_nsec3_hashes_per_query=3))
    result = denial.prove_nxdomain(n("a.b.c.d.e.example."), NSEC3, budget=budget)
    assert result.verdict is Verdict.BOGUS and "NSEC3 hashes per query" in result.reason
    assert result.budget is BudgetName.NSEC3_HASHES


def test_nsec3_unknown_hash_algorithm_is_ignored():
    bad = [dns.rrset.from_rdata(r.name, 300, r[0].replace(algorithm=2)) for r in NSEC3]
    result = denial.prove_nxdomain(n("nope.example."), bad)
    assert result.verdict is Verdict.BOGUS and "no usable NSEC3" in result.reason


def test_nsec3_name_outside_zone():
    result = denial.prove_nxdomain(n("www.other."), NSEC3)
    assert result.verdict is Verdict.BOGUS and "not in the NSEC3 zone" in result.reason


def test_nsec3_chain_gap_is_bogus():
    # Drop the record covering the next closer name: the closest encloser proof breaks.
    qname = n("nope.example.")
    gap = [r for r in NSEC3 if not _proves_absent(r, qname, NSEC3)]
    assert len(gap) == len(NSEC3) - 1
    result = denial.prove_nxdomain(qname, gap)
    assert result.verdict is Verdict.BOGUS and result.ede is EDE.NSEC_MISSING


def test_nsec_chain_gap_is_bogus():
    qname = n("nope.example.")
    gap = [r for r in NSEC if not _proves_absent(r, qname, NSEC)]
    result = denial.prove_nxdomain(qname, gap)
    assert result.verdict is Verdict.BOGUS and result.ede is EDE.NSEC_MISSING
