"""The sections of the configuration file other than the services (resolver.config.services):
each reads one top-level key into its schema dataclass, checking every value and its bounds.

The bounds below are inclusive, with lower bounds of 1 where 0 would stop all work. ``limits``
holds the resolver's budgets (:class:`~resolver.config.schema.ResolverLimits`) and the
validator's (:class:`~resolver.dnssec.config.Limits`: KeyTrap, CVE-2023-50387; NSEC3 hash floods,
CVE-2023-50868; RFC 9276 §3.2). ``limits.max_concurrent_resolutions`` is the documented former
name of ``limits.max_resolutions``, still read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from base64 import b64decode, b64encode
from datetime import date, datetime
from typing import Any

import dns.name
import dns.rrset

from resolver import status
from resolver.config.schema import (API_TCP, API_UNIX, DNSTAP_FILE, DNSTAP_UNIX, DOT_PORT,
                                    LOG_COMPRESSION, OVER_LIMIT_DROP, OVER_LIMIT_SERVFAIL,
                                    ApiConfig, CacheConfig, ConfigError, DnstapConfig, Endpoint,
                                    Forward, ForwardTls, LogConfig, MetricsConfig, MonitorConfig,
                                    ResolverLimits, ServeStale, Timeouts, default)
from resolver.config.values import (_address, _bool, _choice, _duration, _endpoint, _given,
                                    _int, _ints, _kind, _list, _mapping, _name, _nonempty, _path,
                                    _required, _str, _unique, parse_time)
from resolver.dnssec.anchors import (RootHint, TrustAnchorError, load_trust_anchor_file,
                                     parse_trust_anchors)
from resolver.dnssec.config import Limits

#: Inclusive bounds of every integer setting. Lower bounds of 1 where 0 would stop all work.
_RESOLVER_LIMIT_BOUNDS = {
    "max_upstream_queries": (1, 10_000),
    "max_referral_depth": (1, 128),  # a name has at most 127 labels below the root
    "max_cname_chain": (0, 64),
    "max_ns_lookups": (0, 64),
    "max_ns_lookups_per_query": (0, 256),
    "max_ns_nxdomain_per_query": (1, 256),
    "max_resolutions": (1, 1_000_000),
    "max_resolutions_per_client": (1, 1_000_000),
    "tcp_clients": (1, 100_000),
    "tcp_pipeline": (1, 1_000),
    "over_limit_answers_per_second": (0, 100_000),
    "max_misses_per_client_per_second": (0, 1_000_000),
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
_TIMEOUT_BOUNDS = {
    "upstream_ms": (10, 60_000),
    "query_ms": (100, 600_000),
    "tcp_idle_ms": (100, 3_600_000),
    "drain_ms": (0, 600_000),
}
_CACHE_BOUNDS = {
    "max_entries": (1, 100_000_000),
    "max_ttl": (1, 604_800),          # a week
    "max_negative_ttl": (0, 86_400),  # RFC 2308 §5: more than a day is problematic
    "min_ttl": (0, 3_600),
}
_MAX_STALE_BOUNDS = (1, 604_800)  # seconds past expiry: a week at most (RFC 8767 §5: 1-3 days)
_CLIENT_TIMEOUT_BOUNDS = (0, 600_000)  # ms before a stale answer; 0: at once (RFC 8767 §5)
_DNSSEC_LIMIT_FIELDS = tuple(_DNSSEC_LIMIT_BOUNDS)  # every field of Limits (a test checks)
_RESOLVER_LIMIT_FIELDS = tuple(_RESOLVER_LIMIT_BOUNDS)  # the integers; over_limit is a word
_FORMER_LIMIT_NAMES = {"max_concurrent_resolutions": "max_resolutions"}
#: The forensic log's keys (LogConfig's fields) and their bounds.
_LOG_KEYS = tuple(f.name for f in dataclasses.fields(LogConfig))
_LOG_BOUNDS = {
    "fsync_interval_ms": (0, 3_600_000),  # 0: after every batch
    "max_bytes": (0, 1 << 40),            # 0: never rotate by size
    "max_age_s": (0, 366 * 86400),        # 0: never rotate by age
    "keep": (0, 100_000),
    "queue_size": (1, 10_000_000),
}
_LOG_MIN_BYTES = 4096
_CHECKPOINT_BOUNDS = (0, 86_400)  # seconds between chain heads (log.checkpoint); 0: never
_DNSTAP_KEYS = ("path", "identity", "version", "client", "resolver", "queue_size")
_DNSTAP_QUEUE_BOUNDS = (1, 10_000_000)
_DNSTAP_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.S)
_DNSTAP_TEXT_MAX = 255   # bytes of identity or version, as for an NSID (RFC 5001) or TXT string
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
SPKI_PIN_OCTETS = 32     # a SHA-256 digest (RFC 7469 §2.4)
_SUN_PATH_MAX = 107      # sockaddr_un.sun_path holds 108 bytes with the final NUL (unix(7))


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
        path = _path(data["trust_anchor_file"], "trust_anchor_file", base_dir)
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
    return default("trust_anchors")


def _forward(value: object, where: str = "forward", base_dir: str | None = None,
             ) -> tuple[Forward, ...]:
    forwards = []
    for index, item in enumerate(_list(value, where)):
        path = f"{where}[{index}]"
        data = _mapping(item, path, ("zone", "addresses", "tls"))
        zone = _name(_required(data, "zone", path), f"{path}.zone")
        tls = _forward_tls(data["tls"], f"{path}.tls", base_dir) if _given(data, "tls") else None
        port = 53 if tls is None else DOT_PORT
        servers = [_endpoint(address, f"{path}.addresses[{i}]", port) for i, address in
                   enumerate(_nonempty(_required(data, "addresses", path), f"{path}.addresses"))]
        _unique(servers, f"{path}.addresses", lambda e: e, lambda e: repr(str(e)))
        forwards.append(Forward(zone, tuple(servers), tls))
    for index, item in enumerate(forwards):
        if any(item.zone == other.zone for other in forwards[:index]):
            raise ConfigError(f"{where}[{index}].zone", f"{item.zone}: duplicate zone")
    return tuple(forwards)


def _forward_tls(value: object, path: str, base_dir: str | None) -> ForwardTls:
    """``forward[].tls``: the server must be authenticated (RFC 8310 §5), by ``name`` and/or
    ``spki_pins``; ``ca_file`` vouches for a name, so it needs one."""
    data = _mapping(value, path, ("name", "spki_pins", "ca_file"))
    pins: list[bytes] = []
    if _given(data, "spki_pins"):
        pins = [_spki_pin(item, f"{path}.spki_pins[{i}]") for i, item in enumerate(
            _nonempty(data["spki_pins"], f"{path}.spki_pins"))]
        _unique(pins, f"{path}.spki_pins", lambda p: p, lambda p: repr(b64encode(p).decode()))
    name = _host(data["name"], f"{path}.name") if _given(data, "name") else None
    ca_file = _path(data["ca_file"], f"{path}.ca_file", base_dir) if _given(
        data, "ca_file") else None
    if name is None and ca_file is not None:
        raise ConfigError(f"{path}.name", "missing: ca_file's authorities vouch for a name, the "
                                          "one the server's certificate must carry")
    if name is None and not pins:
        raise ConfigError(f"{path}.name", "missing: the server is authenticated by its name, "
                                          "spki_pins or both (RFC 8310 strict privacy)")
    return ForwardTls(name, tuple(pins), ca_file, path)


def _host(value: object, path: str) -> str:
    """The name a server's certificate carries: a host name, or an IP address (RFC 8310 §8)."""
    text = _str(value, path, "a host name").strip().rstrip(".")
    try:
        return _address(text)
    except ValueError:
        pass
    if len(text) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in text.split(".")):
        raise ConfigError(path, f"{value!r}: not a host name or IP address")
    return text.lower()


def _spki_pin(value: object, path: str) -> bytes:
    """An RFC 7469 §2.4 pin: the base64 of a SHA-256 digest (32 octets, 44 characters)."""
    text = _str(value, path, "the base64 of a SHA-256 digest")
    try:
        digest = b64decode(text.strip(), validate=True)
    except ValueError:
        digest = b""
    if len(digest) != SPKI_PIN_OCTETS:
        raise ConfigError(path, f"{text!r}: not the base64 of a SHA-256 digest (44 characters, "
                                "as `openssl pkey -pubin -outform der | openssl dgst -sha256 "
                                "-binary | base64` prints)")
    return digest


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


def _validation(value: object) -> tuple[int | None, dict[str, bool]]:
    """``validation.time`` (None: absent) and the ValidatorConfig fields given (``allow_sha1``;
    their defaults are ValidatorConfig's)."""
    data = _mapping(value, "validation", ("time", "allow_sha1"))
    when = default("validation_time")
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
    if _given(data, "allow_sha1"):
        return when, {"allow_sha1": _bool(data["allow_sha1"], "validation.allow_sha1")}
    return when, {}


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
    resolver = ResolverLimits(**_ints(data, "limits", _RESOLVER_LIMIT_BOUNDS))
    if _given(data, "over_limit"):
        resolver = dataclasses.replace(resolver, over_limit=_choice(
            data["over_limit"], "limits.over_limit", (OVER_LIMIT_SERVFAIL, OVER_LIMIT_DROP)))
    dnssec = Limits(**_ints(data, "limits", _DNSSEC_LIMIT_BOUNDS))
    return resolver, dnssec


def _timeouts(value: object) -> Timeouts:
    timeouts = Timeouts(**_ints(_mapping(value, "timeouts", tuple(_TIMEOUT_BOUNDS)), "timeouts",
                                _TIMEOUT_BOUNDS))
    if timeouts.query_ms < timeouts.upstream_ms:
        raise ConfigError("timeouts.query_ms", f"{timeouts.query_ms} is less than "
                                               f"timeouts.upstream_ms ({timeouts.upstream_ms})")
    return timeouts


def _cache(value: object, base_dir: str | None = None) -> CacheConfig:
    data = _mapping(value, "cache", (*_CACHE_BOUNDS, "aggressive_nsec", "serve_stale", "prefetch",
                                     "persist"))
    cache = CacheConfig(**_ints(data, "cache", _CACHE_BOUNDS))
    if cache.min_ttl > cache.max_ttl:
        raise ConfigError("cache.min_ttl", f"{cache.min_ttl} is more than cache.max_ttl "
                                           f"({cache.max_ttl})")
    if _given(data, "aggressive_nsec"):
        cache = dataclasses.replace(cache, aggressive_nsec=_bool(data["aggressive_nsec"],
                                                                 "cache.aggressive_nsec"))
    if _given(data, "prefetch"):
        cache = dataclasses.replace(cache, prefetch=_bool(data["prefetch"], "cache.prefetch"))
    if _given(data, "serve_stale") and data["serve_stale"] is not False:
        cache = dataclasses.replace(cache, serve_stale=_serve_stale(data["serve_stale"]))
    if _given(data, "persist"):
        cache = dataclasses.replace(cache, persist=_path(data["persist"], "cache.persist",
                                                         base_dir))
    return cache


def _serve_stale(value: object) -> ServeStale:
    """``cache.serve_stale``: true or a mapping turns it on (RFC 8767), false leaves it off."""
    if value is True:
        return ServeStale()
    data = _mapping(value, "cache.serve_stale", ("max_stale", "client_timeout_ms"))
    stale = ServeStale()
    if _given(data, "max_stale"):
        stale = dataclasses.replace(stale, max_stale=_duration(
            data["max_stale"], "cache.serve_stale.max_stale", _MAX_STALE_BOUNDS))
    if _given(data, "client_timeout_ms"):
        stale = dataclasses.replace(stale, client_timeout_ms=_int(
            data["client_timeout_ms"], "cache.serve_stale.client_timeout_ms",
            _CLIENT_TIMEOUT_BOUNDS))
    return stale


#: ``monitor``'s bounds, in seconds and lookups (issue #18).
_MONITOR_INTERVAL_BOUNDS = (1, 86_400)
_MONITOR_WARNING_BOUNDS = (3600, 366 * 86400)
_MONITOR_BUDGET_BOUNDS = (1, 100_000)
MAX_CANARIES = 16


def _monitor(value: object) -> MonitorConfig:
    """``monitor``: the background check of the expected zones' posture (resolver.monitor)."""
    data = _mapping(value, "monitor", ("interval", "expiry_warning", "budget", "canary",
                                       "enabled"))
    values: dict[str, Any] = {}
    if _given(data, "interval"):
        values["interval"] = _duration(data["interval"], "monitor.interval",
                                       _MONITOR_INTERVAL_BOUNDS)
    if _given(data, "expiry_warning"):
        values["expiry_warning"] = _duration(data["expiry_warning"], "monitor.expiry_warning",
                                             _MONITOR_WARNING_BOUNDS)
    if _given(data, "budget"):
        values["budget"] = _int(data["budget"], "monitor.budget", _MONITOR_BUDGET_BOUNDS)
    if _given(data, "canary"):
        names = [_name(item, f"monitor.canary[{i}]")
                 for i, item in enumerate(_list(data["canary"], "monitor.canary"))]
        if len(names) > MAX_CANARIES:
            raise ConfigError("monitor.canary", f"{len(names)} names; at most {MAX_CANARIES}")
        _unique(names, "monitor.canary", lambda n: n, lambda n: str(n))
        values["canary"] = tuple(names)
    if _given(data, "enabled"):
        values["enabled"] = _bool(data["enabled"], "monitor.enabled")
    return MonitorConfig(**values)


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


def _log_config(data: dict[str, Any], base_dir: str | None = None) -> LogConfig:
    """The ``LogConfig`` of the ``log`` mapping."""
    values: dict[str, Any] = _ints(data, "log", _LOG_BOUNDS)
    if 0 < values.get("max_bytes", 0) < _LOG_MIN_BYTES:
        raise ConfigError("log.max_bytes", f"{values['max_bytes']}: must be 0 (never rotate by "
                                           f"size) or at least {_LOG_MIN_BYTES}")
    if _given(data, "path"):
        path = _str(data["path"], "log.path", 'a file path or "-"')
        if not path.strip():
            raise ConfigError("log.path", 'empty path (use "-" for standard output)')
        values["path"] = path
    if _given(data, "hmac_key_file"):
        values["hmac_key_file"] = _path(data["hmac_key_file"], "log.hmac_key_file", base_dir)
    if _given(data, "enabled"):
        values["enabled"] = _bool(data["enabled"], "log.enabled")
    if _given(data, "compress"):
        values["compress"] = _choice(data["compress"], "log.compress", LOG_COMPRESSION)
        if values["compress"] != "none" and values.get("path", "-") == "-":
            raise ConfigError("log.compress", f"{values['compress']}: needs log.path to be a "
                              "file (standard output is written as text)")
    if _given(data, "checkpoint"):
        values["checkpoint"] = _duration(data["checkpoint"], "log.checkpoint", _CHECKPOINT_BOUNDS)
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


def _api(value: object, base_dir: str | None = None) -> ApiConfig | None:
    """The ``api`` mapping (the runtime policy API); absent or null: off. ``listen`` is
    ``unix:/PATH`` or ``ADDR:PORT``; TCP needs ``token_file`` (anyone who can reach the port
    could change the policy otherwise); ``persist`` is a file for the runtime changes."""
    if value is None:
        return None
    data = _mapping(value, "api", ("listen", "token_file", "persist"))
    text = _str(_required(data, "listen", "api"), "api.listen",
                '"unix:/run/dnssec-sidecar/api.sock" or "ADDR:PORT"')
    token_file = _path(data["token_file"], "api.token_file", base_dir) if _given(
        data, "token_file") else None
    persist = _path(data["persist"], "api.persist", base_dir) if _given(data, "persist") else None
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path.startswith("/"):
            raise ConfigError("api.listen", f"{text!r}: unix: takes an absolute path")
        if "\0" in path or len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise ConfigError("api.listen", f"{text!r}: a unix socket path is at most "
                                            f"{_SUN_PATH_MAX} bytes, without NUL")
        return ApiConfig(API_UNIX, path=path, token_file=token_file, persist=persist)
    endpoint = _endpoint(text, "api.listen", None)
    if token_file is None:
        raise ConfigError("api.token_file", f"missing: api.listen {text} is TCP, which anyone who "
                                            "reaches it could use; give a token file (lines "
                                            "NAME:TOKEN) or listen on a unix: socket")
    return ApiConfig(API_TCP, endpoint=endpoint, token_file=token_file, persist=persist)


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

