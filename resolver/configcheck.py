"""``dnssec-sidecar check-config FILE``: load a configuration as serve would
(resolver.config, every key checked) and check this host as serve would start on it
(resolver.preflight); print a summary of what it would serve (listeners, root hints, trust
anchors by key tag (RFC 4034 Appendix B), forwarders, validation settings, services and their
allowlists, the log), or the key at fault and why, with its exit status (resolver.status)."""

from __future__ import annotations

import sys
from base64 import b64encode
from datetime import datetime, timezone

import dns.rdatatype
import dns.rrset

from resolver import preflight, status
from resolver.dnssec.anchors import ROOT_HINTS, builtin_trust_anchors
from resolver.config import (API_UNIX, MODE_OBSERVE, Config, ConfigError, Forward, Service,
                             load_config, open_default_service)
from resolver.dnssec import dnskey_tag
from resolver.outgoing import default_prefixes
from resolver.status import Failure


#: How long a glibc or musl stub waits for an answer by default (resolv.conf ``timeout:5``).
STUB_TIMEOUT_MS = 5000


def _anchor(rrset: dns.rrset.RRset) -> list[str]:
    """One line per anchor: owner, type, key tag, algorithm (and digest type or flags)."""
    lines = []
    for rdata in rrset:
        if rrset.rdtype == dns.rdatatype.DS:
            lines.append(f"{rrset.name} DS {rdata.key_tag} algorithm {rdata.algorithm} "
                         f"digest type {rdata.digest_type}")
        else:
            lines.append(f"{rrset.name} DNSKEY {dnskey_tag(rdata)} algorithm "
                         f"{rdata.algorithm} flags {rdata.flags}")
    return lines


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def _time(seconds: int | None) -> str:
    if seconds is None:
        return "now (system clock)"
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} ({seconds})"


def _forward(forward: Forward) -> str:
    """A forward entry: its zone, addresses, and how a TLS server is authenticated."""
    text = f"{forward.zone} -> " + ", ".join(str(server) for server in forward.servers)
    tls = forward.tls
    if tls is None:
        return text
    how = [f"name {tls.name}" + (f" (CAs of {tls.ca_file})" if tls.ca_file else
                                 " (the system's CAs)")] if tls.name else []
    how += [f"spki_pins {', '.join(b64encode(pin).decode() for pin in tls.spki_pins)}"] \
        if tls.spki_pins else []
    return f"{text} over TLS, authenticated by " + " and ".join(how)


def _service(service: Service, indent: str) -> list[str]:
    """A service's rules, refusal, protection, budgets and forwards, one line each."""
    lines = []
    for index, rule in enumerate(service.allow):
        extra = ""
        if rule.types is not None:
            extra += " types " + ", ".join(sorted(dns.rdatatype.to_text(t) for t in rule.types))
        if rule.allow_private:
            extra += ", private addresses allowed" if extra else " private addresses allowed"
        if rule.expect is not None:
            extra += ("," if extra else "") + " addresses expected in " + \
                ", ".join(map(str, rule.expect))
        lines.append(f"{indent}allow[{index}] {rule.zone} {rule.require}{extra}")
    if not service.allow:
        lines.append(f"{indent}allows nothing")
    lines.append(f"{indent}refused with {service.refuse_with.upper()}, rebinding protection "
                 + ("on" if service.rebinding_protection else "off")
                 + (", mode observe: refusals only recorded (would_refuse)"
                    if service.mode == MODE_OBSERVE else ""))
    budgets = service.budgets
    parts = ([f"query_rate {budgets.query_rate:g}/s"] if budgets.query_rate is not None else [])
    parts += [f"{name} {value}" for name, value in (
        ("max_label_length", budgets.max_label_length),
        ("distinct_names_per_minute", budgets.distinct_names_per_minute)) if value is not None]
    if parts:
        lines.append(f"{indent}budgets: " + ", ".join(parts))
    lines += [f"{indent}forward {_forward(forward)}" for forward in service.forward]
    if service.pin is not None:
        pin = service.pin
        lines.append(f"{indent}pins answers into {pin.family} {pin.table} "
                     + ", ".join(name for _, name in pin.sets())
                     + f" for TTL + {pin.grace} s (nftables)")
    return lines


def _log(config: Config) -> str:
    log = config.log
    if not log.enabled:
        return "  log: off"
    path = log.path
    text = "  log: " + ("standard output" if path == "-" else path)
    if path != "-":
        text += (f", fsync every {log.fsync_interval_ms} ms" if log.fsync_interval_ms
                 else ", fsync after every batch")
    if path != "-":
        rotation = [f"{log.max_bytes} bytes"] if log.max_bytes else []
        rotation += [f"{log.max_age_s} s"] if log.max_age_s else []
        text += (f", rotated at {' or '.join(rotation)}, {log.keep} kept" if rotation
                 else ", never rotated")
        text += ", gzip-compressed" if log.compress == "gzip" else ""
    text += f", HMAC key {log.hmac_key_file}" if log.hmac_key_file else ", no HMAC key"
    return text + (f", checkpoint every {log.checkpoint} s" if log.checkpoint
                   else ", no checkpoints")


def _dnstap(config: Config) -> str:
    tap = config.dnstap
    if tap is None:
        return "  dnstap: off"
    where = f"file {tap.path}" if tap.mode == "file" else f"unix socket {tap.path}"
    kinds = " and ".join(kind for kind, on in (("client", tap.client),
                                               ("resolver", tap.resolver)) if on)
    return (f"  dnstap: {where}, {kinds} messages, identity {tap.identity!r}, version "
            f"{tap.version!r}, queue {tap.queue_size}")


def _monitor(config: Config) -> str:
    monitor = config.monitor
    if not monitor.enabled:
        return "  monitor: off"
    canaries = ", ".join(str(name) for name in monitor.canary) or "none"
    return (f"  monitor: the expected zones checked every {monitor.interval} s within "
            f"{monitor.budget} lookups, signatures_expiring {monitor.expiry_warning} s ahead, "
            f"canaries {canaries}")


def _services(config: Config) -> list[str]:
    lines = []
    if config.services:
        lines.append("  services (first match wins):")
        for service in config.services:
            match = []
            if service.listeners:
                match.append("listeners " + ", ".join(str(e) for e in service.listeners))
            if service.clients:
                match.append("clients " + ", ".join(str(p) for p in service.clients))
            lines.append(f"    {service.name}: " + "; ".join(match))
            lines += _service(service, "      ")
    else:
        lines.append("  services: none" + (" (an open resolver)" if config.default_service
                                           == open_default_service() else ""))
    lines.append("  default service (clients matching no service):")
    lines += _service(config.default_service, "    ")
    return lines


def _api(config: Config) -> str:
    api = config.api
    if api is None:
        return "  policy API: off"
    who = ("the peer's uid and pid recorded (socket mode 0600)" if api.mode == API_UNIX
           else "Bearer tokens")
    if api.mode == API_UNIX and api.token_file:
        who += ", and Bearer tokens"
    tokens = f" of {api.token_file}" if api.token_file else ""
    kept = (f", runtime changes kept in {api.persist}" if api.persist
            else ", runtime changes replaced by a reload")
    return f"  policy API: {api}, {who}{tokens}{kept}"


def _do_not_query(config: Config) -> str:
    prefixes = config.outgoing_do_not_query
    if not prefixes:
        return "  do not query: nothing (any address a zone names is asked)"
    default = " (built-in)" if prefixes == default_prefixes() else ""
    return (f"  do not query{default}: " + ", ".join(str(p) for p in prefixes)
            + " (except root hints and forwarders)")


def _restarts(config: Config) -> str:
    """How a restart goes (README "Restarts that drop nothing")."""
    persist = config.cache.persist
    kept = (f"cache kept in {persist} (cache.persist)" if persist is not None
            else "cache not kept (cache.persist unset)")
    drain = config.timeouts.drain_ms
    wait = (f"answers {drain} ms more on SIGTERM with no successor" if drain
            else "stops at once on SIGTERM with no successor")
    return f"  restarts: {kept}; {wait} (timeouts.drain_ms)"


def summary(config: Config) -> list[str]:
    """The lines ``check-config`` prints for a valid configuration."""
    builtin_hints = config.root_hints == ROOT_HINTS
    builtin_anchors = list(config.trust_anchors) == builtin_trust_anchors()
    addresses = sum(len(hint.addresses) for hint in config.root_hints)
    families = [name for name, on in (("IPv4", config.outgoing_ipv4),
                                      ("IPv6", config.outgoing_ipv6)) if on]
    lines = [
        f"{config.source}: OK",
        "  listen (UDP and TCP): " + ", ".join(str(endpoint) for endpoint in config.listen),
        f"  root hints: {_count(len(config.root_hints), 'server')}, "
        f"{_count(addresses, 'address', 'addresses')}"
        + (" (built-in IANA)" if builtin_hints else ""),
        "  trust anchors" + (" (built-in IANA root)" if builtin_anchors else "") + ":",
    ]
    lines += [f"    {line}" for rrset in config.trust_anchors for line in _anchor(rrset)]
    if config.forward:
        lines.append("  forward:")
        lines += [f"    {_forward(forward)}" for forward in config.forward]
    else:
        lines.append("  forward: none")
    lines += [
        "  negative trust anchors: " + (", ".join(str(name) for name in
                                                 config.negative_trust_anchors) or "none"),
        f"  validation time: {_time(config.validation_time)}",
        f"  SHA-1 algorithms (5, 7): {'allowed' if config.validator.allow_sha1 else 'off'}",
        f"  QNAME minimisation: {'on' if config.qname_minimisation else 'off'}",
        f"  outgoing: {' and '.join(families)}",
        _do_not_query(config),
        _dnstap(config),
        _restarts(config),
    ]
    lines.append(_api(config))
    lines += _services(config)
    lines.append(_monitor(config))
    lines.append(_log(config))
    if config.timeouts.query_ms >= STUB_TIMEOUT_MS:
        lines.append(f"  warning: timeouts.query_ms {config.timeouts.query_ms} is not below "
                     f"{STUB_TIMEOUT_MS}: a glibc or musl stub resolver gives up after 5 s and "
                     "retries before the SERVFAIL and its EDE reach it")
    if not builtin_hints and builtin_anchors:
        lines.append("  warning: custom root hints with the built-in root trust anchors: "
                     "a private root will not validate")
    return lines


def run(path: str, host: bool = True) -> int:
    """Check ``path`` as ``serve`` would start from it, this host included unless ``host`` is
    False (:mod:`resolver.preflight`: files, directories, addresses): print a summary and
    return 0, or print the one fault to stderr and return its exit status
    (:mod:`resolver.status`)."""
    try:
        config = load_config(path)
        notes = preflight.check(config, serving=False) if host else [
            "this host's files, directories and addresses not checked (--no-host)"]
    except (ConfigError, Failure) as exc:
        print(f"check-config: {path}: {exc}", file=sys.stderr)
        return exc.status
    print("\n".join(summary(config) + [f"  note: {note}" for note in notes]))
    return status.OK
