"""Prometheus metrics of the tap (resolver.ops.dnstap.writer.Dnstap), read from its counters
at scrape time: messages written and dropped, connects, whether connected, the queue depth.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from resolver.ops.dnstap.writer import Dnstap


class DnstapCollector:
    """Prometheus metrics of a tap, read at scrape time (register it on a registry)."""

    def __init__(self, tap: Dnstap, prefix: str = "dnssec_sidecar_") -> None:
        self.tap, self.prefix = tap, prefix

    def collect(self):
        stats, p = self.tap.stats, self.prefix
        yield CounterMetricFamily(p + "dnstap_messages", "dnstap messages written",
                                  value=stats["messages"])
        yield CounterMetricFamily(p + "dnstap_dropped", "dnstap messages dropped (queue full, "
                                  "or lost with the connection)", value=stats["dropped"])
        yield CounterMetricFamily(p + "dnstap_connects", "dnstap outputs opened or connected",
                                  value=stats["connects"])
        yield GaugeMetricFamily(p + "dnstap_connected", "1 while the dnstap output is open",
                                value=1 if stats["connected"] else 0)
        yield GaugeMetricFamily(p + "dnstap_queue_depth", "dnstap messages waiting",
                                value=stats["queue_depth"])
