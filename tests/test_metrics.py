"""The bulk counting of compiled code (metrics.HitTally for the replies, ``observe_rtt`` for
upstream round trips) gives exactly what counting each one with prometheus-client would have
given."""

from __future__ import annotations

from prometheus_client import generate_latest

from resolver.ops.metrics import Metrics


def scrape(metrics: Metrics, names=("dnssec_sidecar_queries", "dnssec_sidecar_validation",
                                      "dnssec_sidecar_query_duration")) -> list[str]:
    return sorted(line for line in generate_latest(metrics.registry).decode().splitlines()
                  if line.startswith(names) and "_created" not in line)


def test_tally_equals_counting_each_query() -> None:
    samples = [("udp", 0.00001), ("udp", 0.0002), ("udp", 0.0003), ("tcp", 0.7), ("udp", 42.0)]
    direct, tallied = Metrics(), Metrics()
    for metrics in (direct, tallied):
        children = (metrics.child(metrics.queries, "web", "A", "NOERROR"),
                    metrics.child(metrics.validation, "secure", ""))
        for transport, seconds in samples:
            if metrics is direct:
                for child in children:
                    child.inc()
                metrics.child(metrics.duration, transport).observe(seconds)
            else:
                metrics.tally.count(children, transport, seconds)
    assert scrape(tallied) == scrape(direct)
    # a bound is inclusive: 0.0002 s counts in le="0.0002", as observe() counts it
    assert any('le="0.0002",transport="udp"} 2.0' in line for line in scrape(direct))
    assert scrape(tallied) == scrape(direct)  # flushed once: a second scrape adds nothing


def test_upstream_round_trips_counted_in_bulk_equal_observing_each() -> None:
    direct, tallied = Metrics(), Metrics()
    rtts = [0.00001, 0.0005, 0.0005, 0.003, 1.5, 99.0]
    for rtt in rtts:
        direct.upstream_rtt.observe(rtt)
        tallied.observe_rtt(rtt)
    name = ("dnssec_sidecar_upstream_rtt",)
    assert scrape(tallied, name) == scrape(direct, name)
    assert 'dnssec_sidecar_upstream_rtt_seconds_count 6.0' in scrape(direct, name)
    assert any('le="0.0005"} 3.0' in line for line in scrape(direct, name))
    tallied.observe_rtt(0.0005)
    direct.upstream_rtt.observe(0.0005)
    assert scrape(tallied, name) == scrape(direct, name)  # flushed once, then added to
