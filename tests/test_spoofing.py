"""Forged answers raced against the real upstream, end to end through `dnssec-sidecar serve`.

A forger sits in the test servers' reply path (the ``forge`` knob of tests/testtree/authority.py):
it sees each query the resolver sends, with its source address, port and ID, and sends forged
datagrams before the real reply. Transport checks (RFC 5452 §9.1: connected sockets, ID,
question) must drop what is off-path; bailiwick rules (RFC 2181 §5.4.1, RFC 1034 §4.2.2) must
drop what the winning reply carries beyond the zone it came from; DNSSEC must catch forged data
in signed zones (SERVFAIL with an EDE, never AD, never cached). Nothing forged may reach a
client, the cache or the forensic log.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Callable

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tests.test_resolver import _start, _stop, ask, ede_of
from tests.testtree import authority

RESOLVER = "127.0.0.140"
FORGER_ADDRESS = "127.0.0.131"  # a forger's own address (the wrong source)
HOSTILE = "127.0.0.135"  # a hostile authority the forged glue points at
FORGED = "198.51.100.66"  # every forged address record carries this
INSECURE = "insecure.example."
SIGNED = "ecdsap256.example."


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running
    assert not running.errors, "\n".join(running.errors)


@pytest.fixture(scope="module")
def hostile():
    """A server at the address forged glue names: it serves nothing (REFUSED) and records every
    query it gets."""
    queries: list[authority.Query] = []
    with authority.Tree([authority.Server(HOSTILE, queries=queries)], queries).start() as running:
        yield running


class Resolver:
    """A fresh `dnssec-sidecar serve` with its forensic log in a file."""

    def __init__(self, directory) -> None:
        self.log = directory / "lookups.log"
        self.process = _start(RESOLVER, directory, f'log: {{path: "{self.log}"}}\n')

    def ask(self, name: str, rdtype: str = "A") -> dns.message.Message:
        return ask(name, rdtype, server=RESOLVER)

    def ignored(self) -> dict[str, int]:
        """The upstream packets it ignored, by reason, from its /metrics."""
        with urllib.request.urlopen(f"http://{RESOLVER}:9153/metrics", timeout=5) as page:
            text = page.read().decode()
        return {m[0]: int(float(m[1])) for m in re.findall(
            r'^dnssec_sidecar_upstream_ignored_total\{reason="(\w+)"\} (\S+)$', text, re.M)}

    def stop(self) -> str:
        """Stop (which flushes the log) and return the log."""
        _stop(self.process)
        return self.log.read_text()


@pytest.fixture
def resolver(tree, tmp_path):
    running = Resolver(tmp_path)
    yield running
    if running.process.poll() is None:
        _stop(running.process)


class Forger:
    """The ``forge`` hook: for each UDP query ``wanted`` picks, sends the datagrams ``make``
    builds from the query and the real reply, before the real reply. Each item of ``make``'s
    list is (wire, where): where is "server" (from the server's own address), "source" (from
    another address) or "port" (from the server's address to another port of the resolver)."""

    def __init__(self, wanted: Callable[[dns.message.Message], bool],
                 make: Callable[[dns.message.Message, dns.message.Message], list]) -> None:
        self.wanted, self.make = wanted, make
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((FORGER_ADDRESS, 0))

    def __call__(self, transport, query_wire: bytes, reply_wire: bytes | None, addr) -> None:
        query = dns.message.from_wire(query_wire)
        if reply_wire is None or not self.wanted(query):
            return
        self.queries += 1
        for wire, where in self.make(query, dns.message.from_wire(reply_wire)):
            if where == "source":
                self.sock.sendto(wire, addr)
            elif where == "port":
                transport.sendto(wire, (addr[0], addr[1] ^ 1))
            else:
                transport.sendto(wire, addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def forge(tree):
    """Install forgers on servers: ``forge(zone, wanted, make)``; removed after the test."""
    installed = []

    def install(zone: str, wanted, make) -> Forger:
        forger = Forger(wanted, make)
        tree.set_faults(zone, forge=forger)
        installed.append((zone, forger))
        return forger

    yield install
    for zone, forger in installed:
        tree.set_faults(zone, forge=None)
        forger.close()


def asks(name: str, rdtype: str = "A") -> Callable[[dns.message.Message], bool]:
    """A ``wanted`` predicate: queries for exactly this name and type."""
    qname, qtype = dns.name.from_text(name), dns.rdatatype.from_text(rdtype)
    return lambda q: q.question[0].name == qname and q.question[0].rdtype == qtype


def under(zone: str) -> Callable[[dns.message.Message], bool]:
    """A ``wanted`` predicate: queries for names at or below ``zone``, except DS."""
    origin = dns.name.from_text(zone)
    return lambda q: (q.question[0].name.is_subdomain(origin)
                      and q.question[0].rdtype != dns.rdatatype.DS)


def forged_reply(query: dns.message.Message, *, name: str | None = None,
                 rdtype: int | None = None, rdclass: int | None = None) -> dns.message.Message:
    """An authoritative reply to ``query`` (or to the question changed as given) whose answer is
    the forged address."""
    q = query.question[0]
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    owner = dns.name.from_text(name) if name else q.name
    reply.question = [dns.rrset.RRset(owner, rdclass or q.rdclass, rdtype or q.rdtype)]
    reply.answer = [dns.rrset.from_text(q.name, 300, "IN", "A", FORGED)]
    return reply


def rrs(*lines: str) -> list[dns.rrset.RRset]:
    return [dns.rrset.from_text(*line.split()) for line in lines]


def texts(response: dns.message.Message) -> str:
    return "\n".join(r.to_text() for r in response.answer + response.authority
                     + response.additional)


def assert_clean(response: dns.message.Message) -> None:
    assert FORGED not in texts(response), response


# --- transport: what an off-path forger can send is dropped ----------------------------------

def _off_path(query: dns.message.Message, real: dns.message.Message) -> list:
    """Forgeries a forger who knows everything but cannot win every field sends: each carries
    the forged address. Seen by the resolver and ignored: wrong ID, wrong name, type, class,
    two questions, unparseable, not a reply. Dropped by the kernel: right everything from
    another address, right everything to another port."""
    good = forged_reply(query)
    wrong_id = forged_reply(query)
    wrong_id.id = query.id ^ 0x5A5A
    two = forged_reply(query)
    two.question.append(dns.rrset.RRset(dns.name.from_text("x.insecure.example."),
                                        dns.rdataclass.IN, dns.rdatatype.A))
    not_reply = forged_reply(query)
    not_reply.flags &= ~dns.flags.QR
    header = good.to_wire()[:12]
    return [
        (wrong_id.to_wire(), "server"),
        (good.to_wire(), "source"),
        (good.to_wire(), "port"),
        (forged_reply(query, name=f"other.{INSECURE}").to_wire(), "server"),
        (forged_reply(query, rdtype=dns.rdatatype.AAAA).to_wire(), "server"),
        (forged_reply(query, rdclass=dns.rdataclass.CH).to_wire(), "server"),
        (two.to_wire(), "server"),
        (header + b"\x03www\xc0", "server"),  # right ID, cut inside the question
        (not_reply.to_wire(), "server"),
    ]


OFF_PATH_SEEN = {"id": 1, "question": 4, "unparseable": 1, "not_reply": 1}


def test_off_path_forgeries_are_ignored_and_counted(resolver, forge):
    """In an unsigned zone only the transport checks stand between a forger and the cache."""
    forger = forge(INSECURE, under(INSECURE), _off_path)
    before = resolver.ignored()
    response = resolver.ask(f"www.{INSECURE}")
    assert response.rcode() == 0 and not response.flags & dns.flags.AD
    assert [str(rd) for r in response.answer for rd in r] == ["192.0.2.30"]
    assert forger.queries >= 1
    after = resolver.ignored()
    counted = {k: after.get(k, 0) - before.get(k, 0) for k in OFF_PATH_SEEN}
    assert counted == {k: v * forger.queries for k, v in OFF_PATH_SEEN.items()}, after
    # The wait went on past every forgery: the unparseable one no longer ends it (RFC 5452 §9.1).
    again = resolver.ask(f"ns.{INSECURE}")
    assert [str(rd) for r in again.answer for rd in r] == ["127.0.0.30"]
    assert FORGED not in resolver.stop()


# --- bailiwick: what a winning reply carries beyond its zone is not taken --------------------

def _poisoned(query: dns.message.Message, real: dns.message.Message) -> list:
    """The real answer plus records for other zones in every section: forged glue for the root,
    a TLD and a signed zone, their NS, an out-of-bailiwick answer record."""
    reply = dns.message.make_response(query)
    reply.flags = real.flags
    reply.answer = real.answer + rrs(f"www.{SIGNED} 300 IN A {FORGED}")
    reply.authority = rrs(f"{SIGNED} 300 IN NS ns.{SIGNED}", "test. 300 IN NS ns.test.",
                          ". 300 IN NS evil.")
    reply.additional = rrs(f"ns.{SIGNED} 300 IN A {HOSTILE}", f"ns.test. 300 IN A {HOSTILE}",
                           f"a.root-servers.test. 300 IN A {HOSTILE}",
                           f"ns.insecure.test. 300 IN A {HOSTILE}")
    return [(reply.to_wire(), "server")]


def test_records_beyond_the_zone_are_never_taken(resolver, forge, hostile):
    forge(INSECURE, asks(f"ns.{INSECURE}"), _poisoned)
    first = resolver.ask(f"ns.{INSECURE}")
    assert [str(rd) for r in first.answer for rd in r] == ["127.0.0.30"]
    assert_clean(first)
    # The names the forged records spoke of resolve from their own zones.
    signed = resolver.ask(f"www.{SIGNED}")
    assert signed.flags & dns.flags.AD and FORGED not in texts(signed)
    for name in ("www.insecure.test.", "nonexistent.test.", "nosuch."):
        assert_clean(resolver.ask(name))
    assert not hostile.queries, hostile.queries
    assert FORGED not in resolver.stop()


def _dname_above(query: dns.message.Message, real: dns.message.Message) -> list:
    """A DNAME owned by the parent zone, served by the child: out of its bailiwick."""
    reply = forged_reply(query)
    reply.answer = rrs("example. 300 IN DNAME evil.test.",
                       f"{query.question[0].name.relativize(dns.name.from_text('example.'))}"
                       f".evil.test. 300 IN A {FORGED}")
    return [(reply.to_wire(), "server")]


def _cname_out(query: dns.message.Message, real: dns.message.Message) -> list:
    """An in-zone CNAME (a winning forger may say this for an unsigned zone) with a forged
    record for its target in another, signed zone."""
    reply = forged_reply(query)
    reply.answer = rrs(f"{query.question[0].name} 300 IN CNAME www.rsasha512.test.",
                       f"www.rsasha512.test. 300 IN A {FORGED}")
    return [(reply.to_wire(), "server")]


def test_dname_and_cname_targets_beyond_the_zone(resolver, forge):
    dname_name, cname_name = asks(f"nx.{INSECURE}"), asks(f"alias.{INSECURE}")
    forge(INSECURE, lambda q: dname_name(q) or cname_name(q),
          lambda q, r: (_cname_out if cname_name(q) else _dname_above)(q, r))
    dname = resolver.ask(f"nx.{INSECURE}")
    assert "DNAME" not in texts(dname) and "evil" not in texts(dname), dname
    assert_clean(dname)
    alias = resolver.ask(f"alias.{INSECURE}")
    assert_clean(alias)
    # The target is resolved in its own zone: the real, validated address.
    assert ["192.0.2.21"] == [str(rd) for r in alias.answer if r.rdtype == dns.rdatatype.A
                              for rd in r], alias
    assert FORGED not in resolver.stop()


def _referral(ns: str, glue: str):
    def make(query: dns.message.Message, real: dns.message.Message) -> list:
        """A forged referral for ed25519.example. to ``ns`` with glue to the hostile server."""
        reply = dns.message.make_response(query)
        reply.authority = rrs(f"ed25519.example. 3600 IN NS {ns}")
        reply.additional = rrs(f"{glue} 3600 IN A {HOSTILE}")
        return [(reply.to_wire(), "server")]
    return make


@pytest.mark.parametrize("ns,glue,hostile_asked", [
    ("ns.evil.test.", "ns.evil.test.", False),  # glue outside example.'s bailiwick: ignored
    ("ns.ed25519.example.", "ns.ed25519.example.", True),  # in bailiwick: followed, and fails
], ids=["out-of-bailiwick-glue", "in-bailiwick-glue"])
def test_forged_delegation(resolver, forge, hostile, tree, ns, glue, hostile_asked):
    """A forged referral that wins the race is never turned into forged data, and is not kept:
    once the forger stops the real delegation is found."""
    hostile.clear()
    forge("example.", under("ed25519.example."), _referral(ns, glue))
    response = resolver.ask("www.ed25519.example.")
    assert response.rcode() == 2 and not response.flags & dns.flags.AD, response
    assert 22 in [code for code, _ in ede_of(response)], ede_of(response)
    assert bool(hostile.queries) == hostile_asked, hostile.queries
    tree.set_faults("example.", forge=None)
    real = resolver.ask("www.ed25519.example.")
    assert real.rcode() == 0 and real.flags & dns.flags.AD, real
    assert ["192.0.2.24"] == [str(rd) for r in real.answer if r.rdtype == dns.rdatatype.A
                              for rd in r]


# --- DNSSEC: a reply that beats every transport check is still caught ------------------------

def _unsigned(query: dns.message.Message, real: dns.message.Message) -> list:
    return [(forged_reply(query).to_wire(), "server")]


def _resigned(query: dns.message.Message, real: dns.message.Message) -> list:
    """The forged address under the real RRSIG of the real RRset."""
    reply = forged_reply(query)
    reply.answer += [r for r in real.answer if r.rdtype == dns.rdatatype.RRSIG]
    return [(reply.to_wire(), "server")]


def _other_case(query: dns.message.Message, real: dns.message.Message) -> list:
    """The question echoed in other letter case (the same question, RFC 1035 §2.3.3)."""
    return [(forged_reply(query, name=query.question[0].name.to_text().upper()).to_wire(),
             "server")]


@pytest.mark.parametrize("name,make,ede", [
    (f"www.{SIGNED}", _unsigned, 10),
    (f"mail.{SIGNED}", _resigned, 6),
    (f"a.b.c.{SIGNED}", _other_case, 10),
], ids=["unsigned", "wrong-signature", "question-in-other-case"])
def test_signed_zone_forgeries_are_bogus_and_not_cached(resolver, forge, tree, name, make, ede):
    forge(SIGNED, asks(name), make)
    before = len(tree.queried(name, "A", server=SIGNED))
    response = resolver.ask(name)
    assert response.rcode() == 2 and not response.flags & dns.flags.AD, response
    assert ede in [code for code, _ in ede_of(response)], ede_of(response)
    assert_clean(response)
    tree.set_faults(SIGNED, forge=None)
    real = resolver.ask(name)
    assert real.rcode() == 0 and real.flags & dns.flags.AD, real
    assert_clean(real)
    assert len(tree.queried(name, "A", server=SIGNED)) == before + 2  # asked again: not cached
    assert FORGED not in resolver.stop()
