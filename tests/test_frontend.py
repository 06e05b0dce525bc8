"""How resolver/frontend/ is wired (issue #16): the compiled hit path is built with what it uses
and holds no reference to the Python frontend; a policy swap reaches both paths at once; a
reply is counted and tapped by one rule (``_fastpath.Report``) whichever path answers it."""

from __future__ import annotations

import asyncio
import gc

import dns.message
import dns.rcode
import yaml

from resolver.config import parse_config
from resolver.frontend.admission import Admission
from resolver.frontend.pipeline import Frontend
from resolver.frontend.policy import Policy
from resolver.frontend.resolution import Resolver
from resolver.ops.metrics import Metrics
from resolver.resolve.cache import Cache
from tests.testtree import memory

LISTENER, CLIENT = ("127.0.0.1", 53), ("127.0.0.2", 5353)
NAME = "www.rsasha256.example."


def _policy(zone: str, service: str = "svc") -> Policy:
    """One service on LISTENER allowing only ``zone``."""
    return Policy(parse_config(yaml.safe_load(f"""
        listen: ["127.0.0.1:53"]
        services:
          - {{name: {service}, listeners: ["127.0.0.1:53"], allow: [{{zone: {zone}}}]}}
    """)))


class Tap:
    """Records the client messages it is given, as resolver.ops.dnstap.Dnstap takes them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def client_query(self, wire, client, listener, transport, t):
        self.calls.append(("query", wire, client, listener, transport, t))

    def client_response(self, wire, reply, client, listener, transport, t_query, t_response):
        self.calls.append(("response", wire, client, listener, transport, t_query, t_response,
                           reply))


def _frontend(policy: Policy | None = None, metrics: Metrics | None = None,
              tap: Tap | None = None) -> Frontend:
    resolver = Resolver(memory.settings(), Cache(), Admission(100, 10, False, 10),
                        exchange=memory.Upstream())
    return Frontend(resolver, policy, None, metrics, tap)


def _ask(frontend: Frontend, name: str = NAME) -> tuple[dns.message.Message, bool]:
    """One client query over UDP, the hit path first as served: the reply and whether the hit
    path answered it."""
    wire = dns.message.make_query(name, "A", want_dnssec=True).to_wire()
    reply = frontend.fast(wire, "udp", LISTENER, CLIENT)
    if reply is not None:
        return dns.message.from_wire(reply), True
    reply = asyncio.run(frontend.handle(wire, "udp", LISTENER, CLIENT, 512))
    return dns.message.from_wire(reply), False


def test_the_hit_path_holds_no_reference_to_the_frontend():
    frontend = _frontend(_policy("rsasha256.example."), Metrics(), Tap())
    referents = gc.get_referents(frontend.hits)
    assert frontend not in referents and frontend.__dict__ not in referents
    assert frontend.wirecache in referents and frontend.report in referents


def test_a_policy_swap_reaches_both_paths_at_once():
    """Neither the answers stored nor the services the hit path matched clients to outlive
    the policy they came from."""
    frontend = _frontend(_policy("rsasha256.example.", "a"))
    assert [_ask(frontend)[1] for _ in range(3)] == [False, False, True]  # kept when repeated
    frontend.use_policy(_policy("rsasha512.test.", "a"))  # the same name, other rules
    refused, hit = _ask(frontend)
    assert not hit and refused.rcode() == dns.rcode.REFUSED
    frontend.use_policy(_policy("rsasha256.example.", "c"))
    answers = [_ask(frontend) for _ in range(3)]  # service c: its own scope, its repeats
    assert [(m.rcode(), hit) for m, hit in answers] == [(dns.rcode.NOERROR, False),
                                                        (dns.rcode.NOERROR, False),
                                                        (dns.rcode.NOERROR, True)]


def test_both_paths_count_a_reply_in_the_same_children():
    metrics = Metrics()
    frontend = _frontend(_policy("rsasha256.example."), metrics)
    assert not _ask(frontend)[1] and not _ask(frontend)[1]  # the hit path keeps a repeat
    (children, count), = metrics.tally.counts.items()
    assert count == 2 and len(children) == 2  # queries_total and validation_total
    assert _ask(frontend)[1]
    assert metrics.tally.counts == {children: 3}
    assert sum(metrics.tally.latency["udp"][:-1]) == 3  # one latency each
    metrics.flush()
    labels = {"service": "svc", "qtype": "A", "rcode": "NOERROR"}
    assert metrics.registry.get_sample_value("dnssec_sidecar_queries_total", labels) == 3
    assert metrics.registry.get_sample_value("dnssec_sidecar_validation_total",
                                             {"verdict": "secure", "reason": ""}) == 3


def test_both_paths_give_the_tap_the_same_client_pair():
    tap = Tap()
    frontend = _frontend(None, None, tap)
    replies = [_ask(frontend) for _ in range(3)]
    assert [hit for _, hit in replies] == [False, False, True]  # the hit path keeps a repeat
    assert [c[0] for c in tap.calls] == ["query", "response"] * 3
    for (_, qwire, *q_rest), (_, rwire, *r_rest) in (tap.calls[0:2], tap.calls[4:6]):
        client, listener, transport, t = q_rest
        r_client, r_listener, r_transport, t_query, t_response, reply = r_rest
        assert qwire == rwire and dns.message.from_wire(qwire).id == \
            dns.message.from_wire(reply).id
        assert (client, listener, transport) == (r_client, r_listener, r_transport) == (
            CLIENT, LISTENER, "udp")
        assert t_query == t and t_response >= t_query


def test_a_full_path_reply_leaves_before_the_bookkeeping_that_follows_its_seal():
    """The reply is given to ``send`` as soon as its record is sealed; dnstap's client
    response, the metrics and storing the answer for the hit path follow, off the client's
    wait (the UDP listener sends this way)."""
    tap = Tap()
    frontend = _frontend(_policy("rsasha256.example."), Metrics(), tap)
    wire = dns.message.make_query(NAME, "A", want_dnssec=True).to_wire()
    sent: list[tuple[bytes, list[str]]] = []

    def send(reply: bytes) -> None:
        sent.append((reply, [call[0] for call in tap.calls]))
    reply = asyncio.run(frontend.handle(wire, "udp", LISTENER, CLIENT, 512, send))
    assert sent == [(reply, ["query"])]
    assert [call[0] for call in tap.calls] == ["query", "response"]
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
