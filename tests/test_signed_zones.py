"""The validator against zones signed by software we did not write.

The tree in tests/testtree/ (README.md there) was signed by BIND's dnssec-signzone and
ldns-signzone with a fixed validity window; everything here validates at the fixed time
NOW = 2026-06-01T00:00:00Z.  The denial records given to the proofs are the ones an
authoritative server would return, picked by tests/testtree/zonedata.py.
"""

from __future__ import annotations

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from resolver.dnssec import (EDE, Budget, Limits, ValidatorConfig, Verdict, authenticate_dnskeys,
                             denial, validate_rrset)
from tests.testtree import EXPIRATION_EPOCH, INCEPTION_EPOCH, NOW, zonedata

A, AAAA, MX, DS, DNSKEY = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.MX,
                           dns.rdatatype.DS, dns.rdatatype.DNSKEY)

GOOD = zonedata.zone_names("root", "tld", "child")
CHILDREN = zonedata.zone_names("child")
TLDS = zonedata.zone_names("tld")
BROKEN = zonedata.zone_names("broken")
SIGNED = GOOD + BROKEN
INSECURE = zonedata.zone_names("insecure")


def N(text, origin=None) -> dns.name.Name:
    return dns.name.from_text(text, origin)


def broken(breakage: str) -> zonedata.TestZone:
    (name,) = zonedata.zone_names("broken", breakage=breakage)
    return zonedata.load(name)


def secure_rrsets(z: zonedata.TestZone, pairs) -> list[dns.rrset.RRset]:
    """Validate the NSEC/NSEC3 RRsets a server would send, as a resolver does before using
    them in a proof."""
    out = []
    for rrset, sigs in pairs:
        r = validate_rrset(rrset, sigs, z.dnskeys(), now=NOW)
        assert r.verdict is Verdict.SECURE, (rrset.name, r.reason)
        out.append(rrset)
    return out


def assert_secure(r, what=""):
    assert r.verdict is Verdict.SECURE, f"{what}: {r.verdict} EDE {r.ede} {r.reason}"
    assert r.ede is None


# ------------------------------------------------------------------------------ the tree itself


def test_manifest_is_consistent():
    m = zonedata.manifest()
    zones = m["zones"]
    servers = [e["server"] for e in zones.values()]
    assert len(servers) == len(set(servers)), "every zone has its own address"
    assert all(s.startswith("127.0.0.") for s in servers)
    assert m["now"] == NOW
    for name, e in zones.items():
        z = zonedata.load(name)
        assert z.zone.origin == N(name)
        if e["parent"] is None:
            assert name == "."
            continue
        parent = zonedata.load(e["parent"])
        # delegation with glue at the zone's own server address
        ns = parent.rrset(name, "NS")
        assert ns is not None and {r.target.to_text() for r in ns} == {e["ns"]}
        glue = parent.rrset(e["ns"], "A")
        assert glue is not None and {r.address for r in glue} == {e["server"]}
        own = z.rrset(e["ns"], "A")
        assert own is not None and {r.address for r in own} == {e["server"]}
        ds = parent.rrset(name, DS)
        if e["kind"] == "insecure":
            assert ds is None and z.dnskeys() is None
            assert all(rds.rdtype != dns.rdatatype.RRSIG
                       for _owner, rds in z.zone.iterate_rdatasets())
        else:
            assert ds is not None and set(ds) == set(z.ds()), name


def test_root_hints_and_trust_anchor():
    m = zonedata.manifest()
    root = zonedata.load(".")
    (ns_name,) = m["root_hints"]
    assert {r.target for r in root.rrset(".", "NS")} == {N(ns_name)}
    assert {r.address for r in root.rrset(ns_name, "A")} == {m["root_hints"][ns_name]}
    assert set(zonedata.trust_anchor()) == set(root.ds())


def test_the_tree_covers_both_signers_algorithms_and_denial_types():
    zones = zonedata.manifest()["zones"]
    children = [zones[n] for n in CHILDREN]
    assert sorted(e["algorithm"] for e in children) == [8, 10, 13, 14, 15, 16]
    assert {e["signer"] for e in children} == {"dnssec-signzone", "ldns-signzone"}
    assert {e["denial"] for e in children} == {"nsec", "nsec3"}
    assert {e["keys_layout"] for e in children} == {"KSK+ZSK", "CSK"}
    for signer in ("dnssec-signzone", "ldns-signzone"):
        assert {e["denial"] for e in children if e["signer"] == signer} == {"nsec", "nsec3"}
    assert zones["test."]["denial"] == "nsec3-optout"
    dnames = [n for n in CHILDREN if zonedata.load(n).rrset(N("dname", N(n)), "DNAME") is not None]
    assert len(dnames) == 1


# ------------------------------------------------------------------------------ good zones


@pytest.mark.parametrize("name", GOOD)
def test_every_rrset_of_a_good_zone_is_secure(name):
    z = zonedata.load(name)
    keys = z.dnskeys()
    tags = {dns.dnssec.key_id(k) for k in keys}
    checked = 0
    for rrset, sigs in z.signed_rrsets():
        r = validate_rrset(rrset, sigs, keys, now=NOW)
        assert_secure(r, f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)}")
        assert r.key.owner == z.name and r.key.tag in tags
        assert r.rrsig in sigs
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("name", GOOD)
def test_dnskeys_authenticate_from_the_parents_ds(name):
    z = zonedata.load(name)
    keys, sigs = z.dnskeys(), z.rrsigs(z.name, DNSKEY)
    if name == ".":
        trust = zonedata.trust_anchor()
    else:
        parent = zonedata.load(z.entry["parent"])
        trust, trust_sigs = parent.pair(z.name, DS)
        assert_secure(validate_rrset(trust, trust_sigs, parent.dnskeys(), now=NOW), "DS")
    r = authenticate_dnskeys(keys, sigs, trust, now=NOW)
    assert_secure(r, name)
    assert r.ds in trust
    assert r.key.flags & 0x0100


def test_root_dnskeys_authenticate_from_a_dnskey_anchor():
    root = zonedata.load(".")
    keys = root.dnskeys()
    anchor = dns.rrset.RRset(root.name, keys.rdclass, DNSKEY)
    for k in keys:
        if k.flags == 257:
            anchor.add(k, keys.ttl)
    assert_secure(authenticate_dnskeys(keys, root.rrsigs(".", DNSKEY), anchor, now=NOW))


@pytest.mark.parametrize("name", CHILDREN + zonedata.zone_names("broken", breakage="sha1"))
def test_chain_of_trust_from_the_root(name):
    """Walk root -> TLD -> child, authenticating each DNSKEY set from the DS its parent
    signed."""
    config = ValidatorConfig(allow_sha1=True)
    path = []
    z = zonedata.load(name)
    while True:
        path.insert(0, z)
        if z.entry["parent"] is None:
            break
        z = zonedata.load(z.entry["parent"])
    budget = Budget(config.limits)
    trust = zonedata.trust_anchor()
    for zone, child in zip(path, path[1:] + [None]):
        keys = zone.dnskeys()
        assert_secure(authenticate_dnskeys(keys, zone.rrsigs(zone.name, DNSKEY), trust, now=NOW,
                                           budget=budget, config=config), zone.name)
        if child is not None:
            trust, sigs = zone.pair(child.name, DS)
            assert_secure(validate_rrset(trust, sigs, keys, now=NOW, budget=budget,
                                         config=config), f"DS {child.name}")
    www = N("www", path[-1].name)
    assert_secure(validate_rrset(*path[-1].pair(www, A), path[-1].dnskeys(), now=NOW,
                                 budget=budget, config=config))


@pytest.mark.parametrize("name", CHILDREN)
def test_validity_window_edges(name):
    z = zonedata.load(name)
    rrset, sigs = z.pair(N("www", z.name), A)
    keys = z.dnskeys()
    assert_secure(validate_rrset(rrset, sigs, keys, now=INCEPTION_EPOCH))
    assert_secure(validate_rrset(rrset, sigs, keys, now=EXPIRATION_EPOCH))
    late = validate_rrset(rrset, sigs, keys, now=EXPIRATION_EPOCH + 1)
    assert (late.verdict, late.ede) == (Verdict.BOGUS, EDE.SIGNATURE_EXPIRED)
    early = validate_rrset(rrset, sigs, keys, now=INCEPTION_EPOCH - 1)
    assert (early.verdict, early.ede) == (Verdict.BOGUS, EDE.SIGNATURE_NOT_YET_VALID)


@pytest.mark.parametrize("name", CHILDREN)
def test_wildcard_expansion_validates(name):
    """An answer synthesised from *.wild keeps the wildcard's RRSIG (labels field smaller than
    the owner's label count, RFC 4035 §5.3.2) and needs a proof that the name itself does not
    exist."""
    z = zonedata.load(name)
    wildcard, qname = N("*.wild", z.name), N("foo.wild", z.name)
    wrrset, wsigs = z.pair(wildcard, A)
    answer = dns.rrset.RRset(qname, wrrset.rdclass, A)
    answer.update(wrrset)
    sigs = dns.rrset.RRset(qname, wsigs.rdclass, wsigs.rdtype, wsigs.covers)
    sigs.update(wsigs)
    r = validate_rrset(answer, sigs, z.dnskeys(), now=NOW)
    assert_secure(r)
    assert r.rrsig.labels == len(wildcard.labels) - 2  # "*" and the root label do not count
    proof = denial.prove_wildcard_answer(qname, wildcard,
                                         secure_rrsets(z, z.select_wildcard_answer(qname, wildcard)))
    assert_secure(proof)
    assert proof.closest_encloser == N("wild", z.name)


@pytest.mark.parametrize("name", CHILDREN)
def test_cnames_and_dname(name):
    z = zonedata.load(name)
    cname, sigs = z.pair(N("cname", z.name), "CNAME")
    assert_secure(validate_rrset(cname, sigs, z.dnskeys(), now=NOW))
    out, out_sigs = z.pair(N("cname-out", z.name), "CNAME")
    assert_secure(validate_rrset(out, out_sigs, z.dnskeys(), now=NOW))
    target = out[0].target
    other = zonedata.load(target.parent())
    assert_secure(validate_rrset(*other.pair(target, A), other.dnskeys(), now=NOW))
    dname, dsigs = z.pair(N("dname", z.name), "DNAME")
    if dname is not None:
        assert_secure(validate_rrset(dname, dsigs, z.dnskeys(), now=NOW))


# ------------------------------------------------------------------------------ denial


def _denial_cases():
    for name in GOOD:
        entry = zonedata.manifest()["zones"][name]
        yield pytest.param(name, "nxdomain", id=f"{name}-nxdomain")
        yield pytest.param(name, "nodata-apex", id=f"{name}-nodata-apex")
        if entry["kind"] == "child":
            for case in ("nodata", "nodata-ent", "wildcard-nodata", "wildcard-nodata-via-nodata"):
                yield pytest.param(name, case, id=f"{name}-{case}")
        if entry["kind"] in ("child", "tld"):
            yield pytest.param(name, "no-ds", id=f"{name}-no-ds")


@pytest.mark.parametrize(("name", "case"), list(_denial_cases()))
def test_denial_proofs_of_good_zones(name, case):
    z = zonedata.load(name)
    kind = "nsec" if z.denial == "nsec" else "nsec3"
    optout = z.denial == "nsec3-optout"
    if case == "nxdomain":
        qname = N("nonexistent", z.name)
        r = denial.prove_nxdomain(qname, secure_rrsets(z, z.select_nxdomain(qname)))
        if optout:
            # every NSEC3 of an opt-out zone signed with dnssec-signzone -A has the opt-out
            # flag: the name might be an unsigned delegation, so the answer is insecure
            assert (r.verdict, r.kind) == (Verdict.INSECURE, "nsec3-optout"), r.reason
            return
        assert r.closest_encloser in (None, z.name)
    elif case == "nodata-apex":
        r = denial.prove_nodata(z.name, A, secure_rrsets(z, z.select_nodata(z.name, A)))
    elif case == "nodata":
        www = N("www", z.name)
        r = denial.prove_nodata(www, MX, secure_rrsets(z, z.select_nodata(www, MX)))
    elif case == "nodata-ent":
        ent = N("b.c", z.name)
        assert z.rrset(ent, A) is None and z.exists(ent)
        r = denial.prove_nodata(ent, A, secure_rrsets(z, z.select_nodata(ent, A)))
    elif case.startswith("wildcard-nodata"):
        qname = N("foo.wild", z.name)
        rrsets = secure_rrsets(z, z.select_wildcard_nodata(qname, MX))
        if case == "wildcard-nodata":
            r = denial.prove_wildcard_nodata(qname, MX, rrsets)
        else:
            r = denial.prove_nodata(qname, MX, rrsets)
        assert r.closest_encloser in (None, N("wild", z.name))
    elif case == "no-ds":
        delegation = N("insecure", z.name)
        r = denial.prove_no_ds(delegation, secure_rrsets(z, z.select_no_ds(delegation)))
        if optout:
            assert (r.verdict, r.kind) == (Verdict.INSECURE, "nsec3-optout"), r.reason
            assert z.nsec3_matching(delegation) is None
            return
    else:  # pragma: no cover
        raise AssertionError(case)
    assert_secure(r, case)
    assert r.kind == kind


@pytest.mark.parametrize("name", CHILDREN)
def test_denial_proofs_refuse_the_wrong_records(name):
    """The records that prove one name absent must not prove another absent, and the record
    of a name must not prove NODATA for a type it has."""
    z = zonedata.load(name)
    www = N("www", z.name)
    nx_records = secure_rrsets(z, z.select_nxdomain(N("nonexistent", z.name)))
    assert denial.prove_nxdomain(www, nx_records).verdict is Verdict.BOGUS
    www_records = secure_rrsets(z, z.select_nodata(www, MX))
    assert denial.prove_nodata(www, A, www_records).verdict is Verdict.BOGUS
    assert denial.prove_nxdomain(www, www_records).verdict is Verdict.BOGUS
    # a signed child's own delegation record lists DS in the parent
    parent = zonedata.load(z.entry["parent"])
    if parent.denial == "nsec":
        r = denial.prove_no_ds(z.name, secure_rrsets(parent, [parent.nsec_matching(z.name)]))
        assert r.verdict is Verdict.BOGUS


@pytest.mark.parametrize("name", INSECURE)
def test_insecure_delegations_have_a_no_ds_proof_or_opt_out(name):
    z = zonedata.load(name)
    parent = zonedata.load(z.entry["parent"])
    assert parent.rrset(z.name, DS) is None
    r = denial.prove_no_ds(z.name, secure_rrsets(parent, parent.select_no_ds(z.name)))
    if parent.denial == "nsec3-optout":
        assert (r.verdict, r.kind) == (Verdict.INSECURE, "nsec3-optout")
    else:
        assert_secure(r)


# ------------------------------------------------------------------------------ broken zones


def _www(z):
    return z.pair(N("www", z.name), A)


def test_expired_zone_is_bogus_with_ede_7():
    z = broken("expired")
    r = validate_rrset(*_www(z), z.dnskeys(), now=NOW)
    assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.SIGNATURE_EXPIRED)
    a = authenticate_dnskeys(z.dnskeys(), z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW)
    assert (a.verdict, a.ede) == (Verdict.BOGUS, EDE.SIGNATURE_EXPIRED)
    # the same data inside its window (2020) is fine: only time is wrong
    assert_secure(validate_rrset(*_www(z), z.dnskeys(), now=1590969600))


def test_notyet_zone_is_bogus_with_ede_8():
    z = broken("notyet")
    r = validate_rrset(*_www(z), z.dnskeys(), now=NOW)
    assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.SIGNATURE_NOT_YET_VALID)
    a = authenticate_dnskeys(z.dnskeys(), z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW)
    assert (a.verdict, a.ede) == (Verdict.BOGUS, EDE.SIGNATURE_NOT_YET_VALID)
    assert_secure(validate_rrset(*_www(z), z.dnskeys(), now=2096668800))  # 2036-06-10


def test_wrongds_zone_fails_at_the_dnskey_set():
    z = broken("wrongds")
    parent = zonedata.load(z.entry["parent"])
    ds, ds_sigs = parent.pair(z.name, DS)
    assert_secure(validate_rrset(ds, ds_sigs, parent.dnskeys(), now=NOW), "the DS itself")
    a = authenticate_dnskeys(z.dnskeys(), z.rrsigs(z.name, DNSKEY), ds, now=NOW)
    assert a.verdict is Verdict.BOGUS
    assert a.ede in (EDE.DNSSEC_BOGUS, EDE.DNSKEY_MISSING)
    # the zone is otherwise correctly signed
    assert_secure(validate_rrset(*_www(z), z.dnskeys(), now=NOW))


def test_nosig_zone_misses_the_www_rrsigs():
    z = broken("nosig")
    keys = z.dnskeys()
    assert_secure(authenticate_dnskeys(keys, z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW))
    for rdtype in (A, AAAA):
        rrset, sigs = z.pair(N("www", z.name), rdtype)
        assert sigs is None
        r = validate_rrset(rrset, sigs, keys, now=NOW)
        assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.RRSIGS_MISSING)
        # an RRSIG of another RRset at the name does not stand in for the missing one
        nsec_sigs = z.rrsigs(N("www", z.name), "NSEC")
        r = validate_rrset(rrset, nsec_sigs, keys, now=NOW)
        assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.RRSIGS_MISSING)
    others = [(r, s) for r, s in z.signed_rrsets()
              if not (r.name == N("www", z.name) and r.rdtype in (A, AAAA))]
    for rrset, sigs in others:
        assert_secure(validate_rrset(rrset, sigs, keys, now=NOW), rrset.name)


def test_badsig_zone_has_one_bad_signature():
    z = broken("badsig")
    keys = z.dnskeys()
    assert_secure(authenticate_dnskeys(keys, z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW))
    bad = []
    for rrset, sigs in z.signed_rrsets():
        r = validate_rrset(rrset, sigs, keys, now=NOW)
        if r.verdict is not Verdict.SECURE:
            bad.append((rrset.name, rrset.rdtype, r.verdict, r.ede))
    assert bad == [(N("www", z.name), A, Verdict.BOGUS, EDE.DNSSEC_BOGUS)]


def test_unknownalg_zone_is_insecure_with_ede_1():
    z = broken("unknownalg")
    ds = z.ds()
    assert {d.algorithm for d in ds} == {200}
    a = authenticate_dnskeys(z.dnskeys(), z.rrsigs(z.name, DNSKEY), ds, now=NOW)
    assert (a.verdict, a.ede) == (Verdict.INSECURE, EDE.UNSUPPORTED_DNSKEY_ALGORITHM)
    r = validate_rrset(*_www(z), z.dnskeys(), now=NOW)
    assert (r.verdict, r.ede) == (Verdict.INSECURE, EDE.UNSUPPORTED_DNSKEY_ALGORITHM)


def test_nsec3iter_zone_data_is_secure_but_denial_is_insecure_with_ede_27():
    z = broken("nsec3iter")
    assert z.nsec3param.iterations == 100
    keys = z.dnskeys()
    assert_secure(authenticate_dnskeys(keys, z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW))
    assert_secure(validate_rrset(*_www(z), keys, now=NOW))
    qname = N("nonexistent", z.name)
    nx = secure_rrsets(z, z.select_nxdomain(qname))
    nodata = secure_rrsets(z, z.select_nodata(N("www", z.name), MX))
    for r in (denial.prove_nxdomain(qname, nx),
              denial.prove_nodata(N("www", z.name), MX, nodata)):
        assert (r.verdict, r.ede) == (Verdict.INSECURE, EDE.UNSUPPORTED_NSEC3_ITERATIONS)
    # with the cap raised to 100 the same records prove it
    config = ValidatorConfig(limits=Limits(nsec3_max_iterations=100))
    assert_secure(denial.prove_nxdomain(qname, nx, config=config))
    assert_secure(denial.prove_nodata(N("www", z.name), MX, nodata, config=config))


def test_keytrap_zone_shape():
    z = broken("keytrap")
    keys = z.dnskeys()
    tags = {dns.dnssec.key_id(k) for k in keys}
    assert len(keys) == 5 and len(tags) == 1
    trap, trap_sigs = z.pair(N("trap", z.name), A)
    assert len(trap_sigs) == 5 and {s.key_tag for s in trap_sigs} == tags


def test_keytrap_stops_at_the_budget():
    z = broken("keytrap")
    trap = z.pair(N("trap", z.name), A)
    for config in (ValidatorConfig(), ValidatorConfig(limits=Limits(max_keys_per_tag=2))):
        r = validate_rrset(*trap, z.dnskeys(), now=NOW, config=config)
        assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.DNSSEC_BOGUS)
        assert "budget" in r.reason
    # a per-query budget stops the work too
    limits = Limits(max_keys_per_tag=5, max_sig_checks_per_rrset=64, max_sig_checks_per_query=3)
    budget = Budget(limits)
    r = validate_rrset(*trap, z.dnskeys(), now=NOW, budget=budget,
                       config=ValidatorConfig(limits=limits))
    assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.DNSSEC_BOGUS)
    assert "budget" in r.reason
    assert budget.sig_checks <= 3


def test_keytrap_with_generous_limits():
    """Allowed to try every key, the validator proves the valid RRsets despite the tag
    collisions and rejects trap A only after trying all 25 key/signature pairs."""
    z = broken("keytrap")
    limits = Limits(max_keys_per_tag=5, max_sig_checks_per_rrset=25, max_sig_checks_per_query=64)
    config = ValidatorConfig(limits=limits)
    keys = z.dnskeys()
    assert_secure(authenticate_dnskeys(keys, z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW,
                                       config=config))
    assert_secure(validate_rrset(*_www(z), keys, now=NOW, config=config))
    budget = Budget(limits)
    r = validate_rrset(*z.pair(N("trap", z.name), A), keys, now=NOW, budget=budget,
                       config=config)
    assert (r.verdict, r.ede) == (Verdict.BOGUS, EDE.DNSSEC_BOGUS)
    assert "budget" not in r.reason
    assert budget.sig_checks == 25


def test_keytrap_dnskeys_under_default_limits():
    """The KSK sorts after the four ZSKs that share its tag. DS matching compares every key of
    that tag (digests are cheap), so the legitimate DNSKEY set authenticates under the default
    limits; the signature checks stay capped at max_keys_per_tag."""
    z = broken("keytrap")
    a = authenticate_dnskeys(z.dnskeys(), z.rrsigs(z.name, DNSKEY), z.ds(), now=NOW)
    assert a.verdict is Verdict.SECURE


def test_sha1_zone_is_insecure_by_default_and_secure_when_allowed():
    z = broken("sha1")
    keys, key_sigs = z.dnskeys(), z.rrsigs(z.name, DNSKEY)
    assert {k.algorithm for k in keys} == {5}
    a = authenticate_dnskeys(keys, key_sigs, z.ds(), now=NOW)
    assert (a.verdict, a.ede) == (Verdict.INSECURE, EDE.UNSUPPORTED_DNSKEY_ALGORITHM)
    r = validate_rrset(*_www(z), keys, now=NOW)
    assert (r.verdict, r.ede) == (Verdict.INSECURE, EDE.UNSUPPORTED_DNSKEY_ALGORITHM)
    config = ValidatorConfig(allow_sha1=True)
    assert_secure(authenticate_dnskeys(keys, key_sigs, z.ds(), now=NOW, config=config))
    for rrset, sigs in z.signed_rrsets():
        assert_secure(validate_rrset(rrset, sigs, keys, now=NOW, config=config), rrset.name)


@pytest.mark.parametrize("name", BROKEN)
def test_every_broken_zone_has_its_ds_signed_by_a_good_parent(name):
    z = zonedata.load(name)
    parent = zonedata.load(z.entry["parent"])
    assert parent.kind in ("tld",)
    ds, sigs = parent.pair(z.name, DS)
    assert_secure(validate_rrset(ds, sigs, parent.dnskeys(), now=NOW))
    assert set(ds) == set(z.ds())
