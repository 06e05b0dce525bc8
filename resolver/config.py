"""The resolver's configuration: a YAML file read into frozen dataclasses.

Every key is checked: unknown keys, wrong types (a boolean is not an integer), out-of-range numbers,
bad names and addresses all raise :class:`ConfigError`, whose message is
``"<field path>: <reason>"``, e.g. ``listen[1]: '127.0.0.1:99999': port out of range``. A key
given as null (``cache:`` with every line under it commented out) takes its default.

Services (``services``, ``default_service``): per-service allowlists of expected zones. A query is
given to the first service, in file order, whose ``listeners`` contain the local endpoint it
arrived on and/or whose ``clients`` contain its source address (both must match when both are
given); a query matching no service gets ``default_service``. Compatibility rule: a file with
neither a ``services`` nor a ``default_service`` key keeps the resolver open, its default service
allowing every name (``allow: [{zone: ., require: insecure-ok}]``, no rebinding protection); as
soon as either key is present (even null or empty, so that commenting every service out fails
closed), ``default_service`` defaults to allowing nothing. The policy itself is applied by
:mod:`resolver.frontend.policy`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, TypeVar

import dns.exception
import dns.name
import dns.rdatatype
import dns.rrset
import yaml

from resolver import __version__, status
from resolver.dnssec.anchors import (ROOT_HINTS, RootHint, TrustAnchorError, builtin_trust_anchors,
                              load_trust_anchor_file, parse_trust_anchors)
from resolver.dnssec.config import Limits, ValidatorConfig
from resolver.errors import ResolverError
from resolver.outgoing import default_prefixes

__all__ = [
    "AllowRule", "Budgets", "CacheConfig", "Config", "ConfigError", "DnstapConfig", "Endpoint",
    "Forward", "LogConfig", "MetricsConfig",
    "ResolverLimits", "RootHint", "Service", "Timeouts", "default_config", "load_config",
    "for_worker", "open_default_service", "parse_config", "parse_endpoint", "parse_time",
    "replace_listen",
]

T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class Forward:
    """Queries at or below ``zone`` go to ``servers`` (as recursive queries) instead of being
    iterated; their answers are still validated."""

    zone: dns.name.Name
    servers: tuple[Endpoint, ...]


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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits, in milliseconds."""

    #: One try of one upstream server.
    upstream_ms: int = 1200
    #: The whole of one client query.
    query_ms: int = 4000
    #: An idle client TCP connection is closed after this (RFC 7766 §6.2.3).
    tcp_idle_ms: int = 10000


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Cache size and TTL clamps, in entries and seconds."""

    max_entries: int = 100000
    max_ttl: int = 86400
    #: Cap on negative answers' TTL (RFC 2308 §5).
    max_negative_ttl: int = 3600
    min_ttl: int = 0


#: ``AllowRule.require``: the answer must be Secure (RFC 4035 §4.3), or may also be Insecure.
REQUIRE_SECURE = "secure"
REQUIRE_INSECURE_OK = "insecure-ok"
#: ``Service.refuse_with``: REFUSED (RFC 1035 §4.1.1) or NXDOMAIN; both carry EDE 18 (RFC 8914).
REFUSE_REFUSED = "refused"
REFUSE_NXDOMAIN = "nxdomain"
#: The name of the service that clients matching no other service get.
DEFAULT_SERVICE_NAME = "default"


@dataclass(frozen=True, slots=True)
class AllowRule:
    """Names at or below ``zone`` (whole labels, case-insensitive, RFC 4343) may be resolved.

    ``require`` is ``"secure"`` (an Insecure answer is refused: how a removed DS is caught) or
    ``"insecure-ok"`` (a zone proven unsigned may be answered); Bogus is never answered.
    ``types`` limits the query types (None: all). ``allow_private`` lets answers carry private
    addresses despite the service's rebinding protection."""

    zone: dns.name.Name
    require: str
    types: frozenset[int] | None
    allow_private: bool


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


def open_default_service() -> Service:
    """The default service of a file without ``services``: every name, Insecure allowed, no
    rebinding protection (the resolver as it was before services existed)."""
    return Service(DEFAULT_SERVICE_NAME, (), (),
                   (AllowRule(dns.name.root, REQUIRE_INSECURE_OK, None, False),),
                   REFUSE_REFUSED, False, (), Budgets())


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The HTTP endpoint for Prometheus ``/metrics``, ``/healthz`` and ``/readyz``."""

    listen: Endpoint = Endpoint("127.0.0.1", 9153)
    enabled: bool = True


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

    def __post_init__(self) -> None:
        for name in ("fsync_interval_ms", "max_bytes", "max_age_s", "keep"):
            if getattr(self, name) < 0:
                raise ValueError(f"log.{name}: must not be negative")
        if self.queue_size < 1:
            raise ValueError("log.queue_size: must be at least 1")
        if not self.path:
            raise ValueError('log.path: empty (use "-" for standard output)')


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. ``source`` is the file it came from, or ``"<defaults>"``.
    ``forward`` is the one forward table of the resolver: the top-level ``forward`` followed by
    every service's own entries not already in it."""

    listen: tuple[Endpoint, ...]
    root_hints: tuple[RootHint, ...]
    trust_anchors: tuple[dns.rrset.RRset, ...]
    forward: tuple[Forward, ...]
    validation_time: int | None
    validator: ValidatorConfig
    qname_minimisation: bool
    negative_trust_anchors: tuple[dns.name.Name, ...]
    outgoing_ipv4: bool
    outgoing_ipv6: bool
    limits: ResolverLimits
    timeouts: Timeouts
    cache: CacheConfig
    source: str
    services: tuple[Service, ...] = ()
    default_service: Service = dataclasses.field(default_factory=open_default_service)
    log: LogConfig = dataclasses.field(default_factory=lambda: _log_config({}))
    metrics: "MetricsConfig" = dataclasses.field(default_factory=lambda: MetricsConfig())
    #: None: no dnstap output.
    dnstap: DnstapConfig | None = None
    #: Serving processes on SO_REUSEPORT sockets, each with its own cache and log chain.
    workers: int = 1
    #: Upstream addresses learned from zones that are never asked (resolver.outgoing).
    outgoing_do_not_query: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = \
        dataclasses.field(default_factory=default_prefixes)


DEFAULT_LISTEN = (Endpoint("127.0.0.1", 53),)

#: Inclusive bounds of every integer setting. Lower bounds of 1 where 0 would stop all work.
_RESOLVER_LIMIT_BOUNDS = {
    "max_upstream_queries": (1, 10_000),
    "max_referral_depth": (1, 128),  # a name has at most 127 labels below the root
    "max_cname_chain": (0, 64),
    "max_ns_lookups": (0, 64),
    "max_ns_lookups_per_query": (0, 256),
    "max_resolutions": (1, 1_000_000),
    "max_resolutions_per_client": (1, 1_000_000),
    "tcp_clients": (1, 100_000),
    "tcp_pipeline": (1, 1_000),
    "over_limit_answers_per_second": (0, 100_000),
}
_DNSSEC_LIMIT_BOUNDS = {
    "max_sig_checks_per_rrset": (1, 1_000),
    "max_keys_per_tag": (1, 100),
    "max_ds_per_zone": (1, 100),
    "max_nsec3_per_proof": (1, 100),
    "max_sig_checks_per_query": (1, 100_000),
    "max_nsec3_hashes_per_query": (1, 1_000_000),
    "nsec3_max_iterations": (0, 2_500),  # RFC 5155 §10.3's ceiling for 4096-bit keys
}
_DEFAULT_BOUNDS = (0, 1_000_000)
_TIMEOUT_BOUNDS = {
    "upstream_ms": (10, 60_000),
    "query_ms": (100, 600_000),
    "tcp_idle_ms": (100, 3_600_000),
}
_CACHE_BOUNDS = {
    "max_entries": (1, 100_000_000),
    "max_ttl": (1, 604_800),          # a week
    "max_negative_ttl": (0, 86_400),  # RFC 2308 §5: more than a day is problematic
    "min_ttl": (0, 3_600),
}
_DNSSEC_LIMIT_FIELDS = tuple(f.name for f in fields(Limits))
_RESOLVER_LIMIT_FIELDS = tuple(_RESOLVER_LIMIT_BOUNDS)  # the integers; over_limit is a word
_FORMER_LIMIT_NAMES = {"max_concurrent_resolutions": "max_resolutions"}

_TOP_KEYS = ("listen", "root_hints", "trust_anchors", "trust_anchor_file", "forward",
             "validation", "qname_minimisation", "negative_trust_anchors", "outgoing", "limits",
             "timeouts", "cache", "services", "default_service", "log", "metrics",
             "dnstap", "workers")
_SERVICE_KEYS = ("name", "listeners", "clients", "allow", "refuse_with", "rebinding_protection",
                 "forward", "budgets")
_DEFAULT_SERVICE_KEYS = _SERVICE_KEYS[3:]
_RULE_KEYS = ("zone", "require", "types", "allow_private")
_SERVICE_NAME = re.compile(r"[a-z0-9_.-]{1,63}")
_BUDGET_BOUNDS = {
    "max_label_length": (1, 63),
    "distinct_names_per_minute": (1, 1_000_000),
}
_MAX_QUERY_RATE = 1_000_000.0
#: The forensic log's keys (LogConfig's fields) and their bounds.
_LOG_KEYS = ("path", "fsync_interval_ms", "max_bytes", "max_age_s", "keep", "hmac_key_file",
             "queue_size", "enabled")
_LOG_BOUNDS = {
    "fsync_interval_ms": (0, 3_600_000),  # 0: after every batch
    "max_bytes": (0, 1 << 40),            # 0: never rotate by size
    "max_age_s": (0, 366 * 86400),        # 0: never rotate by age
    "keep": (0, 100_000),
    "queue_size": (1, 10_000_000),
}
_LOG_MIN_BYTES = 4096
_DNSTAP_KEYS = ("path", "identity", "version", "client", "resolver", "queue_size")
_DNSTAP_QUEUE_BOUNDS = (1, 10_000_000)
_DNSTAP_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.S)
_DNSTAP_TEXT_MAX = 255   # bytes of identity or version, as for an NSID (RFC 5001) or TXT string
_SUN_PATH_MAX = 107      # sockaddr_un.sun_path holds 108 bytes with the final NUL (unix(7))


# --- time -----------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def parse_time(value: str | int | datetime) -> int:
    """POSIX seconds from an RFC 3339 timestamp with a UTC offset or ``Z`` (RFC 3339 §5.6;
    fractions dropped), from epoch seconds (an int or a string of digits), or from an aware
    datetime. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"time needs a UTC offset or Z: {value.isoformat()!r}")
        seconds = int(value.timestamp())
    elif isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]+", text):
            seconds = int(text)
        elif match := _RFC3339.fullmatch(text):
            day, clock, offset = match.groups()
            offset = "+00:00" if offset in ("Z", "z") else offset
            try:
                seconds = int(datetime.fromisoformat(f"{day}T{clock}{offset}").timestamp())
            except ValueError as exc:
                raise ValueError(f"not a valid time: {value!r} ({exc})") from None
        elif _NO_OFFSET.fullmatch(text):
            raise ValueError(f"time needs a UTC offset or Z: {value!r}")
        else:
            raise ValueError(f"not an RFC 3339 time or epoch seconds: {value!r}")
    else:
        raise ValueError(f"not a time: {value!r}")
    if not 0 <= seconds <= _MAX_TIME:
        raise ValueError(f"time out of range: {value!r}")
    return seconds


# --- endpoints ------------------------------------------------------------------------------

def _address(text: str) -> str:
    """The normalised form of an IPv4 or IPv6 address; ValueError otherwise."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r}: not an IP address") from None


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """``ADDR:PORT`` with an IPv4 address or a bracketed IPv6 one (``[::1]:53``). With a
    ``default_port`` the port may be left out, and then an IPv6 address may go unbracketed.
    Raises ValueError with a reason that quotes ``text``."""
    def fail(reason: str) -> ValueError:
        return ValueError(f"{text!r}: {reason}")

    port_text: str | None
    if text.startswith("["):
        match = re.fullmatch(r"\[([^\[\]]*)\](?::(.*))?", text)
        if not match:
            raise fail("expected [IPv6]:PORT")
        host, port_text = match.groups()
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            raise fail(f"{host!r} is not an IPv6 address") from None
        if parsed.version != 6:
            raise fail("brackets are for IPv6 addresses only")
    elif text.count(":") > 1:
        if default_port is None:
            raise fail("an IPv6 address needs brackets and a port, as in [::1]:53")
        host, port_text = text, None
        try:
            parsed = ipaddress.IPv6Address(host)
        except ValueError:
            raise fail("not an IPv6 address") from None
    else:
        host, _, port_text = text.partition(":")
        if ":" not in text:
            port_text = None
        try:
            parsed = ipaddress.IPv4Address(host)
        except ValueError:
            raise fail(f"{host!r} is not an IPv4 address") from None
    if port_text is None:
        if default_port is None:
            raise fail("missing port (ADDR:PORT)")
        port = default_port
    else:
        if not re.fullmatch(r"[0-9]{1,6}", port_text):
            raise fail(f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise fail("port out of range")
    return Endpoint(str(parsed), port)


# --- typed readers, each naming the field path in its errors --------------------------------

def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    return {int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)


def _mapping(value: object, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path or "config", f"expected a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path or "config", f"key {key!r} is not a string")
        if key not in keys:
            raise ConfigError(f"{path}.{key}" if path else key,
                              f"unknown key (expected one of: {', '.join(keys)})")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list, got {_kind(value)}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_kind(value)}")
    return value


def _int(value: object, path: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {_kind(value)}")
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(path, f"{value} is out of range {low}..{high}")
    return value


def _str(value: object, path: str, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected {what}, got {_kind(value)}")
    return value


def _name(value: object, path: str) -> dns.name.Name:
    """A DNS name, made absolute (RFC 1035 §3.1 limits, checked by dnspython)."""
    text = _str(value, path, "a DNS name")
    if not text.strip():
        raise ConfigError(path, "empty name")
    try:
        return dns.name.from_text(text.strip())
    except dns.exception.DNSException as exc:
        raise ConfigError(path, f"{text!r}: {exc}") from None


def _endpoint(value: object, path: str, default_port: int | None) -> Endpoint:
    what = "a string 'ADDR:PORT'" if default_port is None else "a string 'ADDR' or 'ADDR:PORT'"
    if isinstance(value, list):
        raise ConfigError(path, f"expected {what}, got list (quote IPv6 addresses in YAML)")
    try:
        return parse_endpoint(_str(value, path, what), default_port)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(path, str(exc)) from None


def _unique(items: list[T], path: str, key: Callable[[T], object], show: Callable[[T], str],
            ) -> None:
    seen: set[object] = set()
    for index, item in enumerate(items):
        if key(item) in seen:
            raise ConfigError(f"{path}[{index}]", f"{show(item)}: duplicate")
        seen.add(key(item))


def _nonempty(value: object, path: str) -> list[Any]:
    items = _list(value, path)
    if not items:
        raise ConfigError(path, "must not be empty")
    return items


def _given(data: dict[str, Any], key: str) -> bool:
    return data.get(key) is not None


def _required(data: dict[str, Any], key: str, path: str) -> Any:
    if data.get(key) is None:
        raise ConfigError(f"{path}.{key}", "missing")
    return data[key]


# --- sections -------------------------------------------------------------------------------

def _listen(value: object) -> tuple[Endpoint, ...]:
    items = [_endpoint(item, f"listen[{i}]", None) for i, item in enumerate(
        _nonempty(value, "listen"))]
    _unique(items, "listen", lambda e: e, lambda e: repr(str(e)))
    return tuple(items)


def _root_hints(value: object) -> tuple[RootHint, ...]:
    hints = []
    for index, item in enumerate(_nonempty(value, "root_hints")):
        path = f"root_hints[{index}]"
        data = _mapping(item, path, ("name", "addresses"))
        name = _name(_required(data, "name", path), f"{path}.name")
        addresses = []
        for i, address in enumerate(_nonempty(_required(data, "addresses", path),
                                              f"{path}.addresses")):
            where = f"{path}.addresses[{i}]"
            try:
                addresses.append(_address(_str(address, where, "an IP address")))
            except ValueError as exc:
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError(where, str(exc)) from None
        _unique(addresses, f"{path}.addresses", lambda a: a, repr)
        hints.append(RootHint(name, tuple(addresses)))
    _unique(hints, "root_hints", lambda h: h.name, lambda h: f"name {h.name}")
    return tuple(hints)


def _trust_anchors(data: dict[str, Any], base_dir: str | None) -> tuple[dns.rrset.RRset, ...]:
    if _given(data, "trust_anchors") and _given(data, "trust_anchor_file"):
        raise ConfigError("trust_anchor_file", "conflicts with trust_anchors (give one of them)")
    if _given(data, "trust_anchor_file"):
        path = _str(data["trust_anchor_file"], "trust_anchor_file", "a file path")
        if not path.strip():
            raise ConfigError("trust_anchor_file", "empty path")
        if base_dir is not None and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        try:
            return tuple(load_trust_anchor_file(path))
        except TrustAnchorError as exc:
            raise ConfigError("trust_anchor_file", str(exc), status.UNREADABLE if exc.unreadable
                              else status.INVALID) from None
    if _given(data, "trust_anchors"):
        lines = _nonempty(data["trust_anchors"], "trust_anchors")
        try:
            return tuple(parse_trust_anchors(lines))
        except TrustAnchorError as exc:
            raise ConfigError(f"trust_anchors[{exc.index}]", exc.reason) from None
    return tuple(builtin_trust_anchors())


def _forward(value: object, where: str = "forward") -> tuple[Forward, ...]:
    forwards = []
    for index, item in enumerate(_list(value, where)):
        path = f"{where}[{index}]"
        data = _mapping(item, path, ("zone", "addresses"))
        zone = _name(_required(data, "zone", path), f"{path}.zone")
        servers = [_endpoint(address, f"{path}.addresses[{i}]", 53) for i, address in enumerate(
            _nonempty(_required(data, "addresses", path), f"{path}.addresses"))]
        _unique(servers, f"{path}.addresses", lambda e: e, lambda e: repr(str(e)))
        forwards.append(Forward(zone, tuple(servers)))
    for index, item in enumerate(forwards):
        if any(item.zone == other.zone for other in forwards[:index]):
            raise ConfigError(f"{where}[{index}].zone", f"{item.zone}: duplicate zone")
    return tuple(forwards)


def _negative_trust_anchors(value: object) -> tuple[dns.name.Name, ...]:
    names = []
    for index, item in enumerate(_list(value, "negative_trust_anchors")):
        name = _name(item, f"negative_trust_anchors[{index}]")
        if name == dns.name.root:
            raise ConfigError(f"negative_trust_anchors[{index}]",
                              "the root cannot be a negative trust anchor: it would turn "
                              "validation off (RFC 7646)")
        names.append(name)
    _unique(names, "negative_trust_anchors", lambda n: n, str)
    return tuple(names)


def _validation(value: object) -> tuple[int | None, bool]:
    data = _mapping(value, "validation", ("time", "allow_sha1"))
    when = None
    if _given(data, "time"):
        raw = data["time"]
        if isinstance(raw, date) and not isinstance(raw, datetime):
            raise ConfigError("validation.time", f"{raw.isoformat()}: a date needs a time and a "
                                                 "UTC offset, as in 2026-06-01T00:00:00Z")
        if not isinstance(raw, (str, int, datetime)) or isinstance(raw, bool):
            raise ConfigError("validation.time", f"expected an RFC 3339 time or epoch seconds, "
                                                 f"got {_kind(raw)}")
        try:
            when = parse_time(raw)
        except ValueError as exc:
            raise ConfigError("validation.time", str(exc)) from None
    allow_sha1 = _bool(data["allow_sha1"], "validation.allow_sha1") if _given(
        data, "allow_sha1") else False
    return when, allow_sha1


def _ints(data: dict[str, Any], path: str, names: tuple[str, ...],
          bounds: dict[str, tuple[int, int]]) -> dict[str, int]:
    return {name: _int(data[name], f"{path}.{name}", bounds.get(name, _DEFAULT_BOUNDS))
            for name in names if _given(data, name)}


def _limits(value: object) -> tuple[ResolverLimits, Limits]:
    data = dict(_mapping(value, "limits", _RESOLVER_LIMIT_FIELDS + _DNSSEC_LIMIT_FIELDS
                         + ("over_limit",) + tuple(_FORMER_LIMIT_NAMES)))
    for former, name in _FORMER_LIMIT_NAMES.items():
        if former in data:
            if name in data:
                raise ConfigError(f"limits.{former}", f"the former name of limits.{name}; "
                                                      "give only one of them")
            data[name] = _int(data.pop(former), f"limits.{former}",
                              _RESOLVER_LIMIT_BOUNDS[name])
    resolver = ResolverLimits(**_ints(data, "limits", _RESOLVER_LIMIT_FIELDS,
                                      _RESOLVER_LIMIT_BOUNDS))
    if _given(data, "over_limit"):
        resolver = dataclasses.replace(resolver, over_limit=_choice(
            data["over_limit"], "limits.over_limit", (OVER_LIMIT_SERVFAIL, OVER_LIMIT_DROP)))
    dnssec = Limits(**_ints(data, "limits", _DNSSEC_LIMIT_FIELDS, _DNSSEC_LIMIT_BOUNDS))
    return resolver, dnssec


def _timeouts(value: object) -> Timeouts:
    names = tuple(_TIMEOUT_BOUNDS)
    timeouts = Timeouts(**_ints(_mapping(value, "timeouts", names), "timeouts", names,
                                _TIMEOUT_BOUNDS))
    if timeouts.query_ms < timeouts.upstream_ms:
        raise ConfigError("timeouts.query_ms", f"{timeouts.query_ms} is less than "
                                               f"timeouts.upstream_ms ({timeouts.upstream_ms})")
    return timeouts


def _cache(value: object) -> CacheConfig:
    names = tuple(_CACHE_BOUNDS)
    cache = CacheConfig(**_ints(_mapping(value, "cache", names), "cache", names, _CACHE_BOUNDS))
    if cache.min_ttl > cache.max_ttl:
        raise ConfigError("cache.min_ttl", f"{cache.min_ttl} is more than cache.max_ttl "
                                           f"({cache.max_ttl})")
    return cache


def _metrics(value: object) -> MetricsConfig:
    section = _mapping(value, "metrics", ("listen", "enabled"))
    config = MetricsConfig()
    if _given(section, "listen"):
        config = dataclasses.replace(config, listen=_endpoint(section["listen"],
                                                              "metrics.listen", None))
    if _given(section, "enabled"):
        config = dataclasses.replace(config, enabled=_bool(section["enabled"],
                                                           "metrics.enabled"))
    return config


def _check_families(hints: tuple[RootHint, ...], forwards: list[tuple[str, Forward]],
                    ipv4: bool, ipv6: bool, hints_given: bool) -> None:
    """Every upstream must be reachable over an address family that ``outgoing`` allows.
    ``forwards`` pairs each forward entry with its field path."""
    off = "outgoing.ipv4 is false" if not ipv4 else "outgoing.ipv6 is false"

    def usable(host: str) -> bool:
        return ipv6 if ":" in host else ipv4

    if ipv4 and ipv6:
        return
    for path, forward in forwards:
        if not any(usable(server.host) for server in forward.servers):
            raise ConfigError(f"{path}.addresses", f"no address usable: {off}")
    if any(forward.zone == dns.name.root for _, forward in forwards):
        return  # everything is forwarded: the root hints are never used
    if not any(usable(address) for hint in hints for address in hint.addresses):
        raise ConfigError("root_hints" if hints_given else "outgoing",
                          f"no root hint address usable: {off}")


# --- services and the forensic log ----------------------------------------------------------

def _overlaps(a: dns.name.Name, b: dns.name.Name) -> bool:
    return a.is_subdomain(b) or b.is_subdomain(a)


def _choice(value: object, path: str, choices: tuple[str, str]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    got = "" if isinstance(value, str) else f", got {_kind(value)}"
    raise ConfigError(path, f"must be {choices[0]} or {choices[1]}{got}")


def _types(value: object, path: str) -> frozenset[int]:
    codes: list[int] = []
    for index, item in enumerate(_nonempty(value, path)):
        where = f"{path}[{index}]"
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ConfigError(where, f"expected a type name such as AAAA, got {_kind(item)}")
        try:
            code = (dns.rdatatype.RdataType.make(item) if isinstance(item, int)
                    else dns.rdatatype.from_text(item.strip()))
        except (ValueError, dns.exception.DNSException):
            raise ConfigError(where, f"{item!r}: not a DNS type") from None
        if code in (dns.rdatatype.NONE, dns.rdatatype.OPT):
            raise ConfigError(where, f"{item!r}: not a query type")
        codes.append(int(code))
    _unique(codes, path, lambda c: c, lambda c: dns.rdatatype.to_text(c))
    return frozenset(codes)


def _allow(value: object, path: str) -> tuple[AllowRule, ...]:
    rules = []
    for index, item in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        data = _mapping(item, where, _RULE_KEYS)
        zone = _name(_required(data, "zone", where), f"{where}.zone")
        require = _choice(data["require"], f"{where}.require", (
            REQUIRE_SECURE, REQUIRE_INSECURE_OK)) if _given(data, "require") else REQUIRE_SECURE
        types = _types(data["types"], f"{where}.types") if _given(data, "types") else None
        allow_private = _bool(data["allow_private"], f"{where}.allow_private") if _given(
            data, "allow_private") else False
        rules.append(AllowRule(zone, require, types, allow_private))
    for index, rule in enumerate(rules):
        if any(rule.zone == other.zone for other in rules[:index]):
            raise ConfigError(f"{path}[{index}].zone", f"{rule.zone}: duplicate zone")
    return tuple(rules)


def _budgets(value: object, path: str) -> Budgets:
    data = _mapping(value, path, tuple(f.name for f in fields(Budgets)))
    rate: float | None = None
    if _given(data, "query_rate"):
        raw = data["query_rate"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{path}.query_rate", f"expected a number, got {_kind(raw)}")
        if not 0 < raw <= _MAX_QUERY_RATE:  # also false for NaN
            raise ConfigError(f"{path}.query_rate",
                              f"{raw} is out of range (0, {_MAX_QUERY_RATE:g}]")
        rate = float(raw)
    return Budgets(query_rate=rate, **_ints(data, path, tuple(_BUDGET_BOUNDS), _BUDGET_BOUNDS))


def _prefixes(value: object, path: str, *, empty_ok: bool = False,
              ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of address prefixes ('10.1.2.0/24', 'fe80::/10'; a bare address is a /32 or
    /128), without duplicates."""
    prefixes = []
    for index, item in enumerate(_list(value, path) if empty_ok else _nonempty(value, path)):
        where = f"{path}[{index}]"
        text = _str(item, where, "an address prefix such as '10.1.2.0/24'")
        try:
            prefixes.append(ipaddress.ip_network(text.strip()))
        except ValueError as exc:
            reason = "has host bits set" if "host bits" in str(exc) else "not an address prefix"
            raise ConfigError(where, f"{text!r}: {reason}") from None
    _unique(prefixes, path, lambda p: p, lambda p: repr(str(p)))
    return tuple(prefixes)


def _service(value: object, path: str, listen: tuple[Endpoint, ...], *, named: bool) -> Service:
    """One entry of ``services`` (``named``), or ``default_service``."""
    data = _mapping(value, path, _SERVICE_KEYS if named else _DEFAULT_SERVICE_KEYS)
    name, listeners, clients = DEFAULT_SERVICE_NAME, (), ()
    if named:
        name = _str(_required(data, "name", path), f"{path}.name")
        if not _SERVICE_NAME.fullmatch(name):
            raise ConfigError(f"{path}.name", f"{name!r}: must be 1 to 63 of a-z 0-9 - _ .")
        if name == DEFAULT_SERVICE_NAME:
            raise ConfigError(f"{path}.name", f"{name!r} is reserved for default_service")
        if _given(data, "listeners"):
            items = [_endpoint(item, f"{path}.listeners[{i}]", None) for i, item in enumerate(
                _nonempty(data["listeners"], f"{path}.listeners"))]
            _unique(items, f"{path}.listeners", lambda e: e, lambda e: repr(str(e)))
            for index, endpoint in enumerate(items):
                if endpoint not in listen:
                    raise ConfigError(f"{path}.listeners[{index}]", f"'{endpoint}' is not one of "
                                      "listen (" + ", ".join(map(str, listen)) + ")")
            listeners = tuple(items)
        if _given(data, "clients"):
            clients = _prefixes(data["clients"], f"{path}.clients")
        if not listeners and not clients:
            raise ConfigError(path, "needs listeners or clients (or both) to say whose queries "
                                    "it serves")
    allow = _allow(data["allow"], f"{path}.allow") if _given(data, "allow") else ()
    refuse_with = _choice(data["refuse_with"], f"{path}.refuse_with", (
        REFUSE_REFUSED, REFUSE_NXDOMAIN)) if _given(data, "refuse_with") else REFUSE_REFUSED
    rebinding = _bool(data["rebinding_protection"], f"{path}.rebinding_protection") if _given(
        data, "rebinding_protection") else True
    forward = _forward(data["forward"], f"{path}.forward") if _given(data, "forward") else ()
    for index, item in enumerate(forward):
        if not any(_overlaps(item.zone, rule.zone) for rule in allow):
            raise ConfigError(f"{path}.forward[{index}].zone",
                              f"{item.zone} is outside every zone of {path}.allow")
    return Service(name, listeners, clients, allow, refuse_with, rebinding, forward,
                   _budgets(data.get("budgets"), f"{path}.budgets"))


def _services(top: dict[str, Any], listen: tuple[Endpoint, ...],
              ) -> tuple[tuple[Service, ...], Service]:
    """``services`` and ``default_service``, with the compatibility rule of the module
    docstring: neither key present keeps the resolver open."""
    if "services" not in top and "default_service" not in top:
        return (), open_default_service()
    services = []
    if _given(top, "services"):
        services = [_service(item, f"services[{index}]", listen, named=True)
                    for index, item in enumerate(_list(top["services"], "services"))]
        _unique(services, "services", lambda s: s.name, lambda s: f"name {s.name!r}")
    default = _service(top.get("default_service"), "default_service", listen, named=False)
    return tuple(services), default


def _merge_forwards(top_level: tuple[Forward, ...], services: tuple[Service, ...],
                    default: Service) -> tuple[tuple[Forward, ...], list[tuple[str, Forward]]]:
    """The resolver's one forward table from the top-level ``forward`` and every service's own,
    and every entry with its field path. A zone forwarded to two different sets of addresses is
    an error naming both places."""
    entries = [(f"forward[{i}]", fwd) for i, fwd in enumerate(top_level)]
    for index, service in enumerate(services):
        entries += [(f"services[{index}].forward[{i}]", fwd)
                    for i, fwd in enumerate(service.forward)]
    entries += [(f"default_service.forward[{i}]", fwd) for i, fwd in enumerate(default.forward)]
    names = {f"services[{i}]": s.name for i, s in enumerate(services)}
    merged: dict[dns.name.Name, tuple[str, Forward]] = {}
    for path, forward in entries:
        if forward.zone not in merged:
            merged[forward.zone] = (path, forward)
            continue
        first_path, first = merged[forward.zone]
        if set(first.servers) != set(forward.servers):
            owner = first_path.split(".")[0]
            by = f"{first_path} ({names[owner]})" if owner in names else first_path
            raise ConfigError(
                f"{path}.zone", f"{forward.zone} is forwarded to "
                + ", ".join(map(str, forward.servers)) + " here but to "
                + ", ".join(map(str, first.servers)) + f" by {by}: the resolver has one "
                "forward table")
    return tuple(forward for _, forward in merged.values()), entries


def _log_config(data: dict[str, Any], base_dir: str | None = None) -> LogConfig:
    """The ``LogConfig`` of the ``log`` mapping."""
    values: dict[str, Any] = _ints(data, "log", tuple(_LOG_BOUNDS), _LOG_BOUNDS)
    if 0 < values.get("max_bytes", 0) < _LOG_MIN_BYTES:
        raise ConfigError("log.max_bytes", f"{values['max_bytes']}: must be 0 (never rotate by "
                                           f"size) or at least {_LOG_MIN_BYTES}")
    if _given(data, "path"):
        path = _str(data["path"], "log.path", 'a file path or "-"')
        if not path.strip():
            raise ConfigError("log.path", 'empty path (use "-" for standard output)')
        values["path"] = path
    if _given(data, "hmac_key_file"):
        key_file = _str(data["hmac_key_file"], "log.hmac_key_file", "a file path")
        if not key_file.strip():
            raise ConfigError("log.hmac_key_file", "empty path")
        if base_dir is not None and not os.path.isabs(key_file):
            key_file = os.path.join(base_dir, key_file)
        values["hmac_key_file"] = key_file
    if _given(data, "enabled"):
        values["enabled"] = _bool(data["enabled"], "log.enabled")
    return LogConfig(**values)


def _dnstap(value: object) -> DnstapConfig | None:
    """The ``dnstap`` mapping; absent or null: off."""
    if value is None:
        return None
    data = _mapping(value, "dnstap", _DNSTAP_KEYS)
    text = _str(_required(data, "path", "dnstap"), "dnstap.path",
                'a path: "/run/dnstap.sock", "unix:/run/dnstap.sock" or "file:/var/log/dns.tap"')
    mode, path = DNSTAP_UNIX, text
    if (scheme := _DNSTAP_SCHEME.fullmatch(text)) and not text.startswith(("/", ".")):
        mode, path = scheme.group(1).lower(), scheme.group(2)
        if mode not in (DNSTAP_UNIX, DNSTAP_FILE):
            raise ConfigError("dnstap.path", f"{text!r}: unsupported output {mode!r} (unix: "
                                             "for a collector's socket, file: for a file)")
        if path.startswith("//"):
            raise ConfigError("dnstap.path", f"{text!r}: not a URL: write {mode}:/PATH")
    if not path.strip():
        raise ConfigError("dnstap.path", f"{text!r}: empty path")
    if "\0" in path:
        raise ConfigError("dnstap.path", f"{text!r}: NUL in the path")
    if mode == DNSTAP_UNIX and len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ConfigError("dnstap.path", f"{text!r}: a unix socket path is at most "
                                         f"{_SUN_PATH_MAX} bytes")
    values: dict[str, Any] = {"path": path, "mode": mode}
    for key in ("identity", "version"):
        if _given(data, key):
            item = _str(data[key], f"dnstap.{key}")
            if len(item.encode("utf-8", "surrogatepass")) > _DNSTAP_TEXT_MAX:
                raise ConfigError(f"dnstap.{key}", f"longer than {_DNSTAP_TEXT_MAX} bytes")
            values[key] = item
    for key in ("client", "resolver"):
        if _given(data, key):
            values[key] = _bool(data[key], f"dnstap.{key}")
    if _given(data, "queue_size"):
        values["queue_size"] = _int(data["queue_size"], "dnstap.queue_size",
                                    _DNSTAP_QUEUE_BOUNDS)
    config = DnstapConfig(**values)
    if not config.client and not config.resolver:
        raise ConfigError("dnstap", "client and resolver are both false: nothing to send "
                                    "(leave dnstap out to turn it off)")
    return config


# --- entry points ---------------------------------------------------------------------------

def parse_config(data: object, source: str = "<string>", *, base_dir: str | None = None,
                 ) -> Config:
    """A :class:`Config` from parsed YAML (``None`` gives the defaults). A relative
    ``trust_anchor_file`` is taken from ``base_dir`` if given, else the working directory."""
    top = _mapping(data, "", _TOP_KEYS)
    listen = _listen(top["listen"]) if _given(top, "listen") else DEFAULT_LISTEN
    hints = _root_hints(top["root_hints"]) if _given(top, "root_hints") else ROOT_HINTS
    anchors = _trust_anchors(top, base_dir)
    forward = _forward(top["forward"]) if _given(top, "forward") else ()
    when, allow_sha1 = _validation(top.get("validation"))
    qmin = _bool(top["qname_minimisation"], "qname_minimisation") if _given(
        top, "qname_minimisation") else True
    ntas = _negative_trust_anchors(top["negative_trust_anchors"]) if _given(
        top, "negative_trust_anchors") else ()
    outgoing = _mapping(top.get("outgoing"), "outgoing", ("ipv4", "ipv6", "do_not_query"))
    ipv4 = _bool(outgoing["ipv4"], "outgoing.ipv4") if _given(outgoing, "ipv4") else True
    ipv6 = _bool(outgoing["ipv6"], "outgoing.ipv6") if _given(outgoing, "ipv6") else True
    do_not_query = _prefixes(outgoing["do_not_query"], "outgoing.do_not_query", empty_ok=True) \
        if _given(outgoing, "do_not_query") else default_prefixes()
    if not ipv4 and not ipv6:
        raise ConfigError("outgoing", "ipv4 and ipv6 cannot both be false")
    services, default_service = _services(top, listen)
    forward, forward_entries = _merge_forwards(forward, services, default_service)
    _check_families(hints, forward_entries, ipv4, ipv6, _given(top, "root_hints"))
    resolver_limits, dnssec_limits = _limits(top.get("limits"))
    return Config(
        listen=listen, root_hints=hints, trust_anchors=anchors, forward=forward,
        validation_time=when, validator=ValidatorConfig(allow_sha1=allow_sha1,
                                                        limits=dnssec_limits),
        qname_minimisation=qmin, negative_trust_anchors=ntas, outgoing_ipv4=ipv4,
        outgoing_ipv6=ipv6, limits=resolver_limits, timeouts=_timeouts(top.get("timeouts")),
        cache=_cache(top.get("cache")), source=source, services=services,
        default_service=default_service,
        log=_log_config(_mapping(top.get("log"), "log", _LOG_KEYS), base_dir),
        metrics=_metrics(top.get("metrics")), dnstap=_dnstap(top.get("dnstap")),
        workers=_workers(top), outgoing_do_not_query=do_not_query)


MAX_WORKERS = 64


def available_cores(cgroup_root: str = "/sys/fs/cgroup",
                    membership: str = "/proc/self/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, bounded by its cgroup v2 CPU quota
    (``cpu.max``, which a container's CPU limit sets), rounded up; at least 1."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open(membership) as cgroup:
            paths = [line.rstrip("\n").split(":", 2)[2] for line in cgroup if line.startswith("0::")]
        with open(f"{cgroup_root}{paths[0] if paths else ''}/cpu.max") as limit:
            quota, period = limit.read().split()
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    except (OSError, ValueError, IndexError):
        pass
    return max(1, min(cores, MAX_WORKERS))


def _workers(top: dict) -> int:
    """``workers``: 1 to 64, or ``auto`` for the CPUs available (:func:`available_cores`). More
    than one needs the log in a file: each worker keeps its own chain in ``<path>.w<N>``, which
    standard output could only interleave."""
    if not _given(top, "workers"):
        return 1
    auto = top["workers"] == "auto"
    if auto:
        workers = available_cores()
    elif isinstance(top["workers"], str):
        raise ConfigError("workers", f'expected an integer or "auto", got {top["workers"]!r}')
    else:
        workers = _int(top["workers"], "workers", (1, MAX_WORKERS))
    log = top.get("log") or {}
    if workers > 1 and (not isinstance(log, dict) or log.get("path", "-") == "-") and \
            (not isinstance(log, dict) or log.get("enabled", True) is not False):
        raise ConfigError("workers", (f"auto: {workers} CPUs here; " if auto else "") +
                          "more than one worker needs log.path to be a file "
                          "(each worker writes its own chain)")
    return workers


def replace_listen(config: Config, listen: tuple[Endpoint, ...]) -> Config:
    """``config`` listening on ``listen`` instead (``serve --listen``); a ConfigError naming
    ``services[i].listeners[j]`` if a service's listener is no longer among them."""
    for index, service in enumerate(config.services):
        for position, endpoint in enumerate(service.listeners):
            if endpoint not in listen:
                raise ConfigError(f"services[{index}].listeners[{position}]",
                                  f"'{endpoint}' is not one of listen ("
                                  + ", ".join(map(str, listen)) + ")")
    return dataclasses.replace(config, listen=tuple(listen))


def for_worker(config: Config, index: int) -> Config:
    """Worker ``index``'s view of a multi-worker configuration: its own log chain
    (``<path>.w<index>``), metrics port (``port + index``) and dnstap file."""
    if config.workers <= 1:
        return config
    changes = {}
    if config.log.enabled and config.log.path != "-":
        changes["log"] = dataclasses.replace(config.log, path=f"{config.log.path}.w{index}")
    if index and config.metrics.enabled:
        listen = config.metrics.listen
        changes["metrics"] = dataclasses.replace(
            config.metrics, listen=dataclasses.replace(listen, port=listen.port + index))
    if config.dnstap is not None and config.dnstap.mode == DNSTAP_FILE:
        # A file holds one stream; a collector's socket takes a connection from each worker.
        changes["dnstap"] = dataclasses.replace(config.dnstap,
                                                path=f"{config.dnstap.path}.w{index}")
    return dataclasses.replace(config, **changes)


def default_config() -> Config:
    """The configuration with every setting at its default."""
    return parse_config(None, "<defaults>")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, but a key given twice in one mapping is an error rather than
    silently the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        context = f"{context} at line {context_mark.line + 1}"
    reason = f"{problem} ({context})" if context else problem
    if mark is None:
        return ConfigError("", f"YAML: {reason}")
    return ConfigError(f"line {mark.line + 1}, column {mark.column + 1}", f"YAML: {reason}")


def load_config(path: str) -> Config:
    """Read and check a YAML configuration file; every failure is a :class:`ConfigError`."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror or exc}", status.UNREADABLE) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    return parse_config(data, path, base_dir=os.path.dirname(os.path.abspath(path)))
