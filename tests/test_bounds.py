"""Bounded state (issue #14 §5): what the network names cannot grow the resolver's memory
without bound: the infra cache's round-trip times (``Infra``, bounded by
``Settings.max_servers``) and the ``qtype`` label of ``queries_total`` (a client sending every
type number makes one ``other`` series, on the full path and the compiled hit path alike).

The end-to-end test runs the real server against the test tree (run it in a network
namespace).
"""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import generate_latest

from resolver.cache import Cache
from resolver.iterator import Infra, Iterator, Settings
from resolver.metrics import OTHER_QTYPE, QTYPE_LABELS, Metrics
from tests.test_client_faults import Sidecar, sidecar_config, udp
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


def test_the_iterator_bounds_its_infra_cache_by_settings():
    iterator = Iterator(Settings(root_hints=[], trust_anchors=[], max_servers=2), Cache())
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


# --- end to end, against the test tree ------------------------------------------------------

ADDRESS = "127.0.0.160"
P = "dnssec_sidecar_"


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree(forwarder=True) as running:
        yield running


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
