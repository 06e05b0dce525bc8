"""The configuration's schema: every dataclass of the YAML file, each setting's default (defined
once, here: ``Config()`` is the default configuration), the words some keys take, and
:class:`ConfigError`; and the two derived views of a configuration, ``serve --listen``'s
(:func:`replace_listen`) and a worker's (:func:`for_worker`).

Two types of the configuration live in the layer below, :mod:`resolver.dnssec.config`: the
validator's work limits (``Limits``, read from the ``limits`` key beside
:class:`ResolverLimits`) and ``ValidatorConfig`` (``validation``), because the validator needs
them and a layer never imports one above it. Likewise ``RootHint`` and the built-in root hints
and trust anchors (RFC 9609 §3, RFC 7958) are :mod:`resolver.dnssec.anchors`'. Reading and
checking the YAML is the other modules' job (resolver.config.parse).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rrset

from resolver import __version__, status
from resolver.dnssec.anchors import ROOT_HINTS, RootHint, builtin_trust_anchors
from resolver.dnssec.config import ValidatorConfig
from resolver.errors import ResolverError
from resolver.outgoing import default_prefixes


class ConfigError(ResolverError, ValueError):
    """A configuration that cannot be used: ``field`` is the path of the offending key (e.g.
    ``forward[0].zone``; for file and YAML errors the line, or empty), ``reason`` says why,
    ``status`` is the exit status of the kind of fault (:mod:`resolver.status`): an invalid
    value, or a file (the configuration's own, ``trust_anchor_file``) that cannot be read."""

    def __init__(self, field: str, reason: str, status: int = status.INVALID) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and port; ``str()`` gives ``127.0.0.1:53`` or ``[::1]:53``."""

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


DEFAULT_LISTEN = (Endpoint("127.0.0.1", 53),)


#: The port of DNS over TLS (RFC 7858 §3.1): ``forward[].addresses`` without a port, with
#: ``tls``.
DOT_PORT = 853


@dataclass(frozen=True, slots=True)
class ForwardTls:
    """``forward[].tls``: DNS over TLS to the forwarders (RFC 7858), in the strict privacy
    profile (RFC 8310 §5): every connection is authenticated, by ``name`` (the certificate
    checked against it, from ``ca_file``'s CAs or the system's) and/or ``spki_pins`` (the
    SHA-256 digests of certificate keys' SubjectPublicKeyInfo, RFC 7858 §4.2, RFC 7469 §2.4),
    or nothing is sent. ``where`` is the key's path (``forward[0].tls``), for messages."""

    name: str | None
    spki_pins: tuple[bytes, ...]
    ca_file: str | None = None
    where: str = dataclasses.field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Forward:
    """Queries at or below ``zone`` go to ``servers`` (as recursive queries) instead of being
    iterated, over TLS with ``tls``; their answers are still validated."""

    zone: dns.name.Name
    servers: tuple[Endpoint, ...]
    tls: ForwardTls | None = None


#: ``limits.over_limit``: what a query over a resolution limit gets.
OVER_LIMIT_SERVFAIL, OVER_LIMIT_DROP = "servfail", "drop"


@dataclass(frozen=True, slots=True)
class ResolverLimits:
    """Work budgets of the resolver, per client query unless said otherwise."""

    #: Queries sent upstream for one client query.
    max_upstream_queries: int = 64
    #: Referrals followed for one name.
    max_referral_depth: int = 30
    #: CNAMEs followed for one client query.
    max_cname_chain: int = 12
    #: Nameserver address lookups per delegation step.
    max_ns_lookups: int = 8
    #: Client queries waiting for a resolution at once, per process, those joined to an
    #: identical question in progress included (resolver.frontend.admission); formerly
    #: ``max_concurrent_resolutions``, still read under that name.
    max_resolutions: int = 1000
    #: Client TCP connections open at once, per process (Unbound's incoming-num-tcp); at the
    #: limit a new connection closes the one idle longest, or is closed (RFC 7766 §6.2.3).
    tcp_clients: int = 100
    #: Queries of one client TCP connection in progress at once (RFC 7766 §6.2.1.1); reading
    #: from the connection pauses at the limit.
    tcp_pipeline: int = 16
    #: Nameserver address lookups for one client query, over all its delegations (NXNS).
    max_ns_lookups_per_query: int = 16
    #: Nameserver names found not to exist (NXDOMAIN) for one client query, over all its
    #: delegations, before the delegation being served is given up (NXNS; Unbound's target
    #: NXDOMAIN limit is 5 too).
    max_ns_nxdomain_per_query: int = 5
    #: Client queries of one client address waiting for a resolution at once, per process.
    max_resolutions_per_client: int = 500
    #: What a query over either limit gets: ``servfail`` (at once, EDE 0 naming the limit) or
    #: ``drop`` (over UDP no reply and no record: nothing to reflect at a forged source; TCP
    #: is still answered).
    over_limit: str = OVER_LIMIT_SERVFAIL
    #: With ``over_limit: servfail``, how many UDP queries a second of one client over a limit
    #: are still answered SERVFAIL; the rest are dropped in the listener without a reply or a
    #: record (resolver.frontend.admission): a flood of misses is shed before it costs Python.
    over_limit_answers_per_second: int = 10
    #: Cache misses of one client address resolved in a second (Unbound's ip-ratelimit); the
    #: excess is over a limit like the two above (0: no limit). bench/RESULTS.md: a client
    #: flooding unique names is held to this much of the full path's Python.
    max_misses_per_client_per_second: int = 100


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits, in milliseconds."""

    #: One try of one upstream server.
    upstream_ms: int = 1200
    #: The whole of one client query.
    query_ms: int = 4000
    #: An idle client TCP connection is closed after this (RFC 7766 §6.2.3).
    tcp_idle_ms: int = 10000
    #: On SIGTERM, how long to go on answering while no successor answers on the same
    #: addresses (resolver.frontend.handover); one that does takes over at once.
    drain_ms: int = 0


@dataclass(frozen=True, slots=True)
class ServeStale:
    """``cache.serve_stale`` (RFC 8767): answers kept ``max_stale`` seconds past their expiry,
    served when upstream fails or has not answered within ``client_timeout_ms`` (§5's client
    response timer)."""

    max_stale: int = 86400
    client_timeout_ms: int = 1800


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Cache size and TTL clamps, in entries and seconds; serve-stale (None: off) and prefetch
    (an answer asked for in the last 10 % of its TTL refreshed in the background)."""

    max_entries: int = 100000
    max_ttl: int = 86400
    #: Cap on negative answers' TTL (RFC 2308 §5).
    max_negative_ttl: int = 3600
    min_ttl: int = 0
    #: Answer names that validated NSEC or NSEC3 records cover from those records (RFC 8198).
    aggressive_nsec: bool = True
    serve_stale: ServeStale | None = None
    prefetch: bool = False
    #: The file the cache is written to on SIGTERM and read from at start
    #: (resolver.resolve.persist); None: not kept across restarts.
    persist: str | None = None


#: ``AllowRule.require``: the answer must be Secure (RFC 4035 §4.3), or may also be Insecure.
REQUIRE_SECURE = "secure"
REQUIRE_INSECURE_OK = "insecure-ok"
#: ``Service.refuse_with``: REFUSED (RFC 1035 §4.1.1) or NXDOMAIN; both carry EDE 18 (RFC 8914).
REFUSE_REFUSED = "refused"
REFUSE_NXDOMAIN = "nxdomain"
#: The name of the service that clients matching no other service get.
DEFAULT_SERVICE_NAME = "default"
#: ``Service.mode``: refusals enforced, or only recorded (``would_refuse``) and the query
#: answered, so that a workload can be run first to see what it needs (issue #17).
MODE_ENFORCE = "enforce"
MODE_OBSERVE = "observe"


@dataclass(frozen=True, slots=True)
class AllowRule:
    """Names at or below ``zone`` (whole labels, case-insensitive, RFC 4343) may be resolved.

    ``require`` is ``"secure"`` (an Insecure answer is refused: how a removed DS is caught) or
    ``"insecure-ok"`` (a zone proven unsigned may be answered); Bogus is never answered.
    ``types`` limits the query types (None: all). ``allow_private`` lets answers carry private
    addresses despite the service's rebinding protection. ``expect`` (``expect.addresses``)
    pins the prefixes its A and AAAA data must fall in (None: any): a validated answer
    outside them is refused, since a compromised publisher can sign anything (issue #18)."""

    zone: dns.name.Name
    require: str
    types: frozenset[int] | None
    allow_private: bool
    expect: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None


@dataclass(frozen=True, slots=True)
class Budgets:
    """Per-service budgets against DNS tunnelling; None turns one off."""

    #: Queries per second over the whole service (token bucket, burst twice the rate).
    query_rate: float | None = None
    #: A qname with a longer label is refused (RFC 1035 §2.3.4 allows 63).
    max_label_length: int | None = None
    #: New distinct qnames per minute under each allowed zone.
    distinct_names_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Pin:
    """``services[].pin``: the addresses of the service's answers are added to these nftables
    sets (resolver.frontend.pinning), each for its record's TTL plus ``grace`` seconds. The
    table is ``family table`` (``inet sandbox``); ``set4`` holds IPv4 addresses
    (``type ipv4_addr``), ``set6`` IPv6 (``ipv6_addr``), both with ``flags timeout``; either
    may be absent (its addresses are then not pinned)."""

    family: str
    table: str
    set4: str | None
    set6: str | None
    grace: int = 300

    def sets(self) -> tuple[tuple[int, str], ...]:
        """``(IP version, set name)`` of each set given."""
        return tuple((version, name) for version, name in ((4, self.set4), (6, self.set6))
                     if name is not None)


@dataclass(frozen=True, slots=True)
class Service:
    """A set of clients (by the listener their queries arrive on and/or their source prefix)
    and the zones they may resolve."""

    name: str
    listeners: tuple[Endpoint, ...]
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    allow: tuple[AllowRule, ...]
    refuse_with: str
    rebinding_protection: bool
    #: This service's own ``forward`` entries; the merged table is ``Config.forward``.
    forward: tuple[Forward, ...]
    budgets: Budgets
    #: nftables pinning of the service's answers (None: off).
    pin: Pin | None = None
    mode: str = MODE_ENFORCE


def open_default_service() -> Service:
    """The default service of a file without ``services``: every name, Insecure allowed, no
    rebinding protection (the resolver as it was before services existed)."""
    return Service(DEFAULT_SERVICE_NAME, (), (),
                   (AllowRule(dns.name.root, REQUIRE_INSECURE_OK, None, False),),
                   REFUSE_REFUSED, False, (), Budgets())


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """``monitor`` (issue #18, resolver.monitor): the DNSSEC posture of the expected zones (the
    allow rules' zones and the zone cuts above them), checked in the background."""

    #: Seconds between background checks of each zone's DS, DNSKEY, SOA and NSEC3PARAM.
    interval: int = 300
    #: Seconds: an earliest signature expiration closer than this is ``signatures_expiring``.
    expiry_warning: int = 72 * 3600
    #: Lookups the background check may make in one interval (canaries first); zones left
    #: over are checked in the next interval.
    budget: int = 200
    #: Names that must fail validation; one that resolves fails /readyz.
    canary: tuple[dns.name.Name, ...] = ()
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The HTTP endpoint for Prometheus ``/metrics``, ``/healthz`` and ``/readyz``."""

    listen: Endpoint = Endpoint("127.0.0.1", 9153)
    enabled: bool = True


#: ``ApiConfig.listen`` on a unix socket, or on TCP (then with a token file).
API_UNIX = "unix"
API_TCP = "tcp"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The ``api`` key: the runtime policy API (resolver.ops.api), JSON over HTTP on a unix
    socket (``path``; the peer is known by SO_PEERCRED) or on ``endpoint`` (TCP), where every
    request needs a Bearer token of ``token_file``. ``persist``: a file the runtime changes
    are kept in, applied again over the configuration file at start and on every reload (None:
    a reload or restart replaces them with the file's services)."""

    mode: str
    path: str | None = None
    endpoint: Endpoint | None = None
    token_file: str | None = None
    persist: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.mode == API_UNIX else str(self.endpoint)


#: ``DnstapConfig.mode``: a Frame Streams unix socket (bidirectional, to a collector) or a file.
DNSTAP_UNIX = "unix"
DNSTAP_FILE = "file"


@dataclass(frozen=True, slots=True)
class DnstapConfig:
    """The ``dnstap`` key: copies of the DNS messages, in the dnstap format, for existing DNS
    analysis tools (``resolver.ops.dnstap``). ``path`` is given as ``/run/dnstap.sock`` or
    ``unix:/run/dnstap.sock`` (a collector's socket) or ``file:/var/log/dns.tap``; stored here
    without the prefix, which goes to ``mode``."""

    path: str
    mode: str = DNSTAP_UNIX
    #: Dnstap.identity and Dnstap.version of every message; empty leaves the field out.
    identity: str = "dnssec-sidecar"
    version: str = __version__
    #: CLIENT_QUERY/CLIENT_RESPONSE: the clients' queries and our replies.
    client: bool = True
    #: RESOLVER_QUERY/RESOLVER_RESPONSE (FORWARDER_* for forwarded zones): the upstream ones.
    resolver: bool = True
    #: Messages waiting for the writer; more are dropped (and counted), never waited for.
    queue_size: int = 10000


LOG_COMPRESSION = ("none", "gzip")  # log.compress's values


@dataclass(frozen=True)
class LogConfig:
    """The ``log`` configuration key (issue #4): the forensic log (resolver.forensic.log)."""

    path: str = "-"                 # "-": standard output (Kubernetes log collection)
    fsync_interval_ms: int = 1000   # files only; 0: fsync after every batch
    max_bytes: int = 104857600      # rotate when the file would exceed this (0: never)
    max_age_s: int = 86400          # rotate when the file is older than this (0: never)
    keep: int = 10                  # rotated files kept: path.1 (newest) ... path.N
    hmac_key_file: str | None = None
    queue_size: int = 10000         # records accepted but not yet written before appends wait
    enabled: bool = True
    compress: str = "none"          # or "gzip": the file written compressed (issue #18)
    checkpoint: int = 60            # seconds between chain heads emitted elsewhere (0: never)

    def __post_init__(self) -> None:
        for name in ("fsync_interval_ms", "max_bytes", "max_age_s", "keep"):
            if getattr(self, name) < 0:
                raise ValueError(f"log.{name}: must not be negative")
        if self.queue_size < 1:
            raise ValueError("log.queue_size: must be at least 1")
        if not self.path:
            raise ValueError('log.path: empty (use "-" for standard output)')
        if self.compress not in LOG_COMPRESSION:
            raise ValueError(f"log.compress: one of {', '.join(LOG_COMPRESSION)}")
        if self.compress != "none" and self.path == "-":
            raise ValueError("log.compress: needs log.path to be a file")
        if self.checkpoint < 0:
            raise ValueError("log.checkpoint: must not be negative")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``Config()`` is every setting at its default, each default
    defined here once. ``source`` is the file it came from, or ``"<defaults>"``. ``forward`` is
    the one forward table of the resolver: the top-level ``forward`` followed by every
    service's own entries not already in it."""

    listen: tuple[Endpoint, ...] = DEFAULT_LISTEN
    root_hints: tuple[RootHint, ...] = ROOT_HINTS
    trust_anchors: tuple[dns.rrset.RRset, ...] = dataclasses.field(
        default_factory=lambda: tuple(builtin_trust_anchors()))
    forward: tuple[Forward, ...] = ()
    #: The validation time in POSIX seconds (``validation.time``); None: the clock.
    validation_time: int | None = None
    validator: ValidatorConfig = ValidatorConfig()
    #: RFC 9156 QNAME minimisation.
    qname_minimisation: bool = True
    negative_trust_anchors: tuple[dns.name.Name, ...] = ()
    outgoing_ipv4: bool = True
    outgoing_ipv6: bool = True
    #: Upstream addresses learned from zones that are never asked (resolver.outgoing).
    outgoing_do_not_query: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = \
        dataclasses.field(default_factory=default_prefixes)
    limits: ResolverLimits = ResolverLimits()
    timeouts: Timeouts = Timeouts()
    cache: CacheConfig = CacheConfig()
    source: str = "<defaults>"
    services: tuple[Service, ...] = ()
    default_service: Service = dataclasses.field(default_factory=open_default_service)
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    #: None: no dnstap output.
    dnstap: DnstapConfig | None = None
    #: Serving processes on SO_REUSEPORT sockets, each with its own cache and log chain.
    workers: int = 1
    monitor: MonitorConfig = MonitorConfig()
    #: None: no runtime policy API.
    api: ApiConfig | None = None


def default(name: str) -> Any:
    """The default of ``Config``'s field ``name``, as defined above; a fresh one where the field
    has a factory (trust anchors are mutable RRsets)."""
    field = Config.__dataclass_fields__[name]
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def replace_listen(config: Config, listen: tuple[Endpoint, ...]) -> Config:
    """``config`` listening on ``listen`` instead (``serve --listen``); a ConfigError naming
    ``services[i].listeners[j]`` if a service's listener is no longer among them."""
    for index, service in enumerate(config.services):
        check_listeners(service.listeners, listen, f"services[{index}].listeners")
    return dataclasses.replace(config, listen=tuple(listen))


def check_listeners(listeners: tuple[Endpoint, ...], listen: tuple[Endpoint, ...],
                    path: str) -> None:
    """A service's ``listeners`` must each be one of ``listen``; else a ConfigError naming
    ``path[i]``."""
    for index, endpoint in enumerate(listeners):
        if endpoint not in listen:
            raise ConfigError(f"{path}[{index}]", f"'{endpoint}' is not one of listen ("
                              + ", ".join(map(str, listen)) + ")")


def for_worker(config: Config, index: int) -> Config:
    """Worker ``index``'s view of a multi-worker configuration: its own log chain
    (``<path>.w<index>``), metrics port (``port + index``), dnstap file and cache file."""
    if config.workers <= 1:
        return config
    changes = {}
    if config.log.enabled and config.log.path != "-":
        changes["log"] = dataclasses.replace(config.log, path=f"{config.log.path}.w{index}")
    if index and config.metrics.enabled:
        listen = config.metrics.listen
        changes["metrics"] = dataclasses.replace(
            config.metrics, listen=dataclasses.replace(listen, port=listen.port + index))
    if config.cache.persist is not None:
        changes["cache"] = dataclasses.replace(config.cache,
                                               persist=f"{config.cache.persist}.w{index}")
    if config.dnstap is not None and config.dnstap.mode == DNSTAP_FILE:
        # A file holds one stream; a collector's socket takes a connection from each worker.
        changes["dnstap"] = dataclasses.replace(config.dnstap,
                                                path=f"{config.dnstap.path}.w{index}")
    return dataclasses.replace(config, **changes)

