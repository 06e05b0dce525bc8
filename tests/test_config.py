"""Configuration loading and checking (resolver.config) and ``check-config``
(resolver.configcheck)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import socket
import textwrap
from datetime import date, datetime, timedelta, timezone

import dns.name
import dns.rdatatype
import pytest
import yaml

from resolver import configcheck, status
from resolver.dnssec.anchors import ROOT_HINTS, ROOT_TRUST_ANCHORS, RootHint, builtin_trust_anchors
from resolver.config import sections
from resolver.config import (AllowRule, Budgets, CacheConfig, Config, ConfigError, Endpoint,
                             Forward, ForwardTls, LogConfig, ResolverLimits, Service, Timeouts,
                             default_config, load_config, open_default_service, parse_config,
                             for_worker, parse_endpoint, parse_time, replace_listen)
from resolver.dnssec import Limits, ValidatorConfig
from tests.testtree import ZONES_DIR

NOW = 1780272000  # 2026-06-01T00:00:00Z
HEX32 = "AB" * 32
N = dns.name.from_text


def parse(text: str) -> Config:
    return parse_config(yaml.safe_load(textwrap.dedent(text)))


def write(tmp_path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# --- defaults and a full example --------------------------------------------------------------

def test_defaults():
    config = default_config()
    assert config.listen == (Endpoint("127.0.0.1", 53),)
    assert config.root_hints == ROOT_HINTS
    assert list(config.trust_anchors) == builtin_trust_anchors()
    assert config.forward == ()
    assert config.validation_time is None
    assert config.validator == ValidatorConfig(allow_sha1=False, limits=Limits())
    assert config.qname_minimisation is True
    assert config.negative_trust_anchors == ()
    assert config.outgoing_ipv4 is True and config.outgoing_ipv6 is True
    assert config.limits == ResolverLimits()
    assert config.timeouts == Timeouts()
    assert config.cache == CacheConfig()
    assert config.source == "<defaults>"
    assert config.services == ()
    assert config.default_service == open_default_service() == Service(
        "default", (), (), (AllowRule(dns.name.root, "insecure-ok", None, False),), "refused",
        False, (), Budgets(None, None, None))
    assert (config.log.path, config.log.fsync_interval_ms, config.log.max_bytes,
            config.log.max_age_s, config.log.keep, config.log.hmac_key_file,
            config.log.queue_size, config.log.enabled) == (
        "-", 1000, 104857600, 86400, 10, None, 10000, True)


def test_the_schema_holds_the_parsers_defaults():
    """``Config()`` (the schema's defaults) is what an empty file reads as: the parser takes
    each default from the schema rather than restating it."""
    assert Config() == default_config()
    assert Config().trust_anchors is not Config().trust_anchors  # RRsets are mutable: fresh


def test_the_iterator_settings_are_the_configurations_fields():
    """Settings.from_config takes each field by its name in Config: a field renamed on one side
    only would leave the iterator on a default."""
    from resolver.resolve.iterator import Settings
    config = parse_config({"qname_minimisation": False, "limits": {"max_cname_chain": 3},
                           "timeouts": {"upstream_ms": 500}, "outgoing": {"ipv6": False}})
    settings = Settings.from_config(config)
    own = {"max_zones", "max_servers"}  # bounds of the iterator's own tables
    assert {f.name for f in dataclasses.fields(Settings)} - set(Config.__dataclass_fields__) \
        == own
    for field in dataclasses.fields(Settings):
        if field.name not in own:
            assert getattr(settings, field.name) == getattr(config, field.name), field.name
    assert (settings.upstream_timeout, settings.query_timeout) == (0.5, 4.0)


def test_every_limit_has_its_bounds():
    """``limits`` reads each integer field of ResolverLimits and of the validator's Limits
    within bounds; a field without bounds would be an unknown key."""
    integers = {f.name for f in dataclasses.fields(ResolverLimits) if f.type == "int"}
    assert set(sections._RESOLVER_LIMIT_BOUNDS) == integers
    assert set(sections._DNSSEC_LIMIT_BOUNDS) == {f.name for f in dataclasses.fields(Limits)}


def test_dataclass_defaults_are_the_documented_ones():
    assert ResolverLimits() == ResolverLimits(64, 30, 12, 8, 1000)
    assert Timeouts() == Timeouts(1200, 4000, 10000)
    assert CacheConfig() == CacheConfig(100000, 86400, 3600, 0, aggressive_nsec=True)


@pytest.mark.parametrize("text", ["", "{}", "# only a comment\n", "cache:\nlimits:\n"])
def test_empty_file_and_null_sections_give_defaults(tmp_path, text):
    path = write(tmp_path, text)
    assert dataclasses.replace(load_config(path), source="<defaults>") == default_config()


FULL = """\
listen: ["127.0.0.1:53", "[::1]:53"]
root_hints:
  - {name: a.root-servers.test., addresses: ["127.0.0.10"]}
  - {name: b.root-servers.test, addresses: ["127.0.0.11", "fd00::11"]}
trust_anchors:
  - ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"
  - "test. 3600 IN DS 4711 13 2 %s"
forward:
  - {zone: cluster.local., addresses: ["10.96.0.10", "127.0.0.1:5353"]}
  - {zone: corp, addresses: ["fd00::53", "[fd00::54]:5300", "192.0.2.53"]}
validation:
  time: "2026-06-01T00:00:00Z"
  allow_sha1: true
qname_minimisation: false
negative_trust_anchors: [broken.example., Other.Example]
outgoing: {ipv4: true, ipv6: false}
limits:
  max_upstream_queries: 100
  max_referral_depth: 20
  max_cname_chain: 8
  max_ns_lookups: 4
  max_ns_lookups_per_query: 12
  max_concurrent_resolutions: 50
  tcp_clients: 20
  tcp_pipeline: 8
  max_sig_checks_per_rrset: 4
  nsec3_max_iterations: 0
timeouts:
  upstream_ms: 800
  query_ms: 4500
  tcp_idle_ms: 2000
cache:
  max_entries: 5000
  max_ttl: 3600
  max_negative_ttl: 900
  min_ttl: 5
  aggressive_nsec: false
""" % HEX32


def test_full_example(tmp_path):
    config = load_config(write(tmp_path, FULL))
    assert config.listen == (Endpoint("127.0.0.1", 53), Endpoint("::1", 53))
    assert config.root_hints == (
        RootHint(N("a.root-servers.test."), ("127.0.0.10",)),
        RootHint(N("b.root-servers.test."), ("127.0.0.11", "fd00::11")))
    assert [(str(r.name), r.rdtype, [ds.key_tag for ds in r]) for r in config.trust_anchors] == [
        (".", dns.rdatatype.DS, [20326]), ("test.", dns.rdatatype.DS, [4711])]
    assert config.forward == (
        Forward(N("cluster.local."), (Endpoint("10.96.0.10", 53), Endpoint("127.0.0.1", 5353))),
        Forward(N("corp."), (Endpoint("fd00::53", 53), Endpoint("fd00::54", 5300),
                             Endpoint("192.0.2.53", 53))))
    assert config.validation_time == NOW
    assert config.validator == ValidatorConfig(
        allow_sha1=True, limits=Limits(max_sig_checks_per_rrset=4, nsec3_max_iterations=0))
    assert config.qname_minimisation is False
    assert config.negative_trust_anchors == (N("broken.example."), N("other.example."))
    assert (config.outgoing_ipv4, config.outgoing_ipv6) == (True, False)
    assert config.limits == ResolverLimits(100, 20, 8, 4, 50, tcp_clients=20, tcp_pipeline=8,
                                           max_ns_lookups_per_query=12)
    assert config.limits.max_resolutions == 50  # given under its former name
    assert config.timeouts == Timeouts(800, 4500, 2000)
    assert config.cache == CacheConfig(5000, 3600, 900, 5, aggressive_nsec=False)
    assert config.source == str(tmp_path / "config.yaml")


def test_resolution_limits(tmp_path):
    """limits.max_resolutions, its per-client twin, over_limit and the answers a second over
    them (issue #14 §5)."""
    limits = load_config(write(tmp_path, "limits: {max_resolutions: 64, "
                                         "max_resolutions_per_client: 8, over_limit: drop, "
                                         "over_limit_answers_per_second: 0, "
                                         "max_misses_per_client_per_second: 0}")).limits
    assert (limits.max_resolutions, limits.max_resolutions_per_client,
            limits.over_limit, limits.over_limit_answers_per_second,
            limits.max_misses_per_client_per_second) == (64, 8, "drop", 0, 0)
    default = load_config(write(tmp_path, "")).limits
    assert (default.max_resolutions, default.max_resolutions_per_client,
            default.over_limit, default.over_limit_answers_per_second,
            default.max_misses_per_client_per_second) == (1000, 500, "servfail", 10, 100)


def test_config_is_frozen():
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.qname_minimisation = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen[0].port = 5353  # type: ignore[misc]


def test_endpoint_text_and_family():
    assert str(Endpoint("127.0.0.1", 53)) == "127.0.0.1:53"
    assert str(Endpoint("::1", 53)) == "[::1]:53"
    assert Endpoint("127.0.0.1", 53).family == socket.AF_INET
    assert Endpoint("::1", 53).family == socket.AF_INET6


@pytest.mark.parametrize("text, default_port, expected", [
    ("127.0.0.1:53", None, Endpoint("127.0.0.1", 53)),
    ("[::1]:5353", None, Endpoint("::1", 5353)),
    ("[2001:DB8:0::1]:53", None, Endpoint("2001:db8::1", 53)),
    ("10.96.0.10", 53, Endpoint("10.96.0.10", 53)),
    ("fd00::53", 53, Endpoint("fd00::53", 53)),
    ("[fd00::53]", 53, Endpoint("fd00::53", 53)),
    ("127.0.0.1:65535", 53, Endpoint("127.0.0.1", 65535)),
])
def test_parse_endpoint(text, default_port, expected):
    assert parse_endpoint(text, default_port) == expected


def test_yaml_timestamp_and_epoch_seconds():
    assert parse("validation: {time: 2026-06-01T00:00:00Z}").validation_time == NOW
    assert parse("validation: {time: 2026-06-01T02:00:00+02:00}").validation_time == NOW
    assert parse(f"validation: {{time: {NOW}}}").validation_time == NOW
    assert parse(f"validation: {{time: '{NOW}'}}").validation_time == NOW


def test_forward_of_the_root_needs_no_usable_root_hint():
    config = parse("""
        outgoing: {ipv4: false}
        forward: [{zone: ., addresses: ["fd00::53"]}]
    """)
    assert config.forward[0].zone == dns.name.root


# --- services, default_service, log -----------------------------------------------------------

SERVICES = """\
listen: ["127.0.0.1:53", "[::1]:53"]
forward: [{zone: corp., addresses: ["192.0.2.53"]}]
services:
  - name: payments
    listeners: ["127.0.0.1:53"]
    clients: ["10.1.2.0/24", "FD00::/64", "192.0.2.7"]
    allow:
      - {zone: example.com., require: secure}
      - {zone: Cluster.Local, require: insecure-ok, types: [A, aaaa, SRV, 65280],
         allow_private: true}
    refuse_with: nxdomain
    rebinding_protection: true
    forward: [{zone: cluster.local., addresses: ["10.96.0.10"]}]
    budgets: {query_rate: 50, max_label_length: 40, distinct_names_per_minute: 300}
  - name: agent-1_x.y
    clients: ["fd00:1::/64"]
    allow: [{zone: .}]
    rebinding_protection: false
    forward:
      - {zone: CLUSTER.local., addresses: ["10.96.0.10:53"]}
      - {zone: corp., addresses: ["192.0.2.53"]}
    budgets: {query_rate: 0.5}
default_service:
  allow: [{zone: ntp.org., require: insecure-ok}]
log:
  path: /var/log/dnssec-sidecar/lookups.jsonl
  fsync_interval_ms: 0
  max_bytes: 1048576
  max_age_s: 3600
  keep: 3
  hmac_key_file: keys/log.key
  queue_size: 500
  enabled: true
"""


def test_services(tmp_path):
    config = load_config(write(tmp_path, SERVICES))
    payments, agent = config.services
    cluster = Forward(N("cluster.local."), (Endpoint("10.96.0.10", 53),))
    corp = Forward(N("corp."), (Endpoint("192.0.2.53", 53),))
    assert payments == Service(
        name="payments",
        listeners=(Endpoint("127.0.0.1", 53),),
        clients=(ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("fd00::/64"),
                 ipaddress.ip_network("192.0.2.7/32")),
        allow=(AllowRule(N("example.com."), "secure", None, False),
               AllowRule(N("cluster.local."), "insecure-ok",
                         frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV,
                                    65280}), True)),
        refuse_with="nxdomain", rebinding_protection=True, forward=(cluster,),
        budgets=Budgets(50.0, 40, 300))
    assert agent == Service("agent-1_x.y", (), (ipaddress.ip_network("fd00:1::/64"),),
                            (AllowRule(dns.name.root, "secure", None, False),), "refused", False,
                            (cluster, corp), Budgets(0.5, None, None))
    assert config.default_service == Service(
        "default", (), (), (AllowRule(N("ntp.org."), "insecure-ok", None, False),), "refused",
        True, (), Budgets())
    # one forward table: the top level first, then each service's new zones
    assert config.forward == (corp, cluster)
    log = config.log
    assert (log.path, log.fsync_interval_ms, log.max_bytes, log.max_age_s, log.keep,
            log.hmac_key_file, log.queue_size, log.enabled) == (
        "/var/log/dnssec-sidecar/lookups.jsonl", 0, 1048576, 3600, 3,
        str(tmp_path / "keys" / "log.key"), 500, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        payments.allow[0].require = "insecure-ok"  # type: ignore[misc]


@pytest.mark.parametrize("text, open_default", [
    ("", True),
    ("listen: ['127.0.0.1:53']\nforward: [{zone: corp., addresses: ['192.0.2.1']}]", True),
    ("services: []", False),
    ("services:", False),  # every service commented out: closed, not open
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: .}]}]", False),
    ("default_service:", False),
    ("default_service: {}", False),
])
def test_default_service_compatibility_rule(text, open_default):
    config = parse(text)
    if open_default:
        assert config.default_service == open_default_service()
        assert config.default_service.allow == (
            AllowRule(dns.name.root, "insecure-ok", None, False),)
        assert config.default_service.rebinding_protection is False
    else:
        assert config.default_service == Service("default", (), (), (), "refused", True, (),
                                                 Budgets())


def test_default_service_may_be_opened_explicitly_beside_services():
    config = parse("""
        services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: example.}]}]
        default_service: {allow: [{zone: ., require: insecure-ok}], rebinding_protection: false}
    """)
    assert config.default_service == open_default_service()


def test_service_forwards_merge_into_one_table():
    config = parse("""
        forward: [{zone: a., addresses: ['192.0.2.1', '192.0.2.2']}]
        services:
          - {name: s1, clients: ['10.0.0.0/8'], allow: [{zone: .}],
             forward: [{zone: b., addresses: ['192.0.2.3']},
                       {zone: A., addresses: ['192.0.2.2:53', '192.0.2.1']}]}
          - {name: s2, clients: ['10.0.0.0/8'], allow: [{zone: x.c.}],
             forward: [{zone: c., addresses: ['192.0.2.4']}]}
        default_service:
          allow: [{zone: b.}]
          forward: [{zone: b., addresses: ['192.0.2.3']}]
    """)
    assert [(str(f.zone), [str(s) for s in f.servers]) for f in config.forward] == [
        ("a.", ["192.0.2.1:53", "192.0.2.2:53"]), ("b.", ["192.0.2.3:53"]),
        ("c.", ["192.0.2.4:53"])]
    assert [str(f.zone) for f in config.services[0].forward] == ["b.", "A."]
    assert [str(f.zone) for f in config.default_service.forward] == ["b."]


def test_service_listeners_are_normalised():
    config = parse("""
        listen: ['[::1]:53']
        services: [{name: a, listeners: ['[0:0::1]:53']}]
    """)
    assert config.services[0].listeners == (Endpoint("::1", 53),)


def test_replace_listen():
    config = parse("""
        listen: ['127.0.0.1:53', '127.0.0.2:53']
        services: [{name: a, listeners: ['127.0.0.2:53']}]
    """)
    moved = replace_listen(config, (Endpoint("127.0.0.2", 53), Endpoint("127.0.0.3", 53)))
    assert moved.listen == (Endpoint("127.0.0.2", 53), Endpoint("127.0.0.3", 53))
    with pytest.raises(ConfigError, match=r"^services\[0\]\.listeners\[0\]: '127\.0\.0\.2:53' "
                                          r"is not one of listen \(127\.0\.0\.1:5353\)$"):
        replace_listen(config, (Endpoint("127.0.0.1", 5353),))


def test_log_path_and_absolute_key_file(tmp_path):
    config = load_config(write(tmp_path, "log: {path: relative.jsonl, hmac_key_file: /k}\n"))
    assert config.log.path == "relative.jsonl"  # an output: the working directory's
    assert config.log.hmac_key_file == "/k"
    assert parse("log: {enabled: false}").log.enabled is False
    assert (parse("log: {max_bytes: 0, max_age_s: 0}").log.max_bytes, parse(
        "log: {max_age_s: 0}").log.max_age_s) == (0, 0)
    assert type(parse("").log) is LogConfig
    assert parse("log:").log == default_config().log


# --- every error names its field --------------------------------------------------------------

ERRORS = [
    # top level
    ("[1, 2]", "config", "expected a mapping, got list"),
    ("1: 2", "config", "key 1 is not a string"),
    ("listne: []", "listne", "unknown key (expected one of: listen, root_hints"),
    # listen
    ("listen: '127.0.0.1:53'", "listen", "expected a list, got string"),
    ("listen: []", "listen", "must not be empty"),
    ("listen: ['127.0.0.1:53', '127.0.0.1:99999']", "listen[1]",
     "'127.0.0.1:99999': port out of range"),
    ("listen: ['127.0.0.1:0']", "listen[0]", "port out of range"),
    ("listen: ['127.0.0.1']", "listen[0]", "'127.0.0.1': missing port (ADDR:PORT)"),
    ("listen: ['[::1]']", "listen[0]", "missing port"),
    ("listen: ['::1:53']", "listen[0]", "needs brackets and a port"),
    ("listen: ['127.0.0.1:dns']", "listen[0]", "port 'dns' is not a number"),
    ("listen: ['localhost:53']", "listen[0]", "'localhost' is not an IPv4 address"),
    ("listen: ['256.0.0.1:53']", "listen[0]", "is not an IPv4 address"),
    ("listen: ['[127.0.0.1]:53']", "listen[0]", "brackets are for IPv6 addresses only"),
    ("listen: ['[::g]:53']", "listen[0]", "is not an IPv6 address"),
    ("listen: [53]", "listen[0]", "expected a string 'ADDR:PORT', got integer"),
    ("listen: [['::1']]", "listen[0]", "quote IPv6 addresses in YAML"),
    ("listen: ['127.0.0.1:53', '127.0.0.1:053']", "listen[1]", "'127.0.0.1:53': duplicate"),
    # root_hints
    ("root_hints: []", "root_hints", "must not be empty"),
    ("root_hints: [a.root.]", "root_hints[0]", "expected a mapping, got string"),
    ("root_hints: [{addresses: ['192.0.2.1']}]", "root_hints[0].name", "missing"),
    ("root_hints: [{name: a.}]", "root_hints[0].addresses", "missing"),
    ("root_hints: [{name: a., addresses: []}]", "root_hints[0].addresses", "must not be empty"),
    ("root_hints: [{name: a., addresses: ['192.0.2.1'], ttl: 5}]", "root_hints[0].ttl",
     "unknown key"),
    ("root_hints: [{name: 'a..b', addresses: ['192.0.2.1']}]", "root_hints[0].name",
     "label is empty"),
    ("root_hints: [{name: '%s.', addresses: ['192.0.2.1']}]" % ("a" * 64), "root_hints[0].name",
     "label is > 63 octets"),
    ("root_hints: [{name: 1.5, addresses: ['192.0.2.1']}]", "root_hints[0].name",
     "expected a DNS name, got number"),
    ("root_hints: [{name: a., addresses: ['192.0.2.1:53']}]", "root_hints[0].addresses[0]",
     "'192.0.2.1:53': not an IP address"),
    ("root_hints: [{name: a., addresses: [true]}]", "root_hints[0].addresses[0]",
     "expected an IP address, got boolean"),
    ("root_hints: [{name: a., addresses: ['192.0.2.1', '192.0.2.1']}]",
     "root_hints[0].addresses[1]", "duplicate"),
    ("root_hints: [{name: a., addresses: ['192.0.2.1']}, {name: A, addresses: ['192.0.2.2']}]",
     "root_hints[1]", "name A.: duplicate"),
    # trust anchors
    ("trust_anchors: []", "trust_anchors", "must not be empty"),
    ("trust_anchors: '. IN DS 1 8 2 AB'", "trust_anchors", "expected a list, got string"),
    ("trust_anchors: ['%s', '. IN DS 1 8 2 ABCD']" % ROOT_TRUST_ANCHORS[0], "trust_anchors[1]",
     "digest length inconsistent with digest type"),
    ("trust_anchors: ['example DS 1 8 2 %s']" % HEX32, "trust_anchors[0]",
     "owner 'example' must be absolute"),
    ("trust_anchors: ['. IN A 192.0.2.1']", "trust_anchors[0]", "type A is not DS or DNSKEY"),
    ("trust_anchors: [5]", "trust_anchors[0]", "expected a string, got int"),
    ("trust_anchors: ['%s']\ntrust_anchor_file: a.zone" % ROOT_TRUST_ANCHORS[0],
     "trust_anchor_file", "conflicts with trust_anchors"),
    ("trust_anchor_file: ''", "trust_anchor_file", "empty path"),
    ("trust_anchor_file: [a]", "trust_anchor_file", "expected a file path, got list"),
    # forward
    ("forward: {zone: a.}", "forward", "expected a list, got mapping"),
    ("forward: [{addresses: ['192.0.2.1']}]", "forward[0].zone", "missing"),
    ("forward: [{zone: corp.}]", "forward[0].addresses", "missing"),
    ("forward: [{zone: corp., addresses: []}]", "forward[0].addresses", "must not be empty"),
    ("forward: [{zone: corp., servers: ['192.0.2.1']}]", "forward[0].servers", "unknown key"),
    ("forward: [{zone: corp., addresses: ['192.0.2.1:0']}]", "forward[0].addresses[0]",
     "port out of range"),
    ("forward: [{zone: corp., addresses: ['ns.corp.']}]", "forward[0].addresses[0]",
     "'ns.corp.' is not an IPv4 address"),
    ("forward: [{zone: corp., addresses: ['192.0.2.1', '192.0.2.1:53']}]",
     "forward[0].addresses[1]", "'192.0.2.1:53': duplicate"),
    ("forward: [{zone: corp., addresses: ['192.0.2.1']}, {zone: CORP, addresses: ['::1']}]",
     "forward[1].zone", "CORP.: duplicate zone"),
    ("forward: [{zone: 10., addresses: ['192.0.2.1']}]", "forward[0].zone",
     "expected a DNS name, got number"),
    # validation
    ("validation: true", "validation", "expected a mapping, got boolean"),
    ("validation: {now: 5}", "validation.now", "unknown key"),
    ("validation: {time: 'tomorrow'}", "validation.time", "not an RFC 3339 time or epoch"),
    ("validation: {time: '2026-06-01T00:00:00'}", "validation.time",
     "needs a UTC offset or Z"),
    ("validation: {time: 2026-06-01 00:00:00}", "validation.time", "needs a UTC offset or Z"),
    ("validation: {time: 2026-06-01}", "validation.time", "a date needs a time and a UTC offset"),
    ("validation: {time: '2026-02-30T00:00:00Z'}", "validation.time", "not a valid time"),
    ("validation: {time: -1}", "validation.time", "time out of range"),
    ("validation: {time: 1.5}", "validation.time", "got number"),
    ("validation: {time: true}", "validation.time", "got boolean"),
    ("validation: {allow_sha1: 1}", "validation.allow_sha1", "expected true or false"),
    ("validation: {allow_sha1: 'yes'}", "validation.allow_sha1", "got string"),
    # qname minimisation, NTAs, outgoing
    ("qname_minimisation: 0", "qname_minimisation", "expected true or false, got integer"),
    ("negative_trust_anchors: broken.example.", "negative_trust_anchors", "expected a list"),
    ("negative_trust_anchors: [a.example, '.']", "negative_trust_anchors[1]",
     "the root cannot be a negative trust anchor"),
    ("negative_trust_anchors: [a.example, A.Example.]", "negative_trust_anchors[1]",
     "duplicate"),
    ("negative_trust_anchors: ['a..example']", "negative_trust_anchors[0]", "label is empty"),
    ("outgoing: {ipv4: false, ipv6: false}", "outgoing", "cannot both be false"),
    ("outgoing: {ipv4: no, ipv6: 1}", "outgoing.ipv6", "expected true or false, got integer"),
    ("outgoing: {ipv5: true}", "outgoing.ipv5", "unknown key"),
    ("outgoing: {ipv6: false}\nroot_hints: [{name: a., addresses: ['fd00::1']}]", "root_hints",
     "no root hint address usable: outgoing.ipv6 is false"),
    ("outgoing: {ipv4: false}\nforward: [{zone: corp., addresses: ['192.0.2.1']}]",
     "forward[0].addresses", "no address usable: outgoing.ipv4 is false"),
    # limits
    ("limits: {max_upstream_queries: true}", "limits.max_upstream_queries",
     "expected an integer, got boolean"),
    ("limits: {max_upstream_queries: '64'}", "limits.max_upstream_queries", "got string"),
    ("limits: {max_upstream_queries: 64.0}", "limits.max_upstream_queries", "got number"),
    ("limits: {max_upstream_queries: 0}", "limits.max_upstream_queries",
     "0 is out of range 1..10000"),
    ("limits: {max_referral_depth: 500}", "limits.max_referral_depth", "out of range 1..128"),
    ("limits: {max_cname_chain: -1}", "limits.max_cname_chain", "-1 is out of range 0..64"),
    ("limits: {max_ns_lookups: 65}", "limits.max_ns_lookups", "out of range"),
    ("limits: {max_ns_lookups_per_query: 257}", "limits.max_ns_lookups_per_query",
     "257 is out of range 0..256"),
    ("limits: {max_ns_nxdomain_per_query: 0}", "limits.max_ns_nxdomain_per_query",
     "0 is out of range 1..256"),
    ("limits: {max_concurrent_resolutions: 0}", "limits.max_concurrent_resolutions",
     "out of range"),
    ("limits: {max_resolutions: 0}", "limits.max_resolutions", "0 is out of range 1..1000000"),
    ("limits: {max_resolutions: 9, max_concurrent_resolutions: 9}",
     "limits.max_concurrent_resolutions", "the former name of limits.max_resolutions"),
    ("limits: {max_resolutions_per_client: 0}", "limits.max_resolutions_per_client",
     "out of range"),
    ("limits: {over_limit: refuse}", "limits.over_limit", "must be servfail or drop"),
    ("limits: {over_limit: 1}", "limits.over_limit", "got integer"),
    ("limits: {over_limit_answers_per_second: -1}", "limits.over_limit_answers_per_second",
     "-1 is out of range 0..100000"),
    ("limits: {max_misses_per_client_per_second: -1}",
     "limits.max_misses_per_client_per_second", "-1 is out of range 0..1000000"),
    ("limits: {tcp_clients: 0}", "limits.tcp_clients", "0 is out of range 1..100000"),
    ("limits: {tcp_pipeline: 1001}", "limits.tcp_pipeline", "1001 is out of range 1..1000"),
    ("limits: {tcp_clients: 1.5}", "limits.tcp_clients", "got number"),
    ("limits: {max_sig_checks_per_rrset: 0}", "limits.max_sig_checks_per_rrset", "out of range"),
    ("limits: {max_keys_per_tag: false}", "limits.max_keys_per_tag", "got boolean"),
    ("limits: {max_sig_checks_per_query: -5}", "limits.max_sig_checks_per_query", "out of range"),
    ("limits: {nsec3_max_iterations: 2501}", "limits.nsec3_max_iterations",
     "2501 is out of range 0..2500"),
    ("limits: {max_nsec3_per_query: 5}", "limits.max_nsec3_per_query", "unknown key"),
    # timeouts
    ("timeouts: {upstream_ms: 5}", "timeouts.upstream_ms", "5 is out of range 10..60000"),
    ("timeouts: {upstream: 1000}", "timeouts.upstream", "unknown key"),
    ("timeouts: {query_ms: 1000}", "timeouts.query_ms",
     "1000 is less than timeouts.upstream_ms (1200)"),
    ("timeouts: {tcp_idle_ms: 1.5}", "timeouts.tcp_idle_ms", "got number"),
    # cache
    ("cache: 100", "cache", "expected a mapping, got integer"),
    ("cache: {max_entries: 0}", "cache.max_entries", "out of range"),
    ("cache: {max_ttl: 0}", "cache.max_ttl", "out of range"),
    ("cache: {max_negative_ttl: 86401}", "cache.max_negative_ttl", "out of range 0..86400"),
    ("cache: {min_ttl: 600, max_ttl: 300}", "cache.min_ttl",
     "600 is more than cache.max_ttl (300)"),
    ("cache: {size: 5}", "cache.size", "unknown key"),
    ("cache: {aggressive_nsec: 1}", "cache.aggressive_nsec", "expected true or false"),
    # services
    ("services: {name: a}", "services", "expected a list, got mapping"),
    ("services: [a]", "services[0]", "expected a mapping, got string"),
    ("services: [{listeners: ['127.0.0.1:53']}]", "services[0].name", "missing"),
    ("services: [{name: Payments, listeners: ['127.0.0.1:53']}]", "services[0].name",
     "'Payments': must be 1 to 63 of a-z 0-9 - _ ."),
    ("services: [{name: '', listeners: ['127.0.0.1:53']}]", "services[0].name", "must be 1 to 63"),
    ("services: [{name: '%s', listeners: ['127.0.0.1:53']}]" % ("a" * 64), "services[0].name",
     "must be 1 to 63"),
    ("services: [{name: 'a b', listeners: ['127.0.0.1:53']}]", "services[0].name",
     "must be 1 to 63"),
    ("services: [{name: 5, listeners: ['127.0.0.1:53']}]", "services[0].name",
     "expected a string, got integer"),
    ("services: [{name: default, listeners: ['127.0.0.1:53']}]", "services[0].name",
     "'default' is reserved for default_service"),
    ("services: [{name: a, clients: ['10.0.0.0/8']}, {name: a, clients: ['10.0.0.0/8']}]",
     "services[1]", "name 'a': duplicate"),
    ("services: [{name: a}]", "services[0]", "needs listeners or clients (or both)"),
    ("services: [{name: a, listeners: [], clients: []}]", "services[0].listeners",
     "must not be empty"),
    ("services: [{name: a, listen: ['127.0.0.1:53']}]", "services[0].listen",
     "unknown key (expected one of: name, listeners, clients, allow"),
    ("services: [{name: a, listeners: ['127.0.0.2:53']}]", "services[0].listeners[0]",
     "'127.0.0.2:53' is not one of listen (127.0.0.1:53)"),
    ("listen: ['127.0.0.1:53', '[::1]:53']\nservices: [{name: a, listeners: ['[::1]:53', "
     "'127.0.0.1:5353']}]", "services[0].listeners[1]",
     "'127.0.0.1:5353' is not one of listen (127.0.0.1:53, [::1]:53)"),
    ("services: [{name: a, listeners: ['127.0.0.1']}]", "services[0].listeners[0]",
     "missing port"),
    ("services: [{name: a, listeners: ['127.0.0.1:53', '127.0.0.1:53']}]",
     "services[0].listeners[1]", "duplicate"),
    ("services: [{name: a, clients: '10.0.0.0/8'}]", "services[0].clients",
     "expected a list, got string"),
    ("services: [{name: a, clients: ['10.1.2.3/24']}]", "services[0].clients[0]",
     "'10.1.2.3/24': has host bits set"),
    ("services: [{name: a, clients: ['10.1.2.0/33']}]", "services[0].clients[0]",
     "not an address prefix"),
    ("services: [{name: a, clients: ['fd00::/64', 'FD00:0::/64']}]", "services[0].clients[1]",
     "duplicate"),
    ("services: [{name: a, clients: [10]}]", "services[0].clients[0]",
     "expected an address prefix"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: {zone: a.}}]", "services[0].allow",
     "expected a list, got mapping"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [a.]}]", "services[0].allow[0]",
     "expected a mapping, got string"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{require: secure}]}]",
     "services[0].allow[0].zone", "missing"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: 'a..b'}]}]",
     "services[0].allow[0].zone", "label is empty"),
    ("services: [{name: a, clients: ['10.0.0.0/8']}, {name: b, clients: ['10.0.0.0/8'], "
     "allow: [{zone: a., require: yes}]}]", "services[1].allow[0].require",
     "must be secure or insecure-ok, got boolean"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., require: insecure}]}]",
     "services[0].allow[0].require", "must be secure or insecure-ok"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., require: 1}]}]",
     "services[0].allow[0].require", "must be secure or insecure-ok, got integer"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a.}, {zone: A}]}]",
     "services[0].allow[1].zone", "A.: duplicate zone"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: []}]}]",
     "services[0].allow[0].types", "must not be empty"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: A}]}]",
     "services[0].allow[0].types", "expected a list, got string"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: [A, QUUX]}]}]",
     "services[0].allow[0].types[1]", "'QUUX': not a DNS type"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: [A, a]}]}]",
     "services[0].allow[0].types[1]", "A: duplicate"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: [OPT]}]}]",
     "services[0].allow[0].types[0]", "not a query type"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: [70000]}]}]",
     "services[0].allow[0].types[0]", "not a DNS type"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., types: [true]}]}]",
     "services[0].allow[0].types[0]", "expected a type name such as AAAA, got boolean"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., allow_private: 1}]}]",
     "services[0].allow[0].allow_private", "expected true or false, got integer"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: a., ttl: 5}]}]",
     "services[0].allow[0].ttl", "unknown key (expected one of: zone, require, types, "
     "allow_private, expect)"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], refuse_with: servfail}]",
     "services[0].refuse_with", "must be refused or nxdomain"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], refuse_with: REFUSED}]",
     "services[0].refuse_with", "must be refused or nxdomain"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], rebinding_protection: 'on'}]",
     "services[0].rebinding_protection", "expected true or false, got string"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: 5}]", "services[0].budgets",
     "expected a mapping, got integer"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {query_rate: 0}}]",
     "services[0].budgets.query_rate", "0 is out of range (0, 1e+06]"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {query_rate: -1.5}}]",
     "services[0].budgets.query_rate", "out of range"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {query_rate: .nan}}]",
     "services[0].budgets.query_rate", "out of range"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {query_rate: '50'}}]",
     "services[0].budgets.query_rate", "expected a number, got string"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {query_rate: true}}]",
     "services[0].budgets.query_rate", "expected a number, got boolean"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {max_label_length: 64}}]",
     "services[0].budgets.max_label_length", "64 is out of range 1..63"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {max_label_length: 0}}]",
     "services[0].budgets.max_label_length", "out of range"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: "
     "{distinct_names_per_minute: 1.5}}]", "services[0].budgets.distinct_names_per_minute",
     "expected an integer, got number"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], budgets: {qps: 5}}]",
     "services[0].budgets.qps", "unknown key"),
    # per-service forward
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: corp.}], "
     "forward: [{zone: corp.}]}]", "services[0].forward[0].addresses", "missing"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: corp.}], "
     "forward: [{zone: corp., addresses: ['192.0.2.1']}, {zone: Corp, addresses: ['::1']}]}]",
     "services[0].forward[1].zone", "Corp.: duplicate zone"),
    ("services: [{name: a, clients: ['10.0.0.0/8'], allow: [{zone: example.}], "
     "forward: [{zone: corp., addresses: ['192.0.2.1']}]}]", "services[0].forward[0].zone",
     "corp. is outside every zone of services[0].allow"),
    ("services:\n- {name: pay, clients: ['10.0.0.0/8'], allow: [{zone: corp.}], "
     "forward: [{zone: corp., addresses: ['192.0.2.1']}]}\n"
     "- {name: web, clients: ['10.1.0.0/16'], allow: [{zone: corp.}], "
     "forward: [{zone: corp., addresses: ['192.0.2.2']}]}", "services[1].forward[0].zone",
     "corp. is forwarded to 192.0.2.2:53 here but to 192.0.2.1:53 by services[0].forward[0] "
     "(pay): the resolver has one forward table"),
    ("forward: [{zone: corp., addresses: ['192.0.2.1']}]\n"
     "services: [{name: web, clients: ['10.1.0.0/16'], allow: [{zone: .}], "
     "forward: [{zone: CORP., addresses: ['192.0.2.1', '192.0.2.2']}]}]",
     "services[0].forward[0].zone", "CORP. is forwarded to 192.0.2.1:53, 192.0.2.2:53 here but "
     "to 192.0.2.1:53 by forward[0]: the resolver"),
    ("services: [{name: web, clients: ['10.1.0.0/16'], allow: [{zone: .}], "
     "forward: [{zone: corp., addresses: ['192.0.2.1']}]}]\n"
     "default_service: {allow: [{zone: corp.}], forward: [{zone: corp., addresses: ['::1']}]}",
     "default_service.forward[0].zone", "by services[0].forward[0] (web)"),
    ("outgoing: {ipv4: false}\nservices: [{name: a, clients: ['10.0.0.0/8'], "
     "allow: [{zone: corp.}], forward: [{zone: corp., addresses: ['192.0.2.1']}]}]",
     "services[0].forward[0].addresses", "no address usable: outgoing.ipv4 is false"),
    # forward[].tls (DNS over TLS, RFC 8310 strict privacy)
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {}}]", "forward[0].tls.name",
     "missing: the server is authenticated by its name, spki_pins or both"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {spki_pins: []}}]",
     "forward[0].tls.spki_pins", "must not be empty"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {ca_file: ca.pem, spki_pins: "
     f"['{'A' * 43}=']}}}}]", "forward[0].tls.name", "missing: ca_file's authorities vouch for "
     "a name"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {name: dot.test, "
     "spki_pins: ['bm90IGEgZGlnZXN0']}}]", "forward[0].tls.spki_pins[0]",
     "'bm90IGEgZGlnZXN0': not the base64 of a SHA-256 digest"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {spki_pins: ['not base64!']}}]",
     "forward[0].tls.spki_pins[0]", "not the base64 of a SHA-256 digest"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {spki_pins: "
     f"['{'A' * 43}=', ' {'A' * 43}=']}}}}]", "forward[0].tls.spki_pins[1]", "duplicate"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {name: 'dot test'}}]",
     "forward[0].tls.name", "'dot test': not a host name or IP address"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {name: dot.test, ca_file: ''}}]",
     "forward[0].tls.ca_file", "empty path"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {name: dot.test, port: 853}}]",
     "forward[0].tls.port", "unknown key (expected one of: name, spki_pins, ca_file)"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: yes}]", "forward[0].tls",
     "expected a mapping, got boolean"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {name: dot.test}},\n"
     "          {zone: b., addresses: ['192.0.2.1:853']}]", "forward[1].addresses[0]",
     "192.0.2.1:853 is also forward[0]'s, with tls: an address is asked one way"),
    ("forward: [{zone: a., addresses: ['192.0.2.1:853']}]\nservices: [{name: s, clients: "
     "['10.0.0.0/8'], allow: [{zone: b.}], forward: [{zone: b., addresses: ['192.0.2.1'], "
     "tls: {name: dot.test}}]}]", "services[0].forward[0].addresses[0]",
     "192.0.2.1:853 is also forward[0]'s, without tls"),
    ("forward: [{zone: a., addresses: ['192.0.2.1'], tls: {name: one.test}},\n"
     "          {zone: b., addresses: ['192.0.2.1'], tls: {name: two.test}}]",
     "forward[1].addresses[0]", "with other tls settings"),
    # default_service
    ("default_service: []", "default_service", "expected a mapping, got list"),
    ("default_service: {name: x}", "default_service.name",
     "unknown key (expected one of: allow, refuse_with, rebinding_protection, forward, budgets, "
     "pin, mode)"),
    ("default_service: {clients: ['10.0.0.0/8']}", "default_service.clients", "unknown key"),
    ("default_service: {allow: [{zone: a., require: maybe}]}",
     "default_service.allow[0].require", "must be secure or insecure-ok"),
    # log
    ("log: stdout", "log", "expected a mapping, got string"),
    ("log: {file: x}", "log.file", "unknown key (expected one of: path, fsync_interval_ms"),
    ("log: {path: ''}", "log.path", 'empty path (use "-" for standard output)'),
    ("log: {path: 5}", "log.path", 'expected a file path or "-", got integer'),
    ("log: {fsync_interval_ms: -1}", "log.fsync_interval_ms", "out of range"),
    ("log: {max_bytes: 10}", "log.max_bytes",
     "10: must be 0 (never rotate by size) or at least 4096"),
    ("log: {max_bytes: -1}", "log.max_bytes", "out of range"),
    ("log: {max_age_s: -1}", "log.max_age_s", "out of range"),
    ("log: {max_age_s: 31622401}", "log.max_age_s", "out of range 0..31622400"),
    ("log: {keep: -1}", "log.keep", "out of range"),
    ("log: {queue_size: 0}", "log.queue_size", "out of range"),
    ("log: {queue_size: '10'}", "log.queue_size", "expected an integer, got string"),
    ("log: {enabled: 'no'}", "log.enabled", "expected true or false, got string"),
    ("log: {hmac_key_file: ''}", "log.hmac_key_file", "empty path"),
    ("log: {hmac_key_file: [a]}", "log.hmac_key_file", "expected a file path, got list"),
]


@pytest.mark.parametrize("text, field, reason", ERRORS, ids=[e[1] + ":" + e[2] for e in ERRORS])
def test_error_names_the_field(text, field, reason):
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_load(text))
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value) == f"{field}: {info.value.reason}"


def test_error_message_format_from_the_brief():
    with pytest.raises(ConfigError, match=r"^listen\[1\]: '127\.0\.0\.1:99999': port out of "
                                          r"range$"):
        parse("listen: ['127.0.0.1:53', '127.0.0.1:99999']")
    with pytest.raises(ConfigError, match=r"^forward\[0\]\.zone: missing$"):
        parse("forward: [{addresses: ['10.96.0.10']}]")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- forward[].tls ---------------------------------------------------------------------------

PIN = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # base64 of a SHA-256 digest


def test_forward_tls(tmp_path):
    path = write(tmp_path, f"""\
        forward:
          - {{zone: ., addresses: ["192.0.2.1", "192.0.2.2:8853"],
              tls: {{name: Resolver.Example., ca_file: certs/ca.pem, spki_pins: ["{PIN}"]}}}}
          - {{zone: corp., addresses: ["192.0.2.3"], tls: {{spki_pins: ["{PIN}"]}}}}
          - {{zone: lan., addresses: ["192.0.2.4"], tls: {{name: "192.0.2.4"}}}}
        """)
    root, corp, lan = load_config(path).forward
    assert root.servers == (Endpoint("192.0.2.1", 853), Endpoint("192.0.2.2", 8853))  # RFC 7858
    assert root.tls == ForwardTls("resolver.example", (base64.b64decode(PIN),),
                                  str(tmp_path / "certs" / "ca.pem"))  # beside the file
    assert root.tls.where == "forward[0].tls"
    assert corp.tls == ForwardTls(None, (base64.b64decode(PIN),))
    assert lan.tls.name == "192.0.2.4"  # an IP address certificate (RFC 8310 §8.1)
    assert parse("forward: [{zone: a., addresses: ['192.0.2.1'], tls: null}]").forward[0] == \
        Forward(N("a."), (Endpoint("192.0.2.1", 53),))  # null: no TLS


def test_forward_tls_in_a_service_and_merged():
    config = parse(f"""\
        forward: [{{zone: a., addresses: ['192.0.2.1'], tls: {{name: dot.test}}}}]
        services:
          - {{name: s, clients: ['10.0.0.0/8'], allow: [{{zone: a.}}],
              forward: [{{zone: a., addresses: ['192.0.2.1'], tls: {{name: dot.test}}}}]}}
        """)
    assert config.forward[0].tls.where == "forward[0].tls"
    assert config.services[0].forward[0].tls.where == "services[0].forward[0].tls"


def test_check_config_shows_how_a_forwarder_is_authenticated(tmp_path, capsys):
    from tests.test_dot import make_pki
    pki = make_pki(tmp_path)
    path = write(tmp_path, f"""\
        forward:
          - {{zone: ., addresses: ["192.0.2.1"], tls: {{name: dot.test, ca_file: ca.pem}}}}
          - {{zone: corp., addresses: ["192.0.2.3"], tls: {{spki_pins: ["{pki.pin}"]}}}}
        """)
    assert configcheck.run(path, host=False) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"    . -> 192.0.2.1:853 over TLS, authenticated by name dot.test (CAs of " \
           f"{tmp_path / 'ca.pem'})" in out
    assert f"    corp. -> 192.0.2.3:853 over TLS, authenticated by spki_pins {pki.pin}" in out


@pytest.mark.parametrize("content, status, reason", [
    (None, 4, "cannot read: No such file or directory"),
    ("not a certificate\n", 3, "no CA certificate in PEM form"),
])
def test_check_config_reads_the_ca_file(tmp_path, capsys, content, status, reason):
    if content is not None:
        (tmp_path / "ca.pem").write_text(content)
    path = write(tmp_path, """\
        forward: [{zone: ., addresses: ["192.0.2.1"], tls: {name: dot.test, ca_file: ca.pem}}]
        """)  # read before the addresses are bound
    assert configcheck.run(path) == status
    assert capsys.readouterr().err == (f"check-config: {path}: forward[0].tls.ca_file: "
                                       f"{tmp_path / 'ca.pem'}: {reason}") + (
        "\n" if status == 4 else " (NO_CERTIFICATE_OR_CRL_FOUND)\n")
    assert configcheck.run(path, host=False) == 0  # a file for another machine


# --- trust_anchor_file ------------------------------------------------------------------------

def test_trust_anchor_file_relative_to_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "anchors.zone").write_text(
        "$ORIGIN test.\n@ IN DS 4711 13 2 %s\n" % HEX32)
    config = load_config(write(tmp_path, "trust_anchor_file: anchors.zone\n",
                               "conf/config.yaml"))
    (anchor,) = config.trust_anchors
    assert anchor.name == N("test.") and [ds.key_tag for ds in anchor] == [4711]


def test_trust_anchor_file_absolute_path(tmp_path):
    path = ZONES_DIR / "root" / "ds"
    config = load_config(write(tmp_path, f"trust_anchor_file: {path}\n"))
    (anchor,) = config.trust_anchors
    assert anchor.name == dns.name.root and [ds.key_tag for ds in anchor] == [32309]


def test_trust_anchor_file_relative_to_cwd_when_parsed_from_data(tmp_path, monkeypatch):
    (tmp_path / "a.zone").write_text(ROOT_TRUST_ANCHORS[1] + "\n")
    monkeypatch.chdir(tmp_path)
    config = parse_config({"trust_anchor_file": "a.zone"})
    assert [ds.key_tag for ds in config.trust_anchors[0]] == [38696]


@pytest.mark.parametrize("content, reason", [
    (None, "No such file or directory"),
    ("; empty\n", "no DS or DNSKEY records"),
    (f". IN DS 1 8 2 {HEX32}\n. IN DS 2 8 2 ABCD\n", "anchors.zone:2: digest length"),
    (". IN NS a.root.\n", "type NS is not DS or DNSKEY"),
])
def test_trust_anchor_file_errors(tmp_path, content, reason):
    if content is not None:
        (tmp_path / "anchors.zone").write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "trust_anchor_file: anchors.zone\n"))
    assert info.value.field == "trust_anchor_file"
    assert str(tmp_path / "anchors.zone") in info.value.reason
    assert reason in info.value.reason


# --- file and YAML errors ---------------------------------------------------------------------

@pytest.mark.parametrize("text, field, reason", [
    ('listen:\n  - "127.0.0.1:53"\n cache: 1\n', "line 3, column 2",
     "YAML: expected <block end>, but found '<block mapping start>'"),
    ("listen: ['127.0.0.1:53'\ncache: {}\n", "line 2, column 1",
     "(while parsing a flow sequence at line 1)"),
    ("cache: {max_ttl: 60}\nlimits: {}\ncache: {}\n", "line 3, column 1",
     "YAML: duplicate key 'cache'"),
    ("limits:\n  max_ns_lookups: 4\n  max_ns_lookups: 5\n", "line 3, column 3",
     "duplicate key 'max_ns_lookups'"),
    ("a: !!python/object:os.system x\n", "line 1, column 4", "could not determine a constructor"),
    ("--- {}\n--- {}\n", "line 2, column 1", "expected a single document"),
])
def test_bad_yaml_reports_the_line(tmp_path, text, field, reason):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.field == field
    assert reason in info.value.reason


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="^cannot read: No such file or directory$"):
        load_config(str(tmp_path / "missing.yaml"))


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="^cannot read: Is a directory$"):
        load_config(str(tmp_path))


def test_not_utf8(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"listen: ['\xff']\n")
    with pytest.raises(ConfigError, match="^not UTF-8 text"):
        load_config(str(path))


def test_semantic_errors_from_a_file_name_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "forward:\n  - {zone: corp.}\n"))
    assert str(info.value) == "forward[0].addresses: missing"


# --- parse_time ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (NOW, NOW),
    (0, 0),
    (str(NOW), NOW),
    (f" {NOW} ", NOW),
    ("2026-06-01T00:00:00Z", NOW),
    ("2026-06-01t00:00:00z", NOW),
    ("2026-06-01 00:00:00Z", NOW),
    ("2026-06-01T00:00:00.999Z", NOW),
    ("2026-06-01T02:00:00+02:00", NOW),
    ("2026-05-31T19:00:00-05:00", NOW),
    (datetime(2026, 6, 1, tzinfo=timezone.utc), NOW),
    (datetime(2026, 6, 1, 1, tzinfo=timezone(timedelta(hours=1))), NOW),
])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize("value, message", [
    ("2026-06-01T00:00:00", "needs a UTC offset or Z"),
    ("2026-06-01", "needs a UTC offset or Z"),
    ("2026-06-01T00:00", "needs a UTC offset or Z"),
    ("2026-13-01T00:00:00Z", "not a valid time"),
    ("2026-06-01T24:00:00Z", "not a valid time"),
    ("June 1 2026", "not an RFC 3339 time or epoch seconds"),
    ("", "not an RFC 3339 time or epoch seconds"),
    ("-5", "not an RFC 3339 time or epoch seconds"),
    ("1e9", "not an RFC 3339 time or epoch seconds"),
    (-1, "out of range"),
    ("1969-12-31T23:59:59Z", "out of range"),
    (10 ** 12, "out of range"),
    (True, "not a time"),
    (1.5, "not a time"),
    (None, "not a time"),
    (datetime(2026, 6, 1), "needs a UTC offset or Z"),
    (date(2026, 6, 1), "not a time"),
])
def test_parse_time_errors(value, message):
    with pytest.raises(ValueError, match=message):
        parse_time(value)


# --- check-config -----------------------------------------------------------------------------

def test_check_config_summary(tmp_path, capsys):
    path = write(tmp_path, FULL)
    assert configcheck.run(path) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[0] == f"{path}: OK"
    for expected in [
        "listen (UDP and TCP): 127.0.0.1:53, [::1]:53",
        "root hints: 2 servers, 3 addresses",
        ". DS 20326 algorithm 8 digest type 2",
        "test. DS 4711 algorithm 13 digest type 2",
        "cluster.local. -> 10.96.0.10:53, 127.0.0.1:5353",
        "corp. -> [fd00::53]:53, [fd00::54]:5300, 192.0.2.53:53",
        "negative trust anchors: broken.example., Other.Example.",
        "validation time: 2026-06-01T00:00:00Z (1780272000)",
        "SHA-1 algorithms (5, 7): allowed",
        "QNAME minimisation: off",
        "outgoing: IPv4",
    ]:
        assert expected in out, expected
    assert "warning" not in out


def test_check_config_warns_of_a_query_timeout_a_stub_outwaits(tmp_path, capsys):
    """A glibc or musl stub gives up after 5 s: a SERVFAIL later than that reaches no one."""
    assert configcheck.run(write(tmp_path, "timeouts: {query_ms: 5000}\n")) == 0
    assert "warning: timeouts.query_ms 5000 is not below 5000" in capsys.readouterr().out
    assert configcheck.run(write(tmp_path, "timeouts: {query_ms: 4999}\n")) == 0
    assert "warning" not in capsys.readouterr().out


def test_check_config_summary_of_services(tmp_path, capsys):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "log.key").write_bytes(b"0123456789abcdef\n")
    log = tmp_path / "lookups.jsonl"  # check-config checks its directory is writable
    path = write(tmp_path, SERVICES.replace("/var/log/dnssec-sidecar/lookups.jsonl", str(log)))
    assert configcheck.run(path) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("  services (first match wins):")
    assert lines[start:] == [
        "  services (first match wins):",
        "    payments: listeners 127.0.0.1:53; clients 10.1.2.0/24, fd00::/64, 192.0.2.7/32",
        "      allow[0] example.com. secure",
        "      allow[1] Cluster.Local. insecure-ok types A, AAAA, SRV, TYPE65280, private "
        "addresses allowed",
        "      refused with NXDOMAIN, rebinding protection on",
        "      budgets: query_rate 50/s, max_label_length 40, distinct_names_per_minute 300",
        "      forward cluster.local. -> 10.96.0.10:53",
        "    agent-1_x.y: clients fd00:1::/64",
        "      allow[0] . secure",
        "      refused with REFUSED, rebinding protection off",
        "      budgets: query_rate 0.5/s",
        "      forward CLUSTER.local. -> 10.96.0.10:53",
        "      forward corp. -> 192.0.2.53:53",
        "  default service (clients matching no service):",
        "    allow[0] ntp.org. insecure-ok",
        "    refused with REFUSED, rebinding protection on",
        "  monitor: the expected zones checked every 300 s within 200 lookups, "
        "signatures_expiring 259200 s ahead, canaries none",
        f"  log: {log}, fsync after every batch, rotated at "
        f"1048576 bytes or 3600 s, 3 kept, HMAC key {tmp_path / 'keys' / 'log.key'}, "
        "checkpoint every 60 s",
    ]


@pytest.mark.parametrize("text, line", [
    ("log: {path: /l, max_bytes: 0}",
     "  log: /l, fsync every 1000 ms, rotated at 86400 s, 10 kept, no HMAC key, checkpoint "
     "every 60 s"),
    ("log: {path: /l, max_bytes: 0, max_age_s: 0, compress: gzip, checkpoint: 0}",
     "  log: /l, fsync every 1000 ms, never rotated, gzip-compressed, no HMAC key, no "
     "checkpoints"),
    ("log: {enabled: false}", "  log: off"),
    ("services: []", "    allows nothing"),
])
def test_check_config_summary_lines(tmp_path, capsys, text, line):
    assert configcheck.run(write(tmp_path, text)) == 0
    assert line in capsys.readouterr().out.splitlines()


def test_check_config_says_how_a_restart_goes(tmp_path, capsys):
    assert configcheck.run(write(tmp_path, "")) == 0
    assert ("  restarts: cache not kept (cache.persist unset); stops at once on SIGTERM with no "
            "successor (timeouts.drain_ms)") in capsys.readouterr().out.splitlines()
    text = f"cache: {{persist: {tmp_path / 'cache'}}}\ntimeouts: {{drain_ms: 5000}}\n"
    assert configcheck.run(write(tmp_path, text)) == 0
    assert (f"  restarts: cache kept in {tmp_path / 'cache'} (cache.persist); answers 5000 ms "
            "more on SIGTERM with no successor (timeouts.drain_ms)"
            ) in capsys.readouterr().out.splitlines()
    text = f"cache: {{persist: {tmp_path / 'nowhere' / 'cache'}}}\n"
    assert configcheck.run(write(tmp_path, text)) == status.UNWRITABLE
    assert "cache.persist: " in capsys.readouterr().err


def test_check_config_defaults(tmp_path, capsys):
    assert configcheck.run(write(tmp_path, "")) == 0
    out = capsys.readouterr().out
    assert "root hints: 13 servers, 26 addresses (built-in IANA)" in out
    assert "trust anchors (built-in IANA root):" in out
    assert ". DS 38696 algorithm 8 digest type 2" in out
    assert "validation time: now" in out
    assert out.splitlines()[-6:] == [
        "  services: none (an open resolver)",
        "  default service (clients matching no service):",
        "    allow[0] . insecure-ok",
        "    refused with REFUSED, rebinding protection off",
        "  monitor: the expected zones checked every 300 s within 200 lookups, "
        "signatures_expiring 259200 s ahead, canaries none",
        "  log: standard output, no HMAC key, checkpoint every 60 s",
    ]


def test_check_config_lists_dnskey_anchors_by_tag(tmp_path, capsys):
    from tests.test_anchors import KSK_2024
    assert configcheck.run(write(tmp_path, f"trust_anchors: ['. IN DNSKEY {KSK_2024}']\n")) == 0
    assert ". DNSKEY 38696 algorithm 8 flags 257" in capsys.readouterr().out


def test_check_config_warns_of_private_root_with_iana_anchors(tmp_path, capsys):
    path = write(tmp_path, "root_hints: [{name: a.root.test., addresses: ['127.0.0.10']}]\n")
    assert configcheck.run(path) == 0
    assert "warning: custom root hints with the built-in root trust anchors" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("text, error", [
    ("listen: ['127.0.0.1:99999']\n", "listen[0]: '127.0.0.1:99999': port out of range"),
    ("listen: [\n", "line 2, column 1: YAML:"),
])
def test_check_config_error(tmp_path, capsys, text, error):
    path = write(tmp_path, text)
    assert configcheck.run(path) == 3  # invalid input
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"check-config: {path}: {error}")


def test_check_config_missing_file(tmp_path, capsys):
    path = str(tmp_path / "nope.yaml")
    assert configcheck.run(path) == 4  # unreadable
    assert capsys.readouterr().err == (
        f"check-config: {path}: cannot read: No such file or directory\n")


def test_cache_persist_and_drain(tmp_path):
    """``cache.persist`` (off unless given; a relative path from the file's directory, one file
    per worker) and ``timeouts.drain_ms`` (0 unless given, at most 10 minutes)."""
    assert Config().cache.persist is None and Config().timeouts.drain_ms == 0
    config = load_config(write(tmp_path, "cache: {persist: state/cache}\nworkers: 2\n"
                                         "log: {path: l}\ntimeouts: {drain_ms: 5000}\n"))
    assert config.cache.persist == str(tmp_path / "state" / "cache")
    assert config.timeouts.drain_ms == 5000
    assert for_worker(config, 1).cache.persist == str(tmp_path / "state" / "cache.w1")
    with pytest.raises(ConfigError) as error:
        parse_config({"cache": {"persist": ""}})
    assert error.value.field == "cache.persist"
    with pytest.raises(ConfigError) as error:
        parse_config({"timeouts": {"drain_ms": 600_001}})
    assert error.value.field == "timeouts.drain_ms"
