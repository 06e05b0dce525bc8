"""End to end: the real `dnssec-sidecar serve` process resolving the signed test tree, which test
authoritative servers serve on 127.0.0.x, with dnspython as the client.

Every name whose expected outcome tests/testtree/tree.json states is checked for rcode, AD bit
and EDE; then the behaviours a user relies on: DO/AD rules, CD not bypassing validation, no
query without DO, QNAME minimisation, coalescing, truncation, malformed input, faults.
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.testtree import authority, zonedata

RESOLVER = "127.0.0.3"
FRESH = "127.0.0.4"
PORT = 53
ROOT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree(forwarder=True) as running:
        yield running


def _config_text(address: str, extra: str = "",
                 timeouts: str = "{upstream_ms: 300, query_ms: 4000}") -> str:
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    return (f'listen: ["{address}:{PORT}"]\n'
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            f"{authority.outgoing_line()}\n"
            f'forward: [{{zone: fwd.example., addresses: ["{manifest["forwarder"]}"]}}]\n'
            f"timeouts: {timeouts}\n"
            f'metrics: {{listen: "{address}:9153"}}\n'
            # The tests ask many names in a row from one address, and failures come back in
            # under a millisecond: faster than the default miss rate (test_record_faults).
            + ("" if "limits:" in extra else "limits: {max_misses_per_client_per_second: 0}\n")
            + extra)


def _start(address: str, directory: Path, extra: str = ""):
    config = directory / "config.yaml"
    config.write_text(_config_text(address, extra))
    process = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                str(config), "-v"], cwd=ROOT_DIR, stderr=subprocess.PIPE,
                               text=True)
    for _ in range(1200):  # bounded wait for the listener: 60 s, a loaded machine is slow
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.2)
                probe.connect((address, PORT))
            return process
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stderr.read())
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"the resolver did not start on {address}")


def _stop(process) -> None:
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def resolver(tree, tmp_path_factory):
    process = _start(RESOLVER, tmp_path_factory.mktemp("resolver"))
    yield RESOLVER
    _stop(process)


@pytest.fixture
def fresh(tree, tmp_path):
    """A resolver with an empty cache, for tests that watch the queries it sends."""
    process = _start(FRESH, tmp_path)
    tree.clear()
    yield FRESH
    _stop(process)


def ask(name: str, rdtype: str = "A", *, dnssec: bool = True, cd: bool = False, ad: bool = False,
        tcp: bool = False, edns: bool = True, server: str = RESOLVER,
        follow_tc: bool = True) -> dns.message.Message:
    """Query like a stub resolver: UDP, then TCP when the answer is truncated."""
    query = dns.message.make_query(name, rdtype, want_dnssec=dnssec, use_edns=0 if edns else None)
    query.flags |= (dns.flags.CD if cd else 0) | (dns.flags.AD if ad else 0)
    if tcp:
        return dns.query.tcp(query, server, port=PORT, timeout=8)
    response = dns.query.udp(query, server, port=PORT, timeout=8)
    if follow_tc and response.flags & dns.flags.TC:
        return dns.query.tcp(query, server, port=PORT, timeout=8)
    return response


def ede_of(response: dns.message.Message) -> list[tuple[int, str]]:
    return [(int(o.code), o.text or "") for o in response.options
            if o.otype == dns.edns.EDE]


def expectations():
    """(name, type, expectation text) for every unconditional expectation in tree.json."""
    manifest = zonedata.manifest()
    zones = {**manifest["zones"], **manifest.get("scenario_zones", {})}
    for zone, entry in sorted(zones.items()):
        for key, text in sorted(entry.get("expect", {}).get("names", {}).items()):
            if re.search(r"\b(if|when|unless)\b", text):
                continue  # depends on settings other than the defaults
            name, rdtype = key.rsplit(" ", 1)
            yield pytest.param(name, rdtype, text, id=key)


@pytest.mark.parametrize("name,rdtype,expected", list(expectations()))
def test_every_name_of_the_tree(resolver, name, rdtype, expected):
    check_expected(ask(name, rdtype), expected)


def check_expected(response: dns.message.Message, expected: str) -> None:
    """``response`` as tree.json's expectation text ``expected`` says: rcode, answers or
    NODATA, AD, EDE."""
    rcode = dns.rcode.to_text(response.rcode())
    ede = [code for code, _ in ede_of(response)]
    secure = bool(response.flags & dns.flags.AD)
    if "SERVFAIL" in expected or "BOGUS" in expected:
        assert rcode == "SERVFAIL", (rcode, ede)
        wanted = re.search(r"EDE (\d+)", expected)
        if wanted:
            assert int(wanted.group(1)) in ede, ede_of(response)
        assert ede, "a SERVFAIL always says why"
        return
    if "NXDOMAIN" in expected:
        assert rcode == "NXDOMAIN", ede_of(response)
    else:
        assert rcode == "NOERROR", ede_of(response)
        answers = [r for r in response.answer if r.rdtype != dns.rdatatype.RRSIG]
        assert bool(answers) == ("NODATA" not in expected), response
    if "INSECURE" in expected:
        assert not secure
    elif "SECURE" in expected:
        assert secure, response
    if re.search(r"EDE (\d+)", expected):
        assert int(re.search(r"EDE (\d+)", expected).group(1)) in ede


def test_secure_answer_carries_rrsigs_only_with_do(resolver):
    with_do = ask("www.rsasha256.example.")
    assert with_do.flags & dns.flags.AD
    assert any(r.rdtype == dns.rdatatype.RRSIG for r in with_do.answer)
    plain = ask("www.rsasha256.example.", dnssec=False)
    assert not plain.flags & dns.flags.AD  # RFC 6840 §5.8: AD only when asked for by DO or AD
    assert all(r.rdtype != dns.rdatatype.RRSIG for r in plain.answer)
    asked_ad = ask("www.rsasha256.example.", dnssec=False, ad=True)
    assert asked_ad.flags & dns.flags.AD


def test_cd_bit_does_not_bypass_validation(resolver):
    for name in ("www.badsig.test.", "www.expired.example.", "www.nosig.test."):
        response = ask(name, cd=True)
        assert dns.rcode.to_text(response.rcode()) == "SERVFAIL"
        assert not [r for r in response.answer if r.rdtype == dns.rdatatype.A]


def test_servfail_text_names_zone_and_reason(resolver):
    (code, text), = ede_of(ask("www.badsig.test."))
    assert code == 6 and "badsig.test." in text and "does not verify" in text


def test_no_query_leaves_without_do(tree, fresh):
    ask("www.ecdsap384.test.", server=fresh)
    ask("nonexistent.ed448.test.", server=fresh)
    assert tree.queries
    assert all(q.do for q in tree.queries), [q for q in tree.queries if not q.do]


def test_qname_minimisation(tree, fresh):
    ask("a.b.c.ed25519.example.", "TXT", server=fresh)
    root_queries = tree.queried(server="127.0.0.10")
    assert root_queries
    assert all(q.qname in (".", "example.") for q in root_queries), root_queries


def test_concurrent_identical_queries_share_one_resolution(tree, fresh):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ask("www.rsasha512.test.", "AAAA", server=fresh),
                                range(8)))
    assert all(r.rcode() == dns.rcode.NOERROR for r in results)
    assert len(tree.queried("www.rsasha512.test.", "AAAA")) == 1


def test_cached_answer_counts_down(resolver):
    first = ask("www.ed448.test.", "AAAA")
    time.sleep(1.1)
    second = ask("www.ed448.test.", "AAAA")
    a1 = next(r for r in first.answer if r.rdtype == dns.rdatatype.AAAA)
    a2 = next(r for r in second.answer if r.rdtype == dns.rdatatype.AAAA)
    assert a2.ttl < a1.ttl


def test_truncated_over_udp_then_tcp(tree, fresh):
    # About 3000 bytes of TXT: the authoritative server truncates at 1232, the resolver
    # retries over TCP upstream, and truncates to its own client, who retries over TCP.
    response = ask("big.rsasha256.example.", "TXT", server=fresh, follow_tc=False)
    assert response.flags & dns.flags.TC and not response.answer
    assert tree.queried("big.rsasha256.example.", "TXT", transport="tcp")
    full = ask("big.rsasha256.example.", "TXT", server=fresh, tcp=True)
    assert full.flags & dns.flags.AD and full.answer
    tree.clear()  # cached now: UDP is truncated unrendered, TCP served from the cache
    again = ask("big.rsasha256.example.", "TXT", server=fresh, follow_tc=False)
    assert again.flags & dns.flags.TC and again.flags & dns.flags.AD and not again.answer
    assert again.edns == 0 and again.ednsflags & dns.flags.DO
    assert ask("big.rsasha256.example.", "TXT", server=fresh).answer == full.answer
    assert not tree.queries
    no_edns = ask("www.rsasha256.example.", "A", server=fresh, edns=False, follow_tc=False)
    assert not no_edns.flags & dns.flags.TC  # small answers fit in 512 bytes


def test_forwarded_zone_is_validated(tree, fresh):
    response = ask("www.fwd.example.", server=fresh)
    assert response.flags & dns.flags.AD
    assert tree.queried("www.fwd.example.", "A", server="127.0.0.60")
    assert not tree.queried("www.fwd.example.", "A", server="127.0.0.57")


def test_malformed_and_unsupported_queries(resolver):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ab", (RESOLVER, PORT))
        reply = sock.recv(512)
        assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
        sock.sendto(b"\x01", (RESOLVER, PORT))  # too short to answer: dropped
        with pytest.raises(socket.timeout):
            sock.settimeout(0.3)
            sock.recv(512)
    chaos = dns.message.make_query("version.bind.", "TXT", rdclass="CH")
    assert dns.query.udp(chaos, RESOLVER, port=PORT, timeout=3).rcode() == dns.rcode.REFUSED
    axfr = dns.message.make_query("example.", "AXFR")
    assert dns.query.udp(axfr, RESOLVER, port=PORT, timeout=3).rcode() == dns.rcode.NOTIMP
    any_reply = dns.query.udp(dns.message.make_query("example.", "ANY", use_edns=0), RESOLVER,
                              port=PORT, timeout=3)  # as README.md says
    assert any_reply.rcode() == dns.rcode.NOTIMP
    assert [(o.code, o.text) for o in any_reply.options] == [(21, "ANY is not served")]
    for _ in range(2):  # and again, not from the cache either (resolver/wire.py)
        rrsig = ask("www.rsasha256.example.", "RRSIG")
        assert rrsig.rcode() == dns.rcode.NOTIMP and not rrsig.answer
        assert ede_of(rrsig) == [(21, "RRSIG is not served")]
    # The server keeps serving after all that.
    assert ask("www.rsasha256.example.").rcode() == dns.rcode.NOERROR


def test_insecure_answers_say_why(resolver):
    response = ask("www.unknownalg.example.")
    assert response.rcode() == dns.rcode.NOERROR and not response.flags & dns.flags.AD
    assert [code for code, _ in ede_of(response)] == [1]  # Unsupported DNSKEY Algorithm
    assert not ede_of(ask("www.insecure.example."))  # plainly unsigned: nothing to say


def test_negative_trust_anchor(tree, tmp_path):
    """An NTA (RFC 7646) turns a broken zone insecure, only below it; its use is logged."""
    process = _start(FRESH, tmp_path, "negative_trust_anchors: [badsig.test.]\n")
    try:
        response = ask("www.badsig.test.", server=FRESH)
        assert response.rcode() == dns.rcode.NOERROR and not response.flags & dns.flags.AD
        assert ask("www.nosig.test.", server=FRESH).rcode() == dns.rcode.SERVFAIL
        assert ask("www.ecdsap384.test.", server=FRESH).flags & dns.flags.AD
    finally:
        _stop(process)
    assert "negative trust anchor badsig.test." in process.stderr.read()
