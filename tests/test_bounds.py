"""Bounded state and filtered upstreams (issue #14 §5).

- What the network names cannot grow the resolver's memory without bound: the infra cache's
  round-trip times (``Infra``, bounded by ``Settings.max_servers``) and the ``qtype`` label of
  ``queries_total`` (a client sending every type number makes one ``other`` series, on the full
  path and the compiled hit path alike).
- ``outgoing.do_not_query``: addresses a zone gives (glue, the A/AAAA records of its NS names)
  inside the prefixes are never asked, counted, and named in the SERVFAIL's EDE text; root
  hints and forwarders, named by the configuration, are asked wherever they are.

The in-process tests answer from a small unsigned world (no trust anchor: all insecure); the
end-to-end ones run the real server against the test tree (run them in a network namespace).
"""

from __future__ import annotations

import ipaddress
import json

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import yaml
from prometheus_client import generate_latest

from resolver.resolve import transport
from resolver.resolve.cache import Cache
from resolver.config import ConfigError, Endpoint, Forward, parse_config
from resolver.configcheck import summary
from resolver.dnssec.anchors import RootHint
from resolver.ede import EDE
from resolver.resolve.failures import Infra
from resolver.resolve.iterator import Iterator, ResolutionFailed, Settings
from resolver.ops.metrics import OTHER_QTYPE, QTYPE_LABELS, Metrics
from resolver.outgoing import DEFAULT_DO_NOT_QUERY, DoNotQuery, default_prefixes
from tests.test_client_faults import Sidecar, sidecar_config, udp
from tests.test_queries_ahead import _resolve
from tests.testtree import authority

# --- the infra cache ------------------------------------------------------------------------


def test_infra_forgets_the_server_updated_least_recently():
    infra = Infra(3)
    for n in range(3):
        infra.success((f"192.0.2.{n}", 53), 0.01 * (n + 1))
    infra.failure(("192.0.2.0", 53), 1.2)  # updated again: now the most recent
    infra.success(("192.0.2.9", 53), 0.05)
    assert len(infra.srtt) == 3
    assert ("192.0.2.1", 53) not in infra.srtt  # the least recently updated went
    assert infra.srtt[("192.0.2.0", 53)] == 1.2
    for n in range(10, 1010):  # a thousand servers named by zones: still three entries
        infra.failure((f"198.51.100.{n % 250}", n), 1.2)
    assert len(infra.srtt) == 3


def test_infra_asks_unknown_servers_first_then_the_fastest():
    """Every server a zone names is tried once before round-trip times decide (as the docstring
    of Infra says): a known fast server does not hide an unknown one, whatever its RTT."""
    infra = Infra(10)
    fast, slow = ("192.0.2.1", 53), ("192.0.2.2", 53)
    infra.success(fast, 0.0001)
    infra.success(slow, 0.2)
    unknown = [(f"192.0.2.{n}", 53) for n in range(3, 8)]
    orders = {tuple(infra.order([slow, fast] + unknown)) for _ in range(200)}
    assert all(set(order[:5]) == set(unknown) and order[5:] == (fast, slow) for order in orders)
    assert len({order[:5] for order in orders}) > 1  # the unknown ones in random order

def test_the_iterator_bounds_its_infra_cache_by_settings():
    iterator = Iterator(Settings(root_hints=(), trust_anchors=[], max_servers=2), Cache())
    for n in range(5):
        iterator.infra.success((f"192.0.2.{n}", 53), 0.01)
    assert len(iterator.infra.srtt) == 2


# --- the qtype label ------------------------------------------------------------------------


def test_qtype_labels_are_type_names():
    for name in QTYPE_LABELS:
        assert dns.rdatatype.to_text(dns.rdatatype.from_text(name)) == name


def test_unknown_and_rare_types_share_one_label():
    metrics = Metrics()
    for number in range(65280, 65535):  # private use (RFC 6895 §3.1): any client may send them
        metrics.query_counter("web", dns.rdatatype.to_text(number), "NOERROR").inc()
    metrics.query_counter("web", "NULL", "NOERROR").inc()  # a rare type
    metrics.query_counter("web", "AAAA", "NOERROR").inc()
    metrics.query_counter("web", None, "FORMERR").inc()  # no question
    text = generate_latest(metrics.registry).decode()
    series = [line for line in text.splitlines()
              if line.startswith("dnssec_sidecar_queries_total{")]
    assert sorted(series) == sorted([
        'dnssec_sidecar_queries_total{qtype="",rcode="FORMERR",service="web"} 1.0',
        'dnssec_sidecar_queries_total{qtype="AAAA",rcode="NOERROR",service="web"} 1.0',
        f'dnssec_sidecar_queries_total{{qtype="{OTHER_QTYPE}",rcode="NOERROR",service="web"}} '
        f'{65535 - 65280 + 1}.0'])


# --- outgoing.do_not_query: the rule and the configuration ----------------------------------


@pytest.mark.parametrize("address, prefix", [
    ("127.0.0.1", "127.0.0.0/8"), ("127.255.255.254", "127.0.0.0/8"), ("0.0.0.0", "0.0.0.0/8"),
    ("169.254.169.254", "169.254.0.0/16"), ("224.0.0.251", "224.0.0.0/4"),
    ("255.255.255.255", "240.0.0.0/4"), ("::1", "::1/128"), ("::", "::/128"),
    ("fe80::1", "fe80::/10"), ("ff02::fb", "ff00::/8"), ("fd00:ec2::254", "fd00:ec2::254/128"),
    ("::ffff:127.0.0.1", "127.0.0.0/8"),  # IPv4-mapped: the socket sends it to 127.0.0.1
    ("::ffff:169.254.169.254", "169.254.0.0/16"),
    ("192.0.2.1", None), ("10.1.2.3", None), ("2001:db8::1", None), ("fd00::1", None),
    ("::ffff:192.0.2.1", None),
])
def test_the_default_covers_special_purpose_addresses(address, prefix):
    found = DoNotQuery(default_prefixes()).covering(address)
    assert found == (None if prefix is None else ipaddress.ip_network(prefix))


def test_an_empty_list_covers_nothing():
    assert DoNotQuery(()).covering("127.0.0.1") is None


def test_config_default_empty_and_errors():
    assert parse_config(None).outgoing_do_not_query == default_prefixes()
    assert parse_config({"outgoing": {"do_not_query": None}}).outgoing_do_not_query == \
        default_prefixes()
    assert parse_config({"outgoing": {"do_not_query": []}}).outgoing_do_not_query == ()
    config = parse_config({"outgoing": {"do_not_query": ["10.0.0.0/8", "fd00::/8",
                                                         "192.0.2.1"]}})
    assert [str(p) for p in config.outgoing_do_not_query] == ["10.0.0.0/8", "fd00::/8",
                                                               "192.0.2.1/32"]
    for value, where, reason in (
            ("10.0.0.0/8", "outgoing.do_not_query", "expected a list"),
            (["10.0.0.1/8"], "outgoing.do_not_query[0]", "host bits"),
            (["nope"], "outgoing.do_not_query[0]", "not an address prefix"),
            ([8], "outgoing.do_not_query[0]", "expected an address prefix"),
            (["::1", "::1/128"], "outgoing.do_not_query[1]", "duplicate")):
        with pytest.raises(ConfigError) as caught:
            parse_config({"outgoing": {"do_not_query": value}})
        assert str(caught.value).startswith(where + ":") and reason in str(caught.value)


def test_check_config_shows_the_setting():
    (line,) = [ln for ln in summary(parse_config(None)) if "do not query" in ln]
    assert line.startswith("  do not query (built-in): 0.0.0.0/8, 127.0.0.0/8")
    assert "except root hints and forwarders" in line
    (line,) = [ln for ln in summary(parse_config({"outgoing": {"do_not_query": []}}))
               if "do not query" in ln]
    assert "nothing" in line
    (line,) = [ln for ln in summary(parse_config({"outgoing": {"do_not_query": ["10.0.0.0/8"]}}))
               if "do not query" in ln]
    assert "10.0.0.0/8" in line and "built-in" not in line


def test_the_default_is_documented_prefix_by_prefix():
    assert [p for p, why in DEFAULT_DO_NOT_QUERY if why] == [str(p) for p in default_prefixes()]


# --- outgoing.do_not_query: in the iterator, over a small world -----------------------------

ROOT_HINT = "127.0.0.1"  # inside the default do_not_query: the configuration names it
FORWARDER = "127.0.0.2"


def _rrset(name: str, rdtype: str, *values: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, 300, "IN", rdtype, *values)


def _referral(query, zone: str, glue: dict[str, list[str]]) -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.authority.append(_rrset(zone, "NS", *glue))
    for ns, addresses in glue.items():
        for rdtype in ("A", "AAAA"):
            mine = [a for a in addresses if (":" in a) == (rdtype == "AAAA")]
            if mine:
                reply.additional.append(_rrset(ns, rdtype, *mine))
    return reply


def _answer(query, *rrsets: dns.rrset.RRset) -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    reply.answer += rrsets
    if not rrsets:
        reply.authority.append(_rrset(str(query.question[0].name.parent()), "SOA",
                                      "ns. host. 1 2 3 4 5"))
    return reply


#: Who answers what: (server address, zone) -> how it answers a query for a name in the zone.
WORLD = {
    # the root delegates each test zone; glue in the forbidden ranges or none
    (ROOT_HINT, "glue.test."): lambda q: _referral(
        q, "glue.test.", {"ns.glue.test.": ["127.0.0.53", "::ffff:169.254.169.254"]}),
    (ROOT_HINT, "mixed.test."): lambda q: _referral(
        q, "mixed.test.", {"ns1.mixed.test.": ["169.254.169.254"],
                           "ns2.mixed.test.": ["192.0.2.7"]}),
    (ROOT_HINT, "noglue.test."): lambda q: _referral(
        q, "noglue.test.", {"ns.elsewhere.test.": []}),
    (ROOT_HINT, "elsewhere.test."): lambda q: _referral(
        q, "elsewhere.test.", {"ns.elsewhere.test.": ["192.0.2.9"]}),
    ("192.0.2.7", "mixed.test."): lambda q: _answer(q, _rrset("www.mixed.test.", "A",
                                                              "192.0.2.80")),
    # the name of noglue.test.'s server leads to the metadata service
    ("192.0.2.9", "elsewhere.test."): lambda q: _answer(q, *(
        [_rrset("ns.elsewhere.test.", "A", "169.254.169.254")]
        if q.question[0].rdtype == dns.rdatatype.A else [])),
    (FORWARDER, "fwd.test."): lambda q: _answer(q, _rrset("www.fwd.test.", "A", "192.0.2.60")),
}


def _world_iterator(asked: list[str]) -> Iterator:
    settings = Settings(root_hints=(RootHint(dns.name.from_text("a.root."), (ROOT_HINT,)),),
                        trust_anchors=[], qname_minimisation=False,
                        forward=(Forward(dns.name.from_text("fwd.test."),
                                         (Endpoint(FORWARDER, 53),)),),
                        outgoing_do_not_query=default_prefixes())

    async def exchange(query, host, port=53, **kwargs):
        asked.append(host)
        query = query.message()
        name = query.question[0].name
        for (server, zone), answer in WORLD.items():
            if server == host and name.is_subdomain(dns.name.from_text(zone)):
                return transport.Reply(answer(query), False, 0.001, 512)
        if host == ROOT_HINT:  # the root zone itself (priming, the root's own names)
            return transport.Reply(_answer(query), False, 0.001, 512)
        raise transport.UpstreamError("timeout", f"{host} does not answer")

    return Iterator(settings, Cache(), exchange=exchange)


def test_glue_in_the_forbidden_ranges_is_never_asked():
    asked: list[str] = []
    iterator = _world_iterator(asked)
    with pytest.raises(ResolutionFailed) as caught:
        _resolve(iterator, "www.glue.test.")
    assert caught.value.ede is EDE.NO_REACHABLE_AUTHORITY
    assert "outgoing.do_not_query" in caught.value.reason
    assert "127.0.0.53 in 127.0.0.0/8" in caught.value.reason
    assert "::ffff:169.254.169.254 in 169.254.0.0/16" in caught.value.reason
    assert set(asked) == {ROOT_HINT}  # the root hint is in 127.0.0.0/8 and was asked
    assert iterator.stats["not_queried"] == 2


def test_the_allowed_server_of_a_zone_is_asked_and_the_forbidden_one_not():
    asked: list[str] = []
    iterator = _world_iterator(asked)
    answer = _resolve(iterator, "www.mixed.test.")
    assert [rd.address for rd in answer.rrsets[0]] == ["192.0.2.80"]
    assert "169.254.169.254" not in asked and "192.0.2.7" in asked
    assert iterator.stats["not_queried"] == 1


def test_an_ns_name_resolving_to_a_forbidden_address_is_never_asked():
    asked: list[str] = []
    iterator = _world_iterator(asked)
    with pytest.raises(ResolutionFailed) as caught:
        _resolve(iterator, "www.noglue.test.")
    assert "169.254.169.254 in 169.254.0.0/16" in caught.value.reason
    assert "169.254.169.254" not in asked and "192.0.2.9" in asked  # its name was looked up
    assert iterator.stats["not_queried"] == 1


def test_forwarders_are_asked_inside_the_forbidden_ranges():
    asked: list[str] = []
    answer = _resolve(_world_iterator(asked), "www.fwd.test.")
    assert [rd.address for rd in answer.rrsets[0]] == ["192.0.2.60"]
    assert FORWARDER in asked


# --- end to end, against the test tree ------------------------------------------------------

ADDRESS = "127.0.0.160"
P = "dnssec_sidecar_"


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree(forwarder=True) as running:
        yield running


def _ede(reply: dns.message.Message) -> tuple[int, str] | None:
    return next(((int(o.code), o.text) for o in reply.options if o.otype == dns.edns.EDE),
                None)


def test_the_tree_server_of_a_zone_under_do_not_query_is_not_asked(tree, tmp_path):
    """The root hint (127.0.0.10) and the forwarder (127.0.0.60) are inside do_not_query and
    asked all the same; the server of rsasha256.example. (127.0.0.20, named by the glue of
    example.) is not."""
    config = sidecar_config(ADDRESS, tmp_path / "log.jsonl")
    config["outgoing"] = {"do_not_query": ["127.0.0.10/32", "127.0.0.20/32", "127.0.0.60/32"]}
    sidecar = Sidecar(tmp_path, config)
    try:
        tree.clear()
        reply = udp("www.rsasha256.example.", ADDRESS)
        assert reply.rcode() == dns.rcode.SERVFAIL
        code, text = _ede(reply)
        assert code == EDE.NO_REACHABLE_AUTHORITY
        assert "outgoing.do_not_query" in text and "127.0.0.20 in 127.0.0.20/32" in text
        assert tree.queried(server="127.0.0.20") == []
        assert tree.queried(server="127.0.0.10")  # the root hint
        secure = udp("www.ecdsap256.example.", ADDRESS)  # another zone resolves
        assert secure.rcode() == dns.rcode.NOERROR and secure.flags & dns.flags.AD
        forwarded = udp("www.fwd.example.", ADDRESS)  # through the forwarder
        assert forwarded.rcode() == dns.rcode.NOERROR and forwarded.flags & dns.flags.AD
        assert tree.queried(server="127.0.0.60")
        assert sidecar.metric(P + "upstream_not_queried_total") >= 1
    finally:
        assert sidecar.stop() == 0
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["qname"] == "www.rsasha256.example."]
    assert failed and not any(u.startswith("127.0.0.20:") for u in failed[0]["upstream"])
    assert "outgoing.do_not_query" in failed[0]["ede"]["text"]


def test_the_tree_config_allows_its_loopback_servers(tree):
    config = yaml.safe_load(authority.resolver_config_text())
    prefixes = parse_config(config).outgoing_do_not_query
    assert prefixes and not any(ipaddress.ip_address("127.0.0.20") in p for p in prefixes)
    assert set(prefixes) == set(default_prefixes()) - {ipaddress.ip_network("127.0.0.0/8")}


def test_client_chosen_types_make_one_series_on_both_paths(tree, tmp_path):
    """Twenty type numbers from the private-use range, each asked twice: the first answer
    comes through the full path, the second from the compiled hit path; all forty count under
    qtype="other"."""
    sidecar = Sidecar(tmp_path, sidecar_config(ADDRESS, tmp_path / "log.jsonl"))
    try:
        udp("www.rsasha256.example.", ADDRESS)  # the zone's keys: later answers come fast
        hits_before = sidecar.metric(P + "cache_hits_total")
        for _ in range(2):
            for number in range(65280, 65300):
                reply = udp("www.rsasha256.example.", ADDRESS, dns.rdatatype.to_text(number))
                assert reply.rcode() == dns.rcode.NOERROR  # no data of that type, proven
        metrics = sidecar.scrape()
        assert sidecar.metric(P + "cache_hits_total") - hits_before >= 20
        qtypes = {dict(labels).get("qtype") for (name, labels) in metrics
                  if name == P + "queries_total"}
        assert qtypes == {"A", OTHER_QTYPE}
        assert sidecar.metric(P + "queries_total", qtype=OTHER_QTYPE) == 40
    finally:
        assert sidecar.stop() == 0
