"""Operations: Prometheus metrics (``prometheus-client``), and an HTTP endpoint serving
``/metrics``, ``/healthz`` (the process and its event loop respond), ``/readyz`` (trust
established: the DNSKEY set of each trust anchor's zone validated, or the forwarders
answering; no validation canary resolving), ``/posture`` (the expected zones' DNSSEC
posture as JSON, resolver.monitor) and ``/log/head`` (the forensic chain's last
checkpoint, JSON).

Counters are bumped where things happen; sizes and queue depths are read at scrape time."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import orjson

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from resolver.resolve import tls, transport
from resolver.frontend._fastpath import Tally
from resolver.ops.http import Reply, Request, serve_one
from resolver.dnssec import sigcrypt
from resolver.monitor.posture import STATES

PREFIX = "dnssec_sidecar_"
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                   2.5, 5, 10)
#: Query types that ``queries_total`` counts under their own ``qtype`` label: the ones workloads
#: ask for, DNSSEC's, and ANY (refused, worth seeing). Every other type, a rare one or a number
#: a client made up (RFC 3597 TYPEnnn), is counted as ``other``: clients cannot add label values
#: (time series) without bound.
QTYPE_LABELS = frozenset((
    "A", "AAAA", "CNAME", "DNAME", "NS", "SOA", "PTR", "MX", "TXT", "SRV", "NAPTR", "CAA",
    "SVCB", "HTTPS", "TLSA", "SSHFP", "SMIMEA", "OPENPGPKEY", "URI", "HINFO", "LOC",
    "DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "CDS", "CDNSKEY", "ANY"))
OTHER_QTYPE = "other"


class Metrics:
    """The project's metrics in their own registry (names fixed: dashboards depend on them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tally = HitTally(self)
        r.register(_Flush(self))  # first: compiled code's counts are in before any metric
        self.queries = Counter(PREFIX + "queries", "Client queries", ["service", "qtype", "rcode"],
                               registry=r)
        self.validation = Counter(PREFIX + "validation", "Validation outcomes of answered "
                                  "queries", ["verdict", "reason"], registry=r)
        self.refusals = Counter(PREFIX + "policy_refusals", "Queries refused by policy",
                                ["service", "rule"], registry=r)
        self.would_refuse = Counter(PREFIX + "policy_would_refuse", "Queries a service in "
                                    "mode: observe would have refused (answered, recorded as "
                                    "would_refuse)", ["service", "rule"], registry=r)
        self.policy_changes = Counter(PREFIX + "policy_changes", "Runtime policy changes "
                                      "applied through the API (put, delete) or by a reload",
                                      ["action"], registry=r)
        self.duration = Histogram(PREFIX + "query_duration_seconds", "Time to answer a client",
                                  ["transport"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_rtt = Histogram(PREFIX + "upstream_rtt_seconds", "Upstream round trips",
                                      buckets=LATENCY_BUCKETS, registry=r)
        # Upstream round trips are bucketed in compiled code too and added at a scrape
        # (``observe_rtt(seconds)``): prometheus-client's observe took 1% of a cold lookup.
        self._rtts = Tally(LATENCY_BUCKETS)
        self.observe_rtt = functools.partial(self._rtts.count, (), "")
        self.budgets = Counter(PREFIX + "budget_exhausted", "Queries stopped by a work budget",
                               ["budget"], registry=r)
        self.events = Counter(PREFIX + "dnssec_events", "DNSSEC health events: downgrades, "
                              "key rollovers seen, signatures near expiry, negative trust "
                              "anchors used", ["event"], registry=r)
        self.reloads = Counter(PREFIX + "config_reloads", "Configuration reloads", ["result"],
                               registry=r)
        self.malformed = Counter(PREFIX + "malformed_queries", "Client packets that are not a "
                                 "well-formed query (RFC 1035 §4.1): answered FORMERR, or dropped "
                                 "when no header can be read or they are responses",
                                 ["transport", "action"], registry=r)
        self.tcp_closed = Counter(PREFIX + "tcp_closed", "Client TCP connections the server "
                                  "closed: idle, limit (limits.tcp_clients), write_timeout",
                                  ["reason"], registry=r)
        self.dropped = Counter(PREFIX + "queries_dropped", "Client queries not answered: "
                               "log_unavailable (the forensic log fails and its queue is full), "
                               "send_failed (the UDP socket did not take the reply), "
                               "over_limit (limits.over_limit: drop, or beyond "
                               "limits.over_limit_answers_per_second), internal_error (not even "
                               "an internal error's record could be sealed)",
                               ["reason"], registry=r)
        self.over_limit = Counter(PREFIX + "resolutions_over_limit", "Client queries not "
                                  "resolved for being over limits.max_resolutions, "
                                  "limits.max_resolutions_per_client or "
                                  "limits.max_misses_per_client_per_second (answered SERVFAIL, or "
                                  "dropped: limits.over_limit, "
                                  "limits.over_limit_answers_per_second)", ["limit"], registry=r)
        self.pins = Counter(PREFIX + "pins", "Addresses of answers added to (or refreshed in) a "
                            "service's nftables sets (services[].pin), and answers refused "
                            "SERVFAIL because their pins could not be committed",
                            ["service", "result"], registry=r)
        self.resolutions = Gauge(PREFIX + "resolutions_in_progress", "Client queries waiting "
                                 "for a resolution (resolver.frontend.admission)", registry=r)
        self.sources: dict = {}
        r.register(_Snapshot(self.sources))
        self._children: dict = {}

    def flush(self) -> None:
        """Add the counts kept in compiled code: the hit path's (``tally``), and the queries
        the UDP listener shed for being over a limit (``sources["admission"]``, a
        resolver.frontend.admission.Admission)."""
        self.tally.flush()
        cells = self._rtts.latency.pop("", None)
        if cells is not None:
            _add_cells(self.upstream_rtt, cells)
        self._rtts.counts.clear()
        admission = self.sources.get("admission")
        if admission is not None and admission.shed:
            for limit, count in admission.shed.items():
                self.child(self.over_limit, limit).inc(count)
                self.child(self.dropped, "over_limit").inc(count)
            admission.shed.clear()

    def query_counter(self, service: str | None, qtype: str | None, rcode: str):
        """The ``queries_total`` child of a reply (resolver.frontend.pipeline counts it through
        the Tally, and keeps it with a cached answer's bytes for the hit path): ``qtype`` is
        the question's type as text, None for a query without one; types outside
        :data:`QTYPE_LABELS` count as ``other``."""
        label = "" if qtype is None else qtype if qtype in QTYPE_LABELS else OTHER_QTYPE
        return self.child(self.queries, service or "", label, rcode)

    def child(self, metric, *labels):
        """``metric.labels(*labels)``, remembered: prometheus-client's lookup costs about a
        microsecond, too much for every cached answer."""
        key = (id(metric),) + labels
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class HitTally(Tally):
    """What every reply to a client counts, on the hit path and the full path alike (compiled:
    ``_fastpath.Tally``, fed by ``_fastpath.Report``), added to the Prometheus metrics in bulk
    at every scrape: prometheus-client takes a lock per increment and walks the buckets per
    observation, which costs more than a cache hit itself (issue #5). Used on the event loop's
    thread only."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(LATENCY_BUCKETS)
        self.metrics = metrics

    def flush(self) -> None:
        for children, n in self.counts.items():
            for child in children:
                child.inc(n)
        self.counts.clear()
        for protocol, cells in self.latency.items():
            _add_cells(self.metrics.child(self.metrics.duration, protocol), cells)
        self.latency.clear()


def _add_cells(histogram, cells: list) -> None:
    """A :class:`Tally`'s latency cells (a count per bucket, then the sum) added to a
    prometheus-client histogram (or child) at once."""
    for bucket, n in zip(histogram._buckets, cells):  # no bulk observe in the public API
        if n:
            bucket.inc(n)
    histogram._sum.inc(cells[-1])


class _Flush:
    """A collector that yields nothing: it brings compiled code's counts in before a scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        self.metrics.flush()
        return []


class _Snapshot:
    """Sizes and totals kept by the cache, the iterator and the forensic log, read at scrape."""

    def __init__(self, sources: dict) -> None:
        self.sources = sources

    def collect(self):
        cache = self.sources.get("cache")
        wire = self.sources.get("wirecache")
        if cache is not None:
            hits = cache.hits + (wire.hits if wire is not None else 0)
            yield _counter("cache_hits", "Cache hits (both the answer cache and the hit path)",
                           hits)
            yield _counter("cache_misses", "Cache misses", cache.misses)
            yield _counter("cache_evictions", "Entries evicted for space", cache.evictions)
            yield _gauge("cache_entries", "Entries in the cache", len(cache))
            if cache.ranges is not None:
                yield _counter("aggressive_nsec_answers", "Answers proven from kept NSEC or "
                               "NSEC3 records, no server asked (RFC 8198)", cache.ranges.answered)
                yield _gauge("aggressive_nsec_records", "NSEC, NSEC3 and wildcard RRsets kept "
                             "for that", len(cache.ranges))
        if wire is not None:
            yield _gauge("wire_cache_entries", "Answers kept as bytes for the hit path", len(wire))
            yield _counter("wire_cache_evictions", "Hit-path answers evicted for space",
                           wire.evictions)
        resolver = self.sources.get("resolver")
        if resolver is not None:
            stale, prefetch = resolver.stale, resolver.prefetch
            yield _counter("stale_answers", "Answers served from expired data (serve-stale, "
                           "RFC 8767)", stale.served if stale is not None else 0)
            yield _counter("stale_refused", "Expired data not served: a signature of it had "
                           "expired at the validation time", stale.refused if stale else 0)
            yield _counter("prefetches", "Answers resolved again in the last tenth of their TTL",
                           prefetch.started if prefetch is not None else 0)
        server = self.sources.get("server")
        if server is not None:
            yield _gauge("tcp_connections", "Open client TCP connections",
                         len(server.connections))
        iterator = self.sources.get("iterator")
        if iterator is not None:
            stats = iterator().stats
            yield _counter("upstream_queries", "Queries sent upstream", stats["upstream_queries"])
            yield _counter("upstream_timeouts", "Upstream queries that timed out",
                           stats["upstream_timeouts"])
            yield _counter("upstream_not_queried", "Server addresses a zone gave (glue, its NS "
                           "names' A/AAAA records) left out: outgoing.do_not_query covers them",
                           stats["not_queried"])
            ignored = CounterMetricFamily(PREFIX + "upstream_ignored", "Upstream packets "
                                          "ignored while waiting for an answer (RFC 5452 §9.1)",
                                          labels=["reason"])
            for reason, count in sorted(transport.IGNORED.items()):
                ignored.add_metric([reason], count)
            yield ignored
            connections = CounterMetricFamily(
                PREFIX + "upstream_tls_connections", "TLS connections to forwarders "
                "(forward[].tls) by result: ok (authenticated), certificate, pin, tls, network, "
                "timeout, ca_file (failed: the forwarder is not asked)", labels=["result"])
            for result, count in sorted(tls.CONNECTIONS.items()):
                connections.add_metric([result], count)
            yield connections
        verified = sigcrypt.VERIFIED
        if verified is not None:
            yield _counter("signature_cache_hits", "Signature checks answered by the verified-"
                           "signature cache (no public-key operation)", verified.hits)
            yield _counter("signature_cache_misses", "Signature checks not in that cache",
                           verified.misses)
        monitor = self.sources.get("posture")
        if monitor is not None:
            yield from _posture(monitor)
        forensic = self.sources.get("forensic")
        if forensic is not None:
            stats = forensic.stats
            yield _gauge("log_queue_depth", "Forensic records waiting to be written",
                         stats.get("queue_depth", 0))
            yield _gauge("log_healthy", "1 while the forensic log writes; 0 while writes fail "
                         "(queries then get SERVFAIL)", 1 if stats.get("healthy", True) else 0)
            yield _counter("log_records", "Forensic records written", stats.get("records", 0))
            yield _counter("log_bytes", "Forensic log bytes written", stats.get("bytes", 0))
            yield _counter("log_write_errors", "Forensic log write errors",
                           stats.get("write_errors", 0))
        checkpoints = self.sources.get("checkpoints")
        if checkpoints is not None and checkpoints.last is not None:
            seq, _, at = checkpoints.last
            yield _gauge("log_head_seq", "The forensic chain's last checkpoint (log.checkpoint): "
                         "the seq of the last record written; its hash is on /log/head", seq)
            yield _gauge("log_head_timestamp_seconds", "When that checkpoint was taken", at)


def _posture(monitor):
    """The expected zones' posture (resolver.monitor.check.Monitor): a state gauge per zone and
    state (1 for the current one), the earliest signature expiration, the key changes seen, the
    canaries."""
    state = GaugeMetricFamily(PREFIX + "zone_state", "DNSSEC state of each expected zone and "
                              "zone cut above one: 1 for the current state", labels=["zone",
                                                                                     "state"])
    expiry = GaugeMetricFamily(PREFIX + "zone_signature_expiry_timestamp_seconds", "Earliest "
                               "expiration among the zone's RRSIGs seen (POSIX seconds)",
                               labels=["zone"])
    for name, posture in sorted(monitor.zones.items()):
        if posture.state is not None:
            for one in STATES:
                state.add_metric([posture.zone, one], 1 if posture.state == one else 0)
        if posture.expiry is not None:
            expiry.add_metric([posture.zone], posture.expiry)
    changes = CounterMetricFamily(PREFIX + "zone_key_changes", "Changes seen in a zone's "
                                  "DNSKEY set, DS set, algorithms or NSEC3 parameters",
                                  labels=["zone", "kind"])
    for (zone, kind), count in sorted(monitor.events.key_changes.items()):
        changes.add_metric([zone, kind], count)
    canary = GaugeMetricFamily(PREFIX + "canary_resolved", "1 while a validation canary "
                               "(monitor.canary) resolves: validation is not working",
                               labels=["name"])
    for name, what in sorted(monitor.canaries.items()):
        canary.add_metric([name.to_text()], 1 if what else 0)
    yield from (state, expiry, changes, canary)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, text, value=value)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, text, value=value)


class Health:
    """Liveness from event-loop lag; readiness from a check the service supplies
    (``readiness``: ready or not, and why, as of the moment it is called)."""

    def __init__(self, max_lag: float = 5.0) -> None:
        self.max_lag = max_lag
        self.lag = 0.0
        self.readiness: Callable[[], tuple[bool, str]] = \
            lambda: (False, "trust not established yet")
        self._beat = time.monotonic()

    async def watch_loop(self, interval: float = 1.0) -> None:
        """Measure how late the loop wakes us: a blocked loop cannot answer queries. Once a
        second: a beat more often would tell nothing sooner against a ``max_lag`` of seconds,
        and each costs an idle resolver CPU."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(interval)
            self._beat = time.monotonic()
            self.lag = max(0.0, self._beat - start - interval)

    @property
    def alive(self) -> bool:
        return self.lag < self.max_lag and time.monotonic() - self._beat < self.max_lag + 1


class HttpEndpoint:
    """The five paths over HTTP/1.1 (GET only; resolver.ops.http)."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        self.metrics, self.health = metrics, health
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        # SO_REUSEPORT, like the DNS listeners: a successor binds it beside this process.
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  reuse_port=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_one(reader, writer, self._route)

    async def _route(self, request: Request) -> Reply:
        text = "text/plain; charset=utf-8"
        if request.method != "GET":
            return Reply("405 Method Not Allowed", text, b"GET only\n")
        if request.path == "/metrics":
            return Reply("200 OK", "text/plain; version=0.0.4",
                         generate_latest(self.metrics.registry))
        if request.path == "/healthz":
            if self.health.alive:
                return Reply("200 OK", text, b"ok\n")
            return Reply("503 Service Unavailable", text,
                         b"event loop lagging %.1fs\n" % self.health.lag)
        if request.path == "/readyz":
            ready, why = self.health.readiness()
            if ready:
                return Reply("200 OK", text, b"ready\n")
            return Reply("503 Service Unavailable", text, why.encode() + b"\n")
        if request.path == "/posture":
            monitor = self.metrics.sources.get("posture")
            if monitor is None:
                return Reply("404 Not Found", text, b"no posture: monitor.enabled is false\n")
            return Reply("200 OK", "application/json", orjson.dumps(monitor.report()) + b"\n")
        if request.path == "/log/head":
            checkpoints = self.metrics.sources.get("checkpoints")
            head = checkpoints.json() if checkpoints is not None else None
            if head is not None:
                return Reply("200 OK", "application/json", head)
            return Reply("404 Not Found", text, b"no checkpoint yet (log.checkpoint)\n"
                         if checkpoints is not None else
                         b"no checkpoints: the log or log.checkpoint is off\n")
        return Reply("404 Not Found", text, b"/metrics /healthz /readyz /posture /log/head\n")
