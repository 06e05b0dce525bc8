"""Upstream faults end to end: `dnssec-sidecar serve` against test servers that time out, answer
SERVFAIL, REFUSED or FORMERR, truncate with TCP refused, reset or hang TCP connections, or answer
another question over TCP (the fault knobs of tests/testtree/authority.py).

For each fault: the client gets SERVFAIL with EDE 22 (No Reachable Authority, RFC 8914 §4.23)
whose text names the cause, within the configured query timeout (the EDE text says so, not a
clock: a resolution still running at ``timeouts.query_ms`` is answered "did not finish
within", so the fault's own cause in the text means it ended first); other zones keep resolving;
where a zone has a good server too, the client gets the real answer and the bad server is not
asked again (the resolver's server RTT table, like Unbound's infra cache). A zone whose only
server does not answer at all (a timeout, a network error) is held (RFC 9520): asked again at
once, the name fails from the cached failure with nothing sent, and resolves once the hold ends.

A server answering FORMERR to a query with EDNS is not asked again without EDNS: RFC 6891 §7
allows that retry, but a validating resolver needs the DO bit (RFC 3225 §3), so like PowerDNS
Recursor in validating mode we treat the server as unusable (README: no upstream query is ever
sent without DO).
"""

from __future__ import annotations

import time

import dns.flags
import dns.message
import pytest

from tests.test_resolver import _start, _stop, ask, ede_of
from tests.testtree import authority

RESOLVER = "127.0.0.141"
ONE_SERVER = "insecure.example."  # served by 127.0.0.30 alone
NO_TCP = "insecure.test."  # 127.0.0.31: truncates every UDP answer and has no TCP listener
GOOD, BAD = "127.0.0.50", "127.0.0.51"  # lame.example.'s two servers (ns2, ns1)
#: In the EDE text of a resolution cut off at ``timeouts.query_ms`` (resolver/frontend/resolution.py).
OVERALL_TIMEOUT = "did not finish within"


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree({NO_TCP: {"truncate_udp": True, "tcp": False}}) as running:
        yield running
    assert not running.errors, "\n".join(running.errors)


@pytest.fixture
def resolver(tree, tmp_path):
    """A fresh resolver (empty cache and RTT table)."""
    process = _start(RESOLVER, tmp_path)
    yield
    _stop(process)


def assert_healthy_elsewhere() -> None:
    """A signed zone on another server still resolves, validated."""
    response = ask("www.ed448.test.", server=RESOLVER)
    assert response.rcode() == 0 and response.flags & dns.flags.AD, response


@pytest.mark.parametrize("knobs,cause", [
    ({"drop": True}, "timeout: no answer from 127.0.0.30 over UDP"),
    ({"servfail": True}, "127.0.0.30 answered SERVFAIL"),
    ({"refuse": True}, "127.0.0.30 answered REFUSED"),
    ({"formerr": True}, "127.0.0.30 answered FORMERR"),
    ({"truncate_udp": True, "tcp_reset": True}, "network: TCP to 127.0.0.30"),
    ({"truncate_udp": True, "tcp_hang": True}, "timeout: no answer from 127.0.0.30 over TCP"),
    ({"truncate_udp": True, "tcp_wrong_question": True},
     "mismatch: 127.0.0.30 answered another question over TCP"),
], ids=["timeout", "servfail", "refused", "formerr", "tcp-reset", "tcp-hang",
        "tcp-wrong-question"])
def test_the_only_server_fails(tree, resolver, knobs, cause):
    name = f"fault.{ONE_SERVER}"
    tree.set_faults(ONE_SERVER, **knobs)
    try:
        response = ask(name, server=RESOLVER)
    finally:
        tree.set_faults(ONE_SERVER, **{k: False for k in knobs})
    assert response.rcode() == 2, response
    (code, text), = ede_of(response)
    assert code == 22 and cause in text and OVERALL_TIMEOUT not in text, text
    asked = tree.queried(name, server=ONE_SERVER)
    assert asked and all(q.do for q in asked), asked  # never without EDNS and DO
    assert_healthy_elsewhere()
    tree.clear()
    again = ask(name, server=RESOLVER)
    if cause.startswith(("timeout", "network")):  # an unresponsive server: cached (RFC 9520)
        assert again.rcode() == 2, again
        (code, text), = ede_of(again)
        assert code == 22 and cause in text and "cached failure" in text, text
        assert not tree.queried(server=ONE_SERVER)  # nothing sent while the hold lasts
        for _ in range(100):  # bounded: the first hold is 1 s, then one query tries again
            again = ask(name, server=RESOLVER)
            if again.rcode() != 2:
                break
            time.sleep(0.05)
    assert again.rcode() == 3, again  # healed: an answer (lame answers are not held)


def test_truncated_answer_with_tcp_refused(tree, resolver):
    response = ask(f"www.{NO_TCP}", server=RESOLVER)
    assert response.rcode() == 2, response
    (code, text), = ede_of(response)
    assert code == 22 and "TCP to 127.0.0.31" in text and OVERALL_TIMEOUT not in text, text
    assert tree.queried(f"www.{NO_TCP}", server=NO_TCP, transport="udp")
    assert_healthy_elsewhere()


@pytest.mark.parametrize("knobs", [{"drop": True}, {"refuse": True}, {"servfail": True},
                                   {"formerr": True}],
                         ids=["timeout", "refused", "servfail", "formerr"])
def test_one_bad_server_of_two_is_avoided(tree, resolver, knobs):
    """lame.example. has a good and a bad server: every answer comes through the good one, and
    once the bad one has failed it is not asked again."""
    tree.set_faults(BAD, **knobs)
    try:
        tree.clear()
        names = iter(f"n{i}.lame.example." for i in range(40))
        for name in names:  # bounded: the resolver tries unknown servers in random order
            response = ask(name, server=RESOLVER)  # NXDOMAIN: resolved before query_ms
            assert response.rcode() == 3, response
            if tree.queried(server=BAD):
                break
        assert len(tree.queried(server=BAD)) == 1, "the bad server was never tried"
        for name in [next(names) for _ in range(8)]:
            response = ask(name, server=RESOLVER)
            assert response.rcode() == 3 and not response.flags & dns.flags.AD, response
            assert tree.queried(name, server=GOOD)
        assert len(tree.queried(server=BAD)) == 1, tree.queried(server=BAD)
    finally:
        tree.set_faults(BAD, **{k: False for k in knobs})
    www = ask("www.lame.example.", server=RESOLVER)
    assert [str(rd) for r in www.answer for rd in r] == ["192.0.2.50"]
