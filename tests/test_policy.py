"""Per-service policy (resolver.frontend.policy): name matching, rules, answers, rebinding,
budgets and the choice of service."""

from __future__ import annotations

import dataclasses
import ipaddress
import textwrap

import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.config import AllowRule, Budgets, Config, Endpoint, Service, parse_config
from resolver.dnssec import Verdict
from resolver.frontend.policy import Decision, Policy, special_range

N = dns.name.from_text
A, AAAA, TXT, SRV, ANY = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.TXT,
                          dns.rdatatype.SRV, dns.rdatatype.ANY)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(text: str) -> Config:
    return parse_config(yaml.safe_load(textwrap.dedent(text)))


def policy_for(allow: str, extra: str = "", clock: Clock | None = None) -> tuple[Policy, Service]:
    """A policy with one service ``svc`` (on 127.0.0.1:53) allowing ``allow`` (a YAML list)."""
    conf = config(f"""
        listen: ["127.0.0.1:53"]
        services:
          - name: svc
            listeners: ["127.0.0.1:53"]
            allow: {allow}
            {extra}
    """)
    policy = Policy(conf, clock=clock or Clock())
    return policy, conf.services[0]


# --- name matching ----------------------------------------------------------------------------

MATCHING = [
    # (allowed zones, qname, the zone of the rule that must match, or None)
    (["example.com."], "example.com.", "example.com."),
    (["example.com."], "www.example.com.", "example.com."),
    (["example.com."], "EXAMPLE.com.", "example.com."),
    (["example.com."], "WwW.ExAmPlE.CoM.", "example.com."),
    (["Example.COM."], "www.example.com.", "example.com."),
    (["example.com."], "evil-example.com.", None),
    (["example.com."], "evilexample.com.", None),
    (["example.com."], "example.com.evil.net.", None),
    (["example.com."], "www.example.com.evil.net.", None),
    (["example.com."], "com.", None),
    (["example.com."], "example.co.", None),
    (["example.com."], "*.example.com.", "example.com."),
    (["example.com."], "\\000.example.com.", "example.com."),
    (["example.com."], "a\\000.example.com.", "example.com."),
    (["example.com."], "example\\000.com.", None),
    (["example.com."], "example\\.com.", None),           # one label "example.com", at the root
    (["example.com."], "example\\046com.", None),
    (["example.com."], "www.example\\.com.", None),
    (["example.com."], "\\.example.com.", None),            # labels ".example", "com"
    (["example.com."], "x\\..example.com.", "example.com."),  # labels "x.", "example", "com"
    (["example.com.", "b.example.com."], "a\\046b.example.com.", "example.com."),
    (["example.com.", "b.example.com."], "a\\.b.example.com.", "example.com."),
    (["example.com.", "b.example.com."], "a.b.example.com.", "b.example.com."),
    (["example.com.", "b.example.com."], "A.B.EXAMPLE.COM.", "b.example.com."),
    (["b.example.com."], "a\\046b.example.com.", None),
    (["b.example.com."], "ab.example.com.", None),
    (["b.example.com."], "example.com.", None),
    (["com."], "com.", "com."),
    (["com."], "example.com.", "com."),
    (["com."], "xcom.", None),
    (["com."], "co.", None),
    (["com."], "com.net.", None),
    (["."], ".", "."),
    (["."], "com.", "."),
    (["."], "anything.at.all.", "."),
    (["."], "\\000.", "."),
    (["xn--bcher-kva.example."], "www.XN--BCHER-KVA.example.", "xn--bcher-kva.example."),
    ([], "example.com.", None),
]


@pytest.mark.parametrize("zones, qname, expected", MATCHING,
                         ids=[f"{'+'.join(z) or 'none'}:{q}" for z, q, _ in MATCHING])
def test_matching(zones, qname, expected):
    allow = "[" + ", ".join(f"{{zone: '{zone}', require: insecure-ok}}" for zone in zones) + "]"
    policy, service = policy_for(allow)
    name = N(qname)
    rule = policy.rule_for(service, name)
    assert (None if rule is None else rule.zone) == (None if expected is None else N(expected))
    decision = policy.check_question(service, name, A)
    assert decision.allowed is (expected is not None)
    assert policy.check_name(service, name).allowed is (expected is not None)
    if expected is None:
        assert decision.rcode == dns.rcode.REFUSED and decision.ede == 18
        assert decision.rule is None
        assert decision.reason == f"service svc: {name} is not in an allowed zone"


def test_non_ascii_octets_are_compared_exactly():
    """RFC 4343 §3: only ASCII letters fold; other octets are compared as they are."""
    policy, service = policy_for("[{zone: '\\129.example.', require: insecure-ok}]")
    assert policy.check_question(service, dns.name.Name([b"\x81", b"example", b""]), A).allowed
    assert not policy.check_question(service, dns.name.Name([b"\xa1", b"example", b""]),
                                     A).allowed


def test_longest_names():
    policy, service = policy_for("[{zone: example.com., require: insecure-ok}]")
    labels = [b"a" * 63] * 3 + [b"b" * 61, b"example", b"com", b""]
    longest = dns.name.Name(labels[:3] + [b"b" * 49] + labels[4:])
    assert len(longest.to_wire()) == 255
    assert policy.check_question(service, longest, A).allowed
    deepest = dns.name.Name([b"x"] * 121 + [b"example", b"com", b""])
    assert len(deepest.to_wire()) == 255
    assert policy.check_question(service, deepest, A).allowed
    with pytest.raises(dns.name.NameTooLong):
        dns.name.Name([b"a" * 63] * 4 + [b"example", b"com", b""])
    with pytest.raises(dns.name.NameTooLong):
        N(".".join(["x"] * 122) + ".example.com.")


def test_relative_and_empty_names_are_refused():
    policy, service = policy_for("[{zone: ., require: insecure-ok}]")
    for name in (N("example.com", origin=None), dns.name.empty):
        decision = policy.check_question(service, name, A)
        assert not decision.allowed and decision.kind == "not-absolute"
        assert not policy.check_name(service, name).allowed
        assert policy.rule_for(service, name) is None


_label = st.one_of(st.sampled_from([b"example", b"EXAMPLE", b"com", b"Com", b"b", b"a.b", b"\x00",
                                    b"evil-example", b"*"]),
                   st.binary(min_size=1, max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.lists(_label, max_size=6), st.lists(st.lists(_label, max_size=3), max_size=4))
def test_matching_agrees_with_is_subdomain(qlabels, zone_labels):
    """Any name, against any set of zones: the rule chosen is the deepest zone that
    dns.name.Name.is_subdomain says contains the name, and nothing raises."""
    name = dns.name.Name(qlabels + [b""])
    zones = []
    for labels in zone_labels:
        zone = dns.name.Name(labels + [b""])
        if zone not in zones:
            zones.append(zone)
    service = Service("svc", (), (), tuple(AllowRule(z, "insecure-ok", None, False)
                                           for z in zones), "refused", False, (), Budgets())
    policy = Policy(dataclasses.replace(config("{}"), default_service=service))
    service = policy.default_service
    containing = [z for z in zones if name.canonicalize().is_subdomain(z.canonicalize())]
    expected = max(containing, key=lambda z: len(z.labels)) if containing else None
    rule = policy.rule_for(service, name)
    assert (None if rule is None else rule.zone) == expected
    assert policy.check_question(service, name, A).allowed is (expected is not None)


# --- rules ------------------------------------------------------------------------------------

def test_most_specific_rule_wins_whatever_the_order():
    for allow in ("[{zone: example.com.}, {zone: lab.example.com., require: insecure-ok}]",
                  "[{zone: lab.example.com., require: insecure-ok}, {zone: example.com.}]"):
        policy, service = policy_for(allow)
        rule = policy.rule_for(service, N("www.lab.example.com."))
        assert rule.zone == N("lab.example.com.") and rule.require == "insecure-ok"
        assert policy.rule_for(service, N("www.example.com.")).require == "secure"
        assert policy.rule_for(service, N("lab.example.com.")).zone == N("lab.example.com.")


def test_decision_names_the_rule_and_the_service():
    policy, service = policy_for("[{zone: example.com.}, {zone: Lab.Example.com., "
                                 "require: insecure-ok}]")
    decision = policy.check_question(service, N("x.lab.example.com."), A)
    assert decision == Decision(True, "svc", "allow[1] Lab.Example.com. insecure-ok",
                                "service svc: allowed by allow[1] Lab.Example.com. insecure-ok",
                                dns.rcode.NOERROR, 0)
    assert decision.kind == "allowed"


def test_types():
    policy, service = policy_for("[{zone: example.com., types: [A, AAAA]}, "
                                 "{zone: txt.example.com., types: [TXT]}, {zone: any.example.}]")
    assert policy.check_question(service, N("www.example.com."), A).allowed
    assert policy.check_question(service, N("www.example.com."), AAAA).allowed
    for qtype in (TXT, SRV, ANY, dns.rdatatype.AXFR):
        decision = policy.check_question(service, N("www.example.com."), qtype)
        assert not decision.allowed and decision.kind == "type"
        assert decision.rule == "allow[0] example.com. secure"
        assert decision.reason == (f"service svc: type {dns.rdatatype.to_text(qtype)} is not "
                                   "allowed for www.example.com. by allow[0] example.com. secure")
    # the most specific rule decides: its types, not its parent's
    assert policy.check_question(service, N("a.txt.example.com."), TXT).allowed
    assert not policy.check_question(service, N("a.txt.example.com."), A).allowed
    # no types: every type, ANY included
    assert policy.check_question(service, N("any.example."), ANY).allowed
    assert policy.check_question(service, N("any.example."), 65280).allowed
    # a CNAME target is judged by zone only
    assert policy.check_name(service, N("x.txt.example.com.")).allowed


def test_refuse_with_nxdomain():
    policy, service = policy_for("[{zone: example.com.}]", "refuse_with: nxdomain")
    decision = policy.check_question(service, N("evil.net."), A)
    assert (decision.allowed, decision.rcode, decision.ede) == (False, dns.rcode.NXDOMAIN, 18)
    assert policy.check_answer(service, service.allow[0], "insecure", []).rcode == (
        dns.rcode.NXDOMAIN)


def test_chain_names():
    policy, service = policy_for("[{zone: example.com.}]")
    assert policy.check_name(service, N("cdn.example.com.")).rule == "allow[0] example.com. secure"
    decision = policy.check_name(service, N("evil.example.net."))
    assert not decision.allowed and decision.kind == "chain" and decision.ede == 18
    assert decision.reason == ("service svc: evil.example.net. (in the answer's CNAME/DNAME "
                               "chain) is not in an allowed zone")


# --- answers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("require, verdict, allowed, kind", [
    ("secure", "secure", True, "allowed"),
    ("secure", Verdict.SECURE, True, "allowed"),
    ("secure", "insecure", False, "insecure"),
    ("secure", Verdict.INSECURE, False, "insecure"),
    ("secure", "bogus", False, "bogus"),
    ("secure", Verdict.INDETERMINATE, False, "bogus"),
    ("insecure-ok", "secure", True, "allowed"),
    ("insecure-ok", "insecure", True, "allowed"),
    ("insecure-ok", Verdict.INSECURE, True, "allowed"),
    ("insecure-ok", "bogus", False, "bogus"),
    ("insecure-ok", Verdict.BOGUS, False, "bogus"),
    ("insecure-ok", "indeterminate", False, "bogus"),
    ("insecure-ok", "SECURE", True, "allowed"),
    ("insecure-ok", "something else", False, "bogus"),
])
def test_answer_verdicts(require, verdict, allowed, kind):
    policy, service = policy_for(f"[{{zone: example.com., require: {require}}}]")
    decision = policy.check_answer(service, service.allow[0], verdict, ["192.0.2.1"])
    assert (decision.allowed, decision.kind) == (allowed, kind)
    assert decision.rule == f"allow[0] example.com. {require}"
    if not allowed:
        assert decision.rcode == dns.rcode.REFUSED and decision.ede == 18


def test_removed_ds_reason():
    policy, service = policy_for("[{zone: example.com.}]")
    decision = policy.check_answer(service, service.allow[0], "insecure", [])
    assert decision.reason == ("service svc: zone example.com. expected signed, answer is "
                               "insecure (allow[0] example.com. secure)")


def test_answer_without_rule_is_refused():
    policy, service = policy_for("[{zone: example.com.}]")
    assert policy.check_answer(service, None, "secure", []).kind == "not-allowed"


SPECIAL = [
    ("0.0.0.0", "0.0.0.0/8", "unspecified"),
    ("0.255.255.255", "0.0.0.0/8", "unspecified"),
    ("10.0.0.1", "10.0.0.0/8", "private"),
    ("10.255.255.255", "10.0.0.0/8", "private"),
    ("172.16.0.1", "172.16.0.0/12", "private"),
    ("172.31.255.254", "172.16.0.0/12", "private"),
    ("192.168.1.1", "192.168.0.0/16", "private"),
    ("127.0.0.1", "127.0.0.0/8", "loopback"),
    ("127.1.2.3", "127.0.0.0/8", "loopback"),
    ("169.254.169.254", "169.254.0.0/16", "link-local"),
    ("100.64.0.1", "100.64.0.0/10", "shared (CGNAT)"),
    ("100.127.255.255", "100.64.0.0/10", "shared (CGNAT)"),
    ("::", "::/128", "unspecified"),
    ("::1", "::1/128", "loopback"),
    ("fe80::1", "fe80::/10", "link-local"),
    ("febf:ffff::1", "fe80::/10", "link-local"),
    ("fec0::1", "fec0::/10", "site-local"),
    ("fc00::1", "fc00::/7", "unique local"),
    ("fd12:3456:789a::1", "fc00::/7", "unique local"),
    ("FD00::1", "fc00::/7", "unique local"),
    ("::ffff:10.0.0.1", "10.0.0.0/8", "IPv4-mapped private"),
    ("::ffff:127.0.0.1", "127.0.0.0/8", "IPv4-mapped loopback"),
    ("::ffff:169.254.169.254", "169.254.0.0/16", "IPv4-mapped link-local"),
    ("::ffff:100.64.1.1", "100.64.0.0/10", "IPv4-mapped shared (CGNAT)"),
    ("::ffff:0.0.0.0", "0.0.0.0/8", "IPv4-mapped unspecified"),
]
PUBLIC = ["192.0.2.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0",
          "192.167.255.255", "192.169.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255",
          "128.0.0.0", "169.253.255.255", "1.0.0.0", "2001:db8::1", "2606:4700::1111",
          "fbff::1", "fe00::1", "ff02::1", "::2", "::ffff:192.0.2.1", "64:ff9b::a00:1"]


@pytest.mark.parametrize("address, prefix, what", SPECIAL)
def test_rebinding_special_ranges(address, prefix, what):
    assert special_range(address) == (prefix, what)
    policy, service = policy_for("[{zone: example.com., require: insecure-ok}, "
                                 "{zone: lan.example.com., require: insecure-ok, "
                                 "allow_private: true}]")
    decision = policy.check_answer(service, service.allow[0], "secure",
                                   ["192.0.2.1", address])
    assert not decision.allowed and decision.kind == "rebinding" and decision.ede == 18
    assert decision.reason == (f"service svc: answer address {address} is {what} ({prefix}): "
                               "rebinding protection (allow[0] example.com. insecure-ok)")
    assert policy.check_answer(service, service.allow[1], "secure", [address]).allowed
    assert policy.check_answer(service, service.allow[1], "insecure", [address]).allowed
    # protection off for the service
    policy, service = policy_for("[{zone: example.com., require: insecure-ok}]",
                                 "rebinding_protection: false")
    assert policy.check_answer(service, service.allow[0], "secure", [address]).allowed


@pytest.mark.parametrize("address", PUBLIC)
def test_rebinding_public_addresses_pass(address):
    assert special_range(address) is None
    policy, service = policy_for("[{zone: example.com.}]")
    assert policy.check_answer(service, service.allow[0], "secure", [address]).allowed


@pytest.mark.parametrize("address, prefix, what", SPECIAL)
def test_rebinding_judges_address_objects_as_their_text(address, prefix, what):
    assert special_range(ipaddress.ip_address(address)) == (prefix, what)


@pytest.mark.parametrize("address", PUBLIC)
def test_rebinding_passes_public_address_objects(address):
    assert special_range(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address, expected", [
    ("fe80::1%eth0", ("fe80::/10", "link-local")),  # a scope: inet_pton refuses, ipaddress reads
    ("fd00::1%2", ("fc00::/7", "unique local")),
    ("::ffff:10.0.0.1%eth0", ("10.0.0.0/8", "IPv4-mapped private")),
    ("2001:db8::1%eth0", None),
])
def test_rebinding_judges_scoped_text(address, expected):
    assert special_range(address) == expected


@pytest.mark.parametrize("text", ["10.0.0.256", "010.0.0.1", "example.com", "", "1.2.3",
                                  "fe80::1%", "::ffff:10.0.0.1/8", "10.0.0.1 "])
def test_rebinding_raises_for_text_that_is_no_address(text):
    with pytest.raises(ValueError):
        special_range(text)


def test_rebinding_checks_before_allowing_but_after_the_verdict():
    policy, service = policy_for("[{zone: example.com.}]")
    assert policy.check_answer(service, service.allow[0], "bogus", ["10.0.0.1"]).kind == "bogus"
    decision = policy.check_answer(service, service.allow[0], "secure", ["not-an-address"])
    assert not decision.allowed and decision.kind == "rebinding"
    assert policy.check_answer(service, service.allow[0], "secure", []).allowed


# --- budgets ----------------------------------------------------------------------------------

def test_query_rate_token_bucket():
    clock = Clock()
    policy, service = policy_for("[{zone: example.com.}]", "budgets: {query_rate: 2}", clock)
    www = N("www.example.com.")
    assert [policy.check_question(service, www, A).allowed for _ in range(5)] == [
        True, True, True, True, False]  # burst: twice the rate
    decision = policy.check_question(service, www, A)
    assert decision.kind == "budget:query_rate" and decision.ede == 18
    assert decision.reason == ("service svc: budget query_rate exceeded: 2 queries per second")
    assert decision.rule == "allow[0] example.com. secure"
    clock.now += 0.5  # one token back
    assert policy.check_question(service, www, A).allowed
    assert not policy.check_question(service, www, A).allowed
    clock.now += 100  # refilled to the burst, no more
    assert sum(policy.check_question(service, www, A).allowed for _ in range(10)) == 4
    assert policy.stats[("svc", "budget:query_rate")] == 9


def test_query_rate_below_one_per_second():
    clock = Clock()
    policy, service = policy_for("[{zone: example.com.}]", "budgets: {query_rate: 0.5}", clock)
    www = N("www.example.com.")
    assert policy.check_question(service, www, A).allowed
    assert not policy.check_question(service, www, A).allowed
    clock.now += 1.9
    assert not policy.check_question(service, www, A).allowed
    clock.now += 0.1
    assert policy.check_question(service, www, A).allowed


def test_refused_questions_and_chain_names_spend_no_budget():
    clock = Clock()
    policy, service = policy_for("[{zone: example.com., types: [A]}]",
                                 "budgets: {query_rate: 1, distinct_names_per_minute: 1}", clock)
    for _ in range(10):
        assert not policy.check_question(service, N("evil.net."), A).allowed
        assert not policy.check_question(service, N("www.example.com."), TXT).allowed
        assert policy.check_name(service, N(f"x{_}.example.com.")).allowed
    assert policy.check_question(service, N("www.example.com."), A).allowed


def test_max_label_length():
    policy, service = policy_for("[{zone: example.com.}]", "budgets: {max_label_length: 10}")
    assert policy.check_question(service, N("a" * 10 + ".example.com."), A).allowed
    assert policy.check_question(service, N("a.b.c.d.e.f.example.com."), A).allowed
    decision = policy.check_question(service, N("a" * 11 + ".example.com."), A)
    assert not decision.allowed and decision.kind == "budget:max_label_length"
    assert decision.reason == ("service svc: budget max_label_length exceeded: a label of 11 "
                               "octets (limit 10)")
    assert not policy.check_question(service, N("x." + "a" * 63 + ".example.com."), A).allowed
    # octets, not presentation characters: \\000 is one octet
    assert policy.check_question(service, N("\\000" * 10 + ".example.com."), A).allowed
    # the label-length budget does not apply to chain names
    assert policy.check_name(service, N("a" * 40 + ".example.com.")).allowed


def test_distinct_names_per_minute():
    clock = Clock()
    policy, service = policy_for("[{zone: example.com.}, {zone: example.org.}]",
                                 "budgets: {distinct_names_per_minute: 3}", clock)
    for name in ("a.example.com.", "b.example.com.", "C.example.com."):
        assert policy.check_question(service, N(name), A).allowed
    decision = policy.check_question(service, N("d.example.com."), A)
    assert not decision.allowed and decision.kind == "budget:distinct_names_per_minute"
    assert decision.reason == ("service svc: budget distinct_names_per_minute exceeded: 3 new "
                               "names under example.com. this minute")
    # names already seen in the window, in any case and for any type, still resolve
    assert policy.check_question(service, N("c.EXAMPLE.com."), AAAA).allowed
    # another zone has its own count
    assert policy.check_question(service, N("d.example.org."), A).allowed
    clock.now += 59.9
    assert not policy.check_question(service, N("d.example.com."), A).allowed
    clock.now += 0.1
    assert policy.check_question(service, N("d.example.com."), A).allowed


def test_distinct_names_memory_is_bounded():
    clock = Clock()
    policy, service = policy_for("[{zone: example.com.}]",
                                 "budgets: {distinct_names_per_minute: 50}", clock)
    for minute in range(3):
        allowed = sum(policy.check_question(service, N(f"t{minute}-{i}.example.com."), A).allowed
                      for i in range(2000))
        assert allowed == 50
        (window,) = policy._compiled["svc"].windows.values()
        assert len(window[1]) == 50
        clock.now += 60


def test_budgets_are_per_service():
    clock = Clock()
    conf = config("""
        listen: ["127.0.0.1:53", "127.0.0.2:53"]
        services:
          - {name: one, listeners: ["127.0.0.1:53"], allow: [{zone: .}], budgets: {query_rate: 1}}
          - {name: two, listeners: ["127.0.0.2:53"], allow: [{zone: .}], budgets: {query_rate: 1}}
    """)
    policy = Policy(conf, clock=clock)
    one, two = conf.services
    assert [policy.check_question(one, N("x."), A).allowed for _ in range(3)] == [True, True,
                                                                                   False]
    assert [policy.check_question(two, N("x."), A).allowed for _ in range(3)] == [True, True,
                                                                                   False]


# --- which service ----------------------------------------------------------------------------

SERVICES = """
    listen: ["127.0.0.1:53", "127.0.0.2:53", "[::1]:53"]
    services:
      - name: sidecar
        listeners: ["127.0.0.1:53"]
        allow: [{zone: sidecar.example.}]
      - name: both
        listeners: ["127.0.0.2:53"]
        clients: ["10.1.2.0/24"]
        allow: [{zone: both.example.}]
      - name: node-v4
        clients: ["10.1.0.0/16", "192.0.2.7"]
        allow: [{zone: v4.example.}]
      - name: node-v6
        clients: ["fd00::/64"]
        allow: [{zone: v6.example.}]
      - name: v6-listener
        listeners: ["[::1]:53"]
        allow: [{zone: v6l.example.}]
"""


@pytest.mark.parametrize("listener, client, expected", [
    (("127.0.0.1", 53), "127.0.0.1", "sidecar"),
    (("127.0.0.1", 53), "10.1.2.3", "sidecar"),       # first match wins over node-v4
    (Endpoint("127.0.0.1", 53), "10.1.2.3", "sidecar"),
    (("127.0.0.2", 53), "10.1.2.3", "both"),
    (("127.0.0.2", 53), "10.1.3.3", "node-v4"),       # both needs both
    (("127.0.0.2", 53), "10.9.9.9", "default"),
    (("127.0.0.3", 53), "10.1.2.3", "node-v4"),
    (("127.0.0.1", 5353), "127.0.0.1", "default"),    # the port counts
    (("127.0.0.3", 53), "192.0.2.7", "node-v4"),
    (("127.0.0.3", 53), "192.0.2.8", "default"),
    (("127.0.0.3", 53), "::ffff:10.1.200.1", "node-v4"),  # IPv4-mapped from a dual-stack socket
    (("127.0.0.3", 53), "fd00::1234", "node-v6"),
    (("127.0.0.3", 53), "FD00:0:0:0::1", "node-v6"),
    (("127.0.0.3", 53), "fd00:0:0:1::1", "default"),
    (("::1", 53), "::1", "v6-listener"),
    (("0:0::1", 53), "2001:db8::1", "v6-listener"),
    (("::1", 53), "fd00::1", "node-v6"),              # file order: node-v6 comes first
    (("::1%lo", 53), "fe80::1%eth0", "v6-listener"),
    (("127.0.0.3", 53), "not an address", "default"),
    (("bogus", 53), "fd00::1", "node-v6"),
])
def test_service_for(listener, client, expected):
    policy = Policy(config(SERVICES))
    service = policy.service_for(listener, client)
    assert service.name == expected
    assert policy.service_for(listener, client) is service  # cached


def test_selected_service_applies_its_rules():
    policy = Policy(config(SERVICES))
    sidecar = policy.service_for(("127.0.0.1", 53), "127.0.0.1")
    assert policy.check_question(sidecar, N("www.sidecar.example."), A).allowed
    decision = policy.check_question(sidecar, N("www.v4.example."), A)
    assert not decision.allowed
    assert decision.reason == "service sidecar: www.v4.example. is not in an allowed zone"
    assert policy.stats == {("sidecar", "not-allowed"): 1}


def test_default_service_without_services_is_open():
    for conf in (config("{}"), config("listen: ['127.0.0.1:53']"), parse_config(None)):
        policy = Policy(conf)
        service = policy.service_for(("127.0.0.1", 53), "192.0.2.1")
        assert service.name == "default" and service is conf.default_service
        assert service.rebinding_protection is False
        for qname in ("www.example.com.", ".", "localhost.", "x.cluster.local."):
            assert policy.check_question(service, N(qname), ANY).allowed
        rule = policy.rule_for(service, N("www.example.com."))
        assert policy.check_answer(service, rule, "insecure", ["10.0.0.1", "::1"]).allowed
        assert not policy.check_answer(service, rule, "bogus", []).allowed


def test_default_service_denies_all_when_services_exist():
    policy = Policy(config(SERVICES))
    service = policy.service_for(("127.0.0.3", 53), "203.0.113.1")
    assert service.name == "default" and service.allow == () and service.rebinding_protection
    for qname in ("www.example.com.", ".", "www.sidecar.example."):
        decision = policy.check_question(service, N(qname), A)
        assert not decision.allowed and decision.rcode == dns.rcode.REFUSED
        assert decision.reason.startswith("service default: ")
    assert policy.stats[("default", "not-allowed")] == 3


def test_default_service_given():
    policy = Policy(config("""
        default_service:
          allow: [{zone: example.com.}]
          refuse_with: nxdomain
    """))
    service = policy.service_for(("127.0.0.1", 53), "192.0.2.1")
    assert policy.check_question(service, N("www.example.com."), A).allowed
    assert policy.check_question(service, N("www.example.net."), A).rcode == dns.rcode.NXDOMAIN
    assert service.rebinding_protection is True


def test_service_from_another_config_is_rejected():
    policy = Policy(config(SERVICES))
    other = config(SERVICES.replace("sidecar.example.", "other.example.")).services[0]
    with pytest.raises(KeyError):
        policy.check_question(other, N("x."), A)
