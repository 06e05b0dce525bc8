"""The hit path's bulk counting (metrics.HitTally) gives exactly what counting each query with
prometheus-client would have given."""

from __future__ import annotations

from prometheus_client import generate_latest

from resolver.ops.metrics import Metrics


def scrape(metrics: Metrics) -> list[str]:
    return sorted(line for line in generate_latest(metrics.registry).decode().splitlines()
                  if line.startswith(("dnssec_sidecar_queries", "dnssec_sidecar_validation",
                                      "dnssec_sidecar_query_duration"))
                  and "_created" not in line)


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
