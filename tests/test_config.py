"""Configuration loading and checking (resolver.config) and ``check-config``
(resolver.configcheck)."""

from __future__ import annotations

import dataclasses
import socket
import textwrap
from datetime import date, datetime, timedelta, timezone

import dns.name
import dns.rdatatype
import pytest
import yaml

from resolver import configcheck
from resolver.anchors import ROOT_HINTS, ROOT_TRUST_ANCHORS, builtin_trust_anchors
from resolver.config import (CacheConfig, Config, ConfigError, Endpoint, Forward, ResolverLimits,
                             RootHint, Timeouts, default_config, load_config, parse_config,
                             parse_endpoint, parse_time)
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


def test_dataclass_defaults_are_the_documented_ones():
    assert ResolverLimits() == ResolverLimits(64, 30, 12, 8, 1000)
    assert Timeouts() == Timeouts(1200, 8000, 10000)
    assert CacheConfig() == CacheConfig(100000, 86400, 3600, 0)


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
  max_concurrent_resolutions: 50
  max_sig_checks_per_rrset: 4
  nsec3_max_iterations: 0
timeouts:
  upstream_ms: 800
  query_ms: 5000
  tcp_idle_ms: 2000
cache:
  max_entries: 5000
  max_ttl: 3600
  max_negative_ttl: 900
  min_ttl: 5
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
    assert config.limits == ResolverLimits(100, 20, 8, 4, 50)
    assert config.timeouts == Timeouts(800, 5000, 2000)
    assert config.cache == CacheConfig(5000, 3600, 900, 5)
    assert config.source == str(tmp_path / "config.yaml")


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
    ("limits: {max_concurrent_resolutions: 0}", "limits.max_concurrent_resolutions",
     "out of range"),
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


def test_check_config_defaults(tmp_path, capsys):
    assert configcheck.run(write(tmp_path, "")) == 0
    out = capsys.readouterr().out
    assert "root hints: 13 servers, 26 addresses (built-in IANA)" in out
    assert "trust anchors (built-in IANA root):" in out
    assert ". DS 38696 algorithm 8 digest type 2" in out
    assert "validation time: now" in out


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
    assert configcheck.run(path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"check-config: {path}: {error}")


def test_check_config_missing_file(tmp_path, capsys):
    path = str(tmp_path / "nope.yaml")
    assert configcheck.run(path) == 1
    assert capsys.readouterr().err == (
        f"check-config: {path}: cannot read: No such file or directory\n")
