"""An on-path attacker without private keys cannot downgrade the resolver (issue #15).

The signed test tree runs at another port, served by our test servers and again by NSD (an
authoritative server we did not write, when installed); the relay (tests/onpath/relay.py) sits
on the addresses the resolver asks and rewrites chosen replies (tests/onpath/attacks.py). Each
case runs against a fresh dnssec-sidecar and a fresh Unbound (the reference) and checks:

1. the forged data never reaches the client: SERVFAIL with an EDE whose text names the zone
   (Unbound's texts name the query, "validation failure <www.z. A IN>: ..."), or for records
   out of zone, the honest answer;
2. names the rewrite leaves alone are still Secure while it runs;
3. once the relay is honest again, the same question gets the true answer, Secure (or, where
   a zone's chain of trust was broken, the failure remembered, RFC 9520): no forged cut, key
   or answer was left in a cache.
"""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from tests.onpath import resolvers
from tests.onpath.attacks import ATTACKS, Attack
from tests.onpath.relay import FORGED_A, FORGED_AAAA, Relay
from tests.test_resolver import ede_of
from tests.testtree import NOW, authority, nsd, zonedata

UPSTREAM_PORT = 10053  # the real tree; the relay takes port 53 on the same addresses
ADDRESS = {"dnssec-sidecar": "127.0.0.171", "unbound": "127.0.0.172"}  # the resolvers under test


def _kinds():
    for kind in resolvers.KINDS:
        marks = []
        if kind == "unbound" and resolvers.UNBOUND is None:
            marks.append(pytest.mark.skip(reason="unbound not installed "
                                                 "(apt-get install unbound)"))
        yield pytest.param(kind, marks=marks, id=kind)


def _cases():
    for attack in ATTACKS:
        for kind in _kinds():
            reason = attack.known.get(kind.values[0])
            marks = list(kind.marks)
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            yield pytest.param(attack, kind.values[0], marks=marks,
                               id=f"{attack.name}-{kind.values[0]}")


@pytest.fixture(scope="module", params=[
    "tree", pytest.param("nsd", marks=pytest.mark.skipif(
        not nsd.available(), reason="NSD not installed (apt-get install nsd)"))])
def relay(request, tmp_path_factory):
    """The relay in front of the signed tree, served by our test servers (``tree``) or by NSD
    (``nsd``, tests/testtree/nsd.py: the honest replies are then an authoritative server's we
    did not write; the lame and hostile servers, authority.py's own, are not there)."""
    addresses = [a for a, s in zonedata.manifest()["servers"].items()
                 if s["role"] in ("authoritative", "lame", "hostile")]
    if request.param == "nsd":
        with nsd.NsdTree(tmp_path_factory.mktemp("nsd"), port=UPSTREAM_PORT), \
                Relay(addresses, UPSTREAM_PORT) as running:
            yield running
    else:
        with authority.start_tree(port=UPSTREAM_PORT) as tree, \
                Relay(addresses, UPSTREAM_PORT) as running:
            yield running
            assert not tree.errors, "\n".join(tree.errors)
    assert not running.errors, "\n".join(running.errors)


@pytest.fixture
def relay_honest(relay):
    relay.rewrite = None
    yield relay
    relay.rewrite = None


def _start(kind: str, directory) -> resolvers.Resolver:
    m = zonedata.manifest()
    return resolvers.start(kind, ADDRESS[kind], directory, hints=list(m["root_hints"].items()),
                           anchors=authority.trust_anchor_lines(m), now=NOW)


def _data(response) -> list[str]:
    return [rd.to_text() for r in response.answer + response.authority + response.additional
            if r.rdtype != dns.rdatatype.RRSIG for rd in r]


def _assert_secure(r: resolvers.Resolver, name: str, rdtype: str, rcode: str = "NOERROR"):
    response = r.ask(name, rdtype)
    assert dns.rcode.to_text(response.rcode()) == rcode, (name, ede_of(response))
    assert response.flags & dns.flags.AD, f"{name} {rdtype} not Secure: {response}"
    assert FORGED_A not in _data(response) and FORGED_AAAA not in _data(response)
    return response


@pytest.mark.parametrize("attack,kind", list(_cases()))
def test_onpath_attack(relay_honest, tmp_path, attack: Attack, kind: str):
    relay = relay_honest
    with _start(kind, tmp_path) as r:
        relay.rewrite = attack.rewrite
        response = r.ask(attack.qname, attack.qtype)
        assert relay.rewritten, "the rewrite never applied: the case tests nothing"
        data = _data(response)
        assert FORGED_A not in data and FORGED_AAAA not in data, response
        if attack.expect == "servfail":
            assert response.rcode() == dns.rcode.SERVFAIL, response
            assert not [x for x in response.answer if x.rdtype != dns.rdatatype.RRSIG], response
            ede = ede_of(response)
            assert ede, "a SERVFAIL says why (RFC 8914)"
            text = " ".join(t for _, t in ede)
            assert any(z in text for z in attack.zones), ede
        else:
            assert dns.rcode.to_text(response.rcode()) == attack.honest_rcode, response
            assert response.flags & dns.flags.AD, response
            assert "www.insecure.example." not in data, response
        for name, rdtype in attack.bystanders:  # untouched names stay Secure meanwhile
            _assert_secure(r, name, rdtype)
        relay.rewrite = None  # honest again: nothing forged may have been kept
        _assert_recovered(r, attack)


def _assert_recovered(r: resolvers.Resolver, attack: Attack) -> None:
    """The question asked again once the relay is honest: the true answer, Secure; or, where
    the attack broke a zone's chain of trust (``remembered``), a SERVFAIL that remembers it
    (RFC 9520 §3.2). Never an answer without AD: that would be a forged cut or denial kept."""
    response = r.ask(attack.qname, attack.qtype)
    data = _data(response)
    assert FORGED_A not in data and FORGED_AAAA not in data, response
    if r.kind in attack.remembered and response.rcode() == dns.rcode.SERVFAIL:
        assert ede_of(response), response
        return
    assert dns.rcode.to_text(response.rcode()) == attack.honest_rcode, response
    assert response.flags & dns.flags.AD, response
