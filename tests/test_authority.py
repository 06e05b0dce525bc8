"""The test tree's authoritative servers (tests/testtree/authority.py), queried with dnspython.

The servers listen on 127.0.0.N port 53 (root needed). A module-wide tree on port 53 answers
the behaviour tests; the fault knobs and the start/stop tests run their own servers on another
port so that they never collide with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from resolver.dnssec import Verdict, denial, validate_rrset
from tests.testtree import NOW, zonedata
from tests.testtree import authority
from tests.test_operations import wait_for
from tests.testtree.authority import start_forwarder, start_tree

A, AAAA, NS, SOA, DS, DNSKEY, RRSIG, NSEC, NSEC3, CNAME, DNAME, TXT, MX = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.NS, dns.rdatatype.SOA,
    dns.rdatatype.DS, dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG, dns.rdatatype.NSEC,
    dns.rdatatype.NSEC3, dns.rdatatype.CNAME, dns.rdatatype.DNAME, dns.rdatatype.TXT,
    dns.rdatatype.MX)

GOOD = zonedata.zone_names("root", "tld", "child")
CHILDREN = zonedata.zone_names("child")
OTHER_PORT = 10053  # servers of the tests that start their own


def N(text, origin=None) -> dns.name.Name:
    return dns.name.from_text(text, origin)


def server_of(zone: str) -> str:
    return zonedata.entry(zone)["server"]


def ask(server: str, qname: str, qtype=A, *, do: bool = True, edns: int | None = 0,
        payload: int = 1232, tcp: bool = False, port: int = 53, rd: bool = False,
        timeout: float = 2.0, rdclass=dns.rdataclass.IN, retry_tcp: bool = True
        ) -> dns.message.Message:
    """One query; a truncated UDP answer is asked again over TCP unless ``retry_tcp=False``."""
    if edns is None:  # no OPT record at all
        q = dns.message.make_query(qname, qtype, rdclass, use_edns=False)
    else:
        q = dns.message.make_query(qname, qtype, rdclass, use_edns=edns, want_dnssec=do,
                                   payload=payload)
    q.flags = dns.flags.RD if rd else 0
    if tcp:
        return dns.query.tcp(q, server, timeout=timeout, port=port)
    r = dns.query.udp(q, server, timeout=timeout, port=port, ignore_trailing=False)
    if r.flags & dns.flags.TC and retry_tcp:
        return dns.query.tcp(q, server, timeout=timeout, port=port)
    return r


def find(section, name, rdtype, covers=dns.rdatatype.NONE) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == N(name) and rrset.rdtype == rdtype and rrset.covers == covers:
            return rrset
    return None


def types(section) -> set[int]:
    return {r.rdtype for r in section}


def validated(zone: str, rrset, sigs):
    """validate_rrset with the zone's own DNSKEY set, at NOW."""
    assert sigs is not None, f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: no RRSIG"
    return validate_rrset(rrset, sigs, zonedata.load(zone).dnskeys(), now=NOW)


def denial_rrsets(zone: str, response) -> list[dns.rrset.RRset]:
    """The NSEC/NSEC3 RRsets of the authority section, each validated first."""
    out = []
    for rrset in response.authority:
        if rrset.rdtype in (NSEC, NSEC3):
            sigs = find(response.authority, rrset.name.to_text(), RRSIG, rrset.rdtype)
            r = validated(zone, rrset, sigs)
            assert r.verdict is Verdict.SECURE, r.reason
            out.append(rrset)
    return out


def no_dnssec(response) -> bool:
    return not any(r.rdtype in (RRSIG, NSEC, NSEC3, DS)
                   for section in (response.answer, response.authority, response.additional)
                   for r in section)


@pytest.fixture(scope="module")
def tree():
    try:
        t = start_tree(forwarder=True)
    except PermissionError:  # pragma: no cover - not root
        pytest.skip("binding port 53 needs root")
    with t:
        yield t
    assert not t.errors, "\n".join(t.errors)


# ------------------------------------------------------------------------------ life cycle


def _thread_count() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "testtree-servers")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_start_returns_ready_and_stop_releases_everything():
    """start_tree() returns once every server answers; stop() leaves no thread, descriptor or
    bound address behind. How long they take: bench/testtree.py (no clock in the tests)."""
    before, fds = _thread_count(), _open_fds()
    t = start_tree(port=OTHER_PORT, forwarder=True)
    try:
        r = ask("127.0.0.10", ".", SOA, port=OTHER_PORT)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    finally:
        t.stop()
    assert _thread_count() == before and _open_fds() == fds
    # the sockets are gone: TCP is refused, and the same addresses can be bound again
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.10", OTHER_PORT), timeout=1).close()
    with start_tree(port=OTHER_PORT) as again:
        assert ask("127.0.0.10", ".", SOA, port=OTHER_PORT).rcode() == dns.rcode.NOERROR
    assert not again.running and not again.errors


fixture_tree = authority.tree_fixture("function", {"ed448.test.": {"refuse": True}},
                                      port=OTHER_PORT)


def test_tree_fixture_helper(fixture_tree):
    assert fixture_tree.running
    assert other("127.0.0.25", "www.ed448.test.").rcode() == dns.rcode.REFUSED
    assert other("127.0.0.24", "www.ed25519.example.").rcode() == dns.rcode.NOERROR


def test_only_loopback_addresses():
    with pytest.raises(ValueError):
        authority.Server("192.0.2.1", [])
    with pytest.raises(ValueError):
        start_forwarder("10.0.0.1", port=OTHER_PORT)


def test_start_fails_loudly_on_a_taken_address(tree):
    with pytest.raises(OSError):
        start_tree()
    assert _thread_count() == 1  # only the module's tree


# ------------------------------------------------------------------------------ referrals


def test_referral_from_the_root_with_ds(tree):
    r = ask("127.0.0.10", "www.rsasha256.example.")
    assert r.rcode() == dns.rcode.NOERROR
    assert not r.flags & dns.flags.AA and not r.answer
    assert [x.rdtype for x in r.authority] == [NS, DS, RRSIG]  # NS first (RFC 4035 §3.1.4)
    ns = find(r.authority, "example.", NS)
    assert {x.target for x in ns} == {N("ns.example.")}
    ds = find(r.authority, "example.", DS)
    assert set(ds) == set(zonedata.load("example.").ds())
    assert validated(".", ds, find(r.authority, "example.", RRSIG, DS)).verdict is Verdict.SECURE
    glue = find(r.additional, "ns.example.", A)
    assert {x.address for x in glue} == {"127.0.0.12"}
    assert r.ednsflags & dns.flags.DO


def test_referral_without_do_has_no_dnssec_records(tree):
    r = ask("127.0.0.10", "www.rsasha256.example.", do=False)
    assert [x.rdtype for x in r.authority] == [NS]
    assert no_dnssec(r) and not r.ednsflags & dns.flags.DO


def test_referral_to_an_unsigned_child_proves_no_ds(tree):
    r = ask(server_of("example."), "www.insecure.example.")
    assert not r.flags & dns.flags.AA
    assert r.authority[0].rdtype == NS and find(r.authority, "insecure.example.", DS) is None
    proof = denial.prove_no_ds(N("insecure.example."), denial_rrsets("example.", r))
    assert proof.verdict is Verdict.SECURE, proof.reason


def test_referral_below_an_opt_out_parent(tree):
    r = ask(server_of("test."), "www.insecure.test.")
    proof = denial.prove_no_ds(N("insecure.test."), denial_rrsets("test.", r))
    assert (proof.verdict, proof.kind) == (Verdict.INSECURE, "nsec3-optout"), proof.reason


def test_no_ds_at_an_opted_out_delegation(tree):
    r = ask(server_of("test."), "insecure.test.", DS)
    assert r.flags & dns.flags.AA and not r.answer and find(r.authority, "test.", SOA)
    proof = denial.prove_no_ds(N("insecure.test."), denial_rrsets("test.", r))
    assert (proof.verdict, proof.kind) == (Verdict.INSECURE, "nsec3-optout"), proof.reason


def test_referrals_of_the_scenario_delegations(tree):
    example = server_of("example.")
    r = ask(example, "www.lame.example.")
    assert {x.target for x in find(r.authority, "lame.example.", NS)} == \
        {N("ns1.lame.example."), N("ns2.lame.example.")}
    assert {x.address for rr in r.additional for x in rr} == {"127.0.0.50", "127.0.0.51"}
    r = ask(example, "www.loop1.example.")
    assert {x.target for x in find(r.authority, "loop1.example.", NS)} == {N("ns.loop2.example.")}
    assert not r.additional  # no glue anywhere for the cycle
    r = ask(example, "ns.loop2.example.")
    assert {x.target for x in find(r.authority, "loop2.example.", NS)} == {N("ns.loop1.example.")}
    assert not r.additional


# ------------------------------------------------------------------------------ answers


@pytest.mark.parametrize("zone", CHILDREN)
def test_answer_with_rrsig_only_when_do(tree, zone):
    www = f"www.{zone}"
    r = ask(server_of(zone), www)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    a, sigs = find(r.answer, www, A), find(r.answer, www, RRSIG, A)
    assert validated(zone, a, sigs).verdict is Verdict.SECURE
    r = ask(server_of(zone), www, do=False)
    assert types(r.answer) == {A} and no_dnssec(r)
    r = ask(server_of(zone), www, edns=None, do=False)
    assert r.edns < 0 and types(r.answer) == {A}


def test_dnssec_types_asked_for_without_do(tree):
    zone = "ecdsap256.example."
    r = ask(server_of(zone), zone, DNSKEY, do=False)
    assert types(r.answer) == {DNSKEY}
    r = ask(server_of(zone), zone, DNSKEY)
    keys, sigs = find(r.answer, zone, DNSKEY), find(r.answer, zone, RRSIG, DNSKEY)
    assert validated(zone, keys, sigs).verdict is Verdict.SECURE


def test_apex_ns_answer_carries_addresses(tree):
    r = ask(server_of("ed448.test."), "ed448.test.", NS)
    assert types(r.answer) == {NS, RRSIG}
    assert find(r.additional, "ns.ed448.test.", A) is not None


@pytest.mark.parametrize("zone", GOOD)
def test_nxdomain_with_proofs_the_validator_accepts(tree, zone):
    qname = N("nonexistent", N(zone)) if zone != "." else N("nonexistent.")
    r = ask(server_of(zone), qname.to_text())
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA and not r.answer
    soa = find(r.authority, zone, SOA)
    assert validated(zone, soa, find(r.authority, zone, RRSIG, SOA)).verdict is Verdict.SECURE
    proof = denial.prove_nxdomain(qname, denial_rrsets(zone, r))
    if zonedata.entry(zone)["denial"] == "nsec3-optout":
        assert (proof.verdict, proof.kind) == (Verdict.INSECURE, "nsec3-optout"), proof.reason
    else:
        assert proof.verdict is Verdict.SECURE, proof.reason
    r = ask(server_of(zone), qname.to_text(), do=False)
    assert r.rcode() == dns.rcode.NXDOMAIN and types(r.authority) == {SOA} and no_dnssec(r)


@pytest.mark.parametrize("zone", CHILDREN)
def test_nodata_and_empty_non_terminal(tree, zone):
    for qname, qtype in ((f"www.{zone}", MX), (f"b.c.{zone}", A), (zone, A)):
        r = ask(server_of(zone), qname, qtype)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and not r.answer
        assert find(r.authority, zone, SOA) is not None
        proof = denial.prove_nodata(N(qname), qtype, denial_rrsets(zone, r))
        assert proof.verdict is Verdict.SECURE, (qname, proof.reason)


@pytest.mark.parametrize("zone", CHILDREN)
def test_wildcard_answer(tree, zone):
    qname = f"foo.wild.{zone}"
    r = ask(server_of(zone), qname)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    a, sigs = find(r.answer, qname, A), find(r.answer, qname, RRSIG, A)
    assert a is not None and sigs is not None
    wildcard = N(f"*.wild.{zone}")
    assert all(s.labels == len(wildcard) - 2 for s in sigs)  # the expansion shows
    assert validated(zone, a, sigs).verdict is Verdict.SECURE
    proof = denial.prove_wildcard_answer(N(qname), wildcard, denial_rrsets(zone, r))
    assert proof.verdict is Verdict.SECURE, proof.reason
    # deeper names match the same wildcard
    r = ask(server_of(zone), f"a.b.wild.{zone}", do=False)
    assert [x.address for x in find(r.answer, f"a.b.wild.{zone}", A)] == [a[0].address]


@pytest.mark.parametrize("zone", CHILDREN)
def test_wildcard_nodata(tree, zone):
    qname = f"foo.wild.{zone}"
    r = ask(server_of(zone), qname, MX)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    proof = denial.prove_wildcard_nodata(N(qname), MX, denial_rrsets(zone, r))
    assert proof.verdict is Verdict.SECURE, proof.reason


def test_dname(tree):
    zone = "ecdsap256.example."
    qname = f"www.dname.{zone}"
    r = ask(server_of(zone), qname)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    dname = find(r.answer, f"dname.{zone}", DNAME)
    assert validated(zone, dname, find(r.answer, f"dname.{zone}", RRSIG, DNAME)).secure
    cname = find(r.answer, qname, CNAME)
    assert cname[0].target == N("www.ed25519.example.") and cname.ttl == dname.ttl
    assert find(r.answer, qname, RRSIG, CNAME) is None  # synthesised: unsigned
    assert [x.rdtype for x in r.answer] == [DNAME, RRSIG, CNAME]
    # the DNAME owner itself is answered normally
    r = ask(server_of(zone), f"dname.{zone}", DNAME)
    assert types(r.answer) == {DNAME, RRSIG}


def test_cnames(tree):
    zone = "ed448.test."
    r = ask(server_of(zone), f"cname.{zone}")  # followed inside the zone
    assert [x.rdtype for x in r.answer] == [CNAME, RRSIG, A, RRSIG]
    for rrset in r.answer:
        if rrset.rdtype != RRSIG:
            sigs = find(r.answer, rrset.name.to_text(), RRSIG, rrset.rdtype)
            assert validated(zone, rrset, sigs).secure
    r = ask(server_of(zone), f"cname-out.{zone}")  # leaves the zone: as it is
    assert [x.rdtype for x in r.answer] == [CNAME, RRSIG] and not r.authority
    r = ask(server_of(zone), f"cname.{zone}", CNAME)
    assert [x.rdtype for x in r.answer] == [CNAME, RRSIG]
    # into the unsigned child below a cut: the CNAME, then the referral (RFC 1034 §4.3.2 3b)
    r = ask(server_of(zone), f"cname-insecure.{zone}")
    assert r.flags & dns.flags.AA and find(r.answer, f"cname-insecure.{zone}", CNAME)
    assert find(r.authority, f"insecure.{zone}", NS) is not None


def test_long_cname_chain_and_loop(tree):
    zone = "ecdsap256.example."
    r = ask(server_of(zone), f"chain1.{zone}", tcp=True)
    cnames = [x for x in r.answer if x.rdtype == CNAME]
    assert len(cnames) == 15 and find(r.answer, f"www.{zone}", A) is not None
    r = ask(server_of(zone), f"loop-a.{zone}", do=False)
    assert r.rcode() == dns.rcode.NOERROR
    assert [x.name for x in r.answer] == [N(f"loop-a.{zone}"), N(f"loop-b.{zone}")]


def test_ds_from_the_parent_side(tree):
    child = "rsasha256.example."
    r = ask(server_of("example."), child, DS)
    assert r.flags & dns.flags.AA
    ds, sigs = find(r.answer, child, DS), find(r.answer, child, RRSIG, DS)
    assert sigs[0].signer == N("example.")
    assert validated("example.", ds, sigs).secure
    r = ask("127.0.0.10", "example.", DS)
    assert r.flags & dns.flags.AA and find(r.answer, "example.", DS) is not None
    # the child alone holds no DS: authoritative NODATA with its SOA (RFC 4035 §3.1.4.1)
    r = ask(server_of(child), child, DS)
    assert r.flags & dns.flags.AA and not r.answer and find(r.authority, child, SOA)
    # no DS at an unsigned delegation: NODATA from the parent, proven
    r = ask(server_of("example."), "insecure.example.", DS)
    assert r.flags & dns.flags.AA and not r.answer
    assert find(r.authority, "example.", SOA) is not None
    proof = denial.prove_no_ds(N("insecure.example."), denial_rrsets("example.", r))
    assert proof.verdict is Verdict.SECURE


def test_any_formerr_notimp(tree):
    server = server_of("ed448.test.")
    r = ask(server, "www.ed448.test.", dns.rdatatype.ANY, do=False)
    assert types(r.answer) == {A, AAAA}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ab", (server, 53))
        reply = sock.recv(512)
        assert reply[:2] == b"\x12\x34" and reply[2] & 0x80 and reply[3] & 0x0F == 1
    q = dns.message.make_query("www.ed448.test.", A)
    q.set_opcode(dns.opcode.NOTIFY)
    r = dns.query.udp(q, server, timeout=2)
    assert r.rcode() == dns.rcode.NOTIMP


def test_refused_outside_its_zones(tree):
    r = ask(server_of("rsasha256.example."), "www.ed448.test.")
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA and not r.answer
    r = ask(server_of("rsasha256.example."), "www.rsasha256.example.", TXT,
            rdclass=dns.rdataclass.CH)
    assert r.rcode() == dns.rcode.REFUSED
    r = ask("127.0.0.51", "www.lame.example.")  # the lame server
    assert r.rcode() == dns.rcode.REFUSED
    r = ask(server_of("lame.example."), "www.lame.example.")  # the good one
    assert [x.address for x in find(r.answer, "www.lame.example.", A)] == ["192.0.2.50"]


def test_unreachable_address_has_no_listener(tree):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.54", 53), timeout=1).close()


@pytest.mark.parametrize("address", [a for a, s in zonedata.manifest()["servers"].items()
                                     if s["role"] == "authoritative"])
def test_every_zone_server_answers_its_soa(tree, address):
    (zone,) = zonedata.manifest()["servers"][address]["zones"]
    r = ask(address, zone, SOA)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert find(r.answer, zone, SOA) is not None
    sigs = find(r.answer, zone, RRSIG, SOA)
    assert (sigs is None) == (zonedata.load(zone).denial is None)


# ------------------------------------------------------------------------------ EDNS, TC, TCP


def test_edns(tree):
    server = server_of("rsasha256.example.")
    r = ask(server, "www.rsasha256.example.", payload=4096)
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
    r = ask(server, "www.rsasha256.example.", do=False)
    assert r.edns == 0 and not r.ednsflags & dns.flags.DO
    r = ask(server, "www.rsasha256.example.", edns=None, do=False)
    assert r.edns < 0
    r = ask(server, "www.rsasha256.example.", edns=1)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and not r.answer


def test_truncation_then_tcp(tree):
    zone = "rsasha256.example."
    qname = f"big.{zone}"
    for payload in (1232, 4096):  # our own limit is 1232 whatever the client offers
        r = ask(server_of(zone), qname, TXT, payload=payload, retry_tcp=False)
        assert r.flags & dns.flags.TC and not r.answer and not r.authority
    r = ask(server_of(zone), qname, TXT, edns=None, do=False, retry_tcp=False)
    assert r.flags & dns.flags.TC and not r.answer
    r = ask(server_of(zone), qname, TXT, tcp=True)
    assert not r.flags & dns.flags.TC
    txt, sigs = find(r.answer, qname, TXT), find(r.answer, qname, RRSIG, TXT)
    assert sum(len(s) for s in txt[0].strings) >= 2900
    assert validated(zone, txt, sigs).secure
    assert tree.queried(qname, "TXT", transport="tcp")


def test_the_clients_smaller_size_is_honoured(tree):
    zone = "rsasha256.example."
    r = ask(server_of(zone), zone, DNSKEY, payload=1232)
    size = len(r.to_wire())
    assert 600 < size <= 1232 and not r.flags & dns.flags.TC
    r = ask(server_of(zone), zone, DNSKEY, payload=600, retry_tcp=False)
    assert r.flags & dns.flags.TC and not r.answer
    # below 512 counts as 512 (RFC 6891 §6.2.5)
    r = ask(server_of(zone), zone, DNSKEY, payload=256, do=False)
    assert 256 < len(r.to_wire()) <= 512 and not r.flags & dns.flags.TC and r.answer


def test_several_queries_per_tcp_connection(tree):
    zone = "ed25519.example."
    names = [f"www.{zone}", f"mail.{zone}", f"nonexistent.{zone}"]
    with socket.create_connection((server_of(zone), 53), timeout=2) as sock:
        queries = [dns.message.make_query(n, A, want_dnssec=True) for n in names]
        for q in queries:  # pipelined
            dns.query.send_tcp(sock, q)
        replies = [dns.query.receive_tcp(sock)[0] for _ in queries]
    for q, r in zip(queries, replies):
        assert r.id == q.id and r.question == q.question
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR] * 2 + [dns.rcode.NXDOMAIN]


# ------------------------------------------------------------------------------ queries recorded


def test_queries_are_recorded(tree):
    tree.clear()
    ask(server_of("rsasha256.example."), "WWW.rsasha256.example.", do=True)
    ask(server_of("rsasha256.example."), "www.rsasha256.example.", AAAA, do=False, tcp=True)
    ask("127.0.0.51", "www.lame.example.", rd=True)
    q = tree.queried("www.rsasha256.example.", "A")
    assert q == [authority.Query("127.0.0.20", "www.rsasha256.example.", "A", True, "udp")]
    (q,) = tree.queried("www.rsasha256.example.", "AAAA", server="rsasha256.example.")
    assert (q.do, q.transport) == (False, "tcp")
    (q,) = tree.queried(server="127.0.0.51")
    assert q.rd and q.qname == "www.lame.example."
    assert tree.queried("www.ed448.test.") == []  # nothing was sent for that name
    assert len(tree.queries) == 3


# ------------------------------------------------------------------------------ fault knobs


@pytest.fixture
def faulty(request):
    """A tree on OTHER_PORT with the faults of the test's parameter."""
    with start_tree(request.param, port=OTHER_PORT) as t:
        yield t
    assert not t.errors


def other(server, qname, qtype=A, **kw):
    return ask(server, qname, qtype, port=OTHER_PORT, **kw)


@pytest.mark.parametrize("faulty", [{"rsasha256.example.": {"drop": True}}], indirect=True)
def test_drop(faulty):
    with pytest.raises(dns.exception.Timeout):
        other("127.0.0.20", "www.rsasha256.example.", timeout=0.3)
    with pytest.raises(dns.exception.Timeout):
        other("127.0.0.20", "www.rsasha256.example.", timeout=0.3, tcp=True)
    assert len(faulty.queried("www.rsasha256.example.", "A")) == 2  # received, not answered
    assert other("127.0.0.22", "www.ecdsap256.example.").rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("faulty", [{"rsasha256.example.": {"refuse": True},
                                     "127.0.0.22": {"servfail": True}}], indirect=True)
def test_refuse_and_servfail(faulty):
    r = other("127.0.0.20", "www.rsasha256.example.")
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    r = other("127.0.0.22", "www.ecdsap256.example.", tcp=True)
    assert r.rcode() == dns.rcode.SERVFAIL and not r.answer


@pytest.mark.parametrize("faulty", [{"ed448.test.": {"truncate_udp": True}}], indirect=True)
def test_truncate_udp(faulty):
    r = other("127.0.0.25", "www.ed448.test.", retry_tcp=False)
    assert r.flags & dns.flags.TC and not r.answer
    r = other("127.0.0.25", "www.ed448.test.", tcp=True)
    assert not r.flags & dns.flags.TC and find(r.answer, "www.ed448.test.", A)


@pytest.mark.parametrize("faulty", [{"ed448.test.": {"delay_ms": 300}}], indirect=True)
def test_delay(faulty):
    t0 = time.monotonic()
    other("127.0.0.25", "www.ed448.test.")
    assert time.monotonic() - t0 >= 0.29
    t0 = time.monotonic()
    other("127.0.0.25", "www.ed448.test.", tcp=True)
    assert time.monotonic() - t0 >= 0.29
    # The other servers answer meanwhile: one delayed reply does not hold the servers' loop.
    # Ordered by events, not timed: the delayed query has arrived, then another server
    # answers, and only then does the delayed reply come (delayed far beyond a loaded
    # machine's round trip).
    faulty.set_faults("ed448.test.", delay_ms=5000)
    faulty.clear()
    done = threading.Event()
    th = threading.Thread(target=lambda: (other("127.0.0.25", "delayed.ed448.test.",
                                                timeout=30), done.set()))
    th.start()
    try:
        assert wait_for(lambda: faulty.queried("delayed.ed448.test."))
        assert other("127.0.0.24", "www.ed25519.example.").rcode() == dns.rcode.NOERROR
        assert not done.is_set()
    finally:
        th.join(30)
    assert done.is_set()


@pytest.mark.parametrize("faulty", [{"ed448.test.": {"tcp": False}}], indirect=True)
def test_no_tcp(faulty):
    assert other("127.0.0.25", "www.ed448.test.").rcode() == dns.rcode.NOERROR
    with pytest.raises(ConnectionRefusedError):
        other("127.0.0.25", "www.ed448.test.", tcp=True)


@pytest.mark.parametrize("faulty", [{"ed448.test.": {"no_dnssec": True}}], indirect=True)
def test_no_dnssec(faulty):
    r = other("127.0.0.25", "www.ed448.test.")
    assert types(r.answer) == {A} and r.ednsflags & dns.flags.DO
    r = other("127.0.0.25", "nonexistent.ed448.test.")
    assert r.rcode() == dns.rcode.NXDOMAIN and no_dnssec(r)


@pytest.mark.parametrize("faulty", [None], indirect=True)
def test_faults_can_change_while_running(faulty):
    assert other("127.0.0.25", "www.ed448.test.").rcode() == dns.rcode.NOERROR
    faulty.set_faults("ed448.test.", refuse=True)
    assert other("127.0.0.25", "www.ed448.test.").rcode() == dns.rcode.REFUSED
    faulty.set_faults("127.0.0.25", refuse=False)
    assert other("127.0.0.25", "www.ed448.test.").rcode() == dns.rcode.NOERROR
    with pytest.raises(TypeError):
        faulty.set_faults("ed448.test.", explode=True)


def test_faults_must_name_a_started_server():
    with pytest.raises(ValueError):
        start_tree({"unreachable.example.": {"drop": True}}, port=OTHER_PORT)
    with pytest.raises(KeyError):
        start_tree({"nonexistent.example.": {"drop": True}}, port=OTHER_PORT)
    with pytest.raises(TypeError):
        start_tree({"ed448.test.": {"explode": True}}, port=OTHER_PORT)
    assert _thread_count() <= 1


# ------------------------------------------------------------------------------ forwarder


FWD = zonedata.manifest()["forwarder"]


def test_forwarder_answers_as_a_recursive_server(tree):
    r = ask(FWD, "www.fwd.example.", rd=True)
    assert r.flags & dns.flags.RA and r.flags & dns.flags.RD and not r.flags & dns.flags.AA
    a, sigs = find(r.answer, "www.fwd.example.", A), find(r.answer, "www.fwd.example.", RRSIG, A)
    assert validated("fwd.example.", a, sigs).secure
    # DS from the parent side, DNSKEY from the child
    r = ask(FWD, "fwd.example.", DS, rd=True)
    sigs = find(r.answer, "fwd.example.", RRSIG, DS)
    assert sigs[0].signer == N("example.")
    assert validated("example.", find(r.answer, "fwd.example.", DS), sigs).secure
    r = ask(FWD, "fwd.example.", DNSKEY, rd=True)
    assert find(r.answer, "fwd.example.", DNSKEY) is not None
    # CNAMEs are followed across zones; no referrals
    r = ask(FWD, "cname-out.rsasha256.example.", rd=True)
    assert [x.rdtype for x in r.answer] == [CNAME, RRSIG, A, RRSIG]
    r = ask(FWD, "www.dname.ecdsap256.example.", do=False, rd=True)
    assert [x.rdtype for x in r.answer] == [DNAME, CNAME, A]
    r = ask(FWD, "www.insecure.example.", rd=True)
    assert types(r.answer) == {A}
    # negative answers with their proofs
    r = ask(FWD, "nonexistent.fwd.example.", rd=True)
    assert r.rcode() == dns.rcode.NXDOMAIN
    proof = denial.prove_nxdomain(N("nonexistent.fwd.example."), denial_rrsets("fwd.example.", r))
    assert proof.verdict is Verdict.SECURE
    # what no resolver can reach
    for name in ("www.alllame.example.", "www.unreachable.example.", "www.loop1.example."):
        assert ask(FWD, name, rd=True).rcode() == dns.rcode.SERVFAIL
    assert tree.queried("www.fwd.example.", server=FWD)


@pytest.mark.parametrize("scenario", [s for s in zonedata.manifest()["scenarios"]
                                      if "answer" in s], ids=lambda s: s["name"])
def test_the_documented_answers_are_the_data(tree, scenario):
    """tree.json "scenarios": the addresses promised are what the forwarder finds."""
    r = ask(FWD, scenario["qname"], scenario["qtype"], rd=True)
    got = sorted(x.address for rr in r.answer if rr.rdtype in (A, AAAA) for x in rr)
    assert got == sorted(scenario["answer"]), scenario


def test_start_forwarder_on_its_own():
    with start_forwarder(port=OTHER_PORT) as fwd:
        r = ask(FWD, "big.rsasha256.example.", TXT, rd=True, port=OTHER_PORT, retry_tcp=False)
        assert r.flags & dns.flags.TC
        r = ask(FWD, "big.rsasha256.example.", TXT, rd=True, port=OTHER_PORT, tcp=True)
        assert r.flags & dns.flags.RA and find(r.answer, "big.rsasha256.example.", TXT)
        assert list(fwd.servers) == [FWD]
        assert [q.transport for q in fwd.queries] == ["udp", "tcp"]
    assert not fwd.errors


# ------------------------------------------------------------------------------ the command


def test_resolver_yaml_is_current():
    assert (zonedata.HERE / "resolver.yaml").read_text() == authority.resolver_config_text()
    text = authority.resolver_config_text()
    assert 'listen: ["127.0.0.2:53"]' in text
    assert f'"{authority.trust_anchor_lines()[0]}"' in text
    assert f'forward: [{{zone: fwd.example., addresses: ["{FWD}"]}}]' in text


def test_python_m_tests_testtree_runs_until_sigterm():
    root = zonedata.HERE.parent.parent
    p = subprocess.Popen([sys.executable, "-m", "tests.testtree", "--port", str(OTHER_PORT)],
                         cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = []
        for line in p.stdout:
            out.append(line)
            if line.startswith("running"):
                break
        text = "".join(out)
        assert "a.root-servers.test. 127.0.0.10" in text and "trust anchor: . IN DS" in text
        assert "dig -p 10053 @127.0.0.10" in text and f"{FWD}" in text
        assert ask("127.0.0.10", ".", SOA, port=OTHER_PORT).rcode() == dns.rcode.NOERROR
        assert ask(FWD, "www.fwd.example.", port=OTHER_PORT, rd=True).answer
        p.send_signal(signal.SIGTERM)
        rest, err = p.communicate(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "stopped" in rest and not err
