"""Reading a configuration: YAML text (safe loading, duplicate keys refused) to a checked
:class:`~resolver.config.schema.Config`, every failure a
:class:`~resolver.config.schema.ConfigError` naming the field. Each section is read by
:mod:`resolver.config.sections` or :mod:`resolver.config.services`; what spans sections (the
one forward table, the address families of every upstream) is checked here. A key given as null
(``cache:`` with every line under it commented out) takes its default, the schema's.
"""

from __future__ import annotations

import os
from typing import Any

import dns.name
import yaml

from resolver import status
from resolver.config.schema import Config, ConfigError, Endpoint, Forward, default
from resolver.config.sections import (_LOG_KEYS, _api, _cache, _dnstap, _forward, _limits,
                                      _listen, _log_config, _metrics, _monitor,
                                      _negative_trust_anchors,
                                      _root_hints, _timeouts, _trust_anchors, _validation,
                                      _workers)
from resolver.config.services import _merge_forwards, _services
from resolver.config.values import _bool, _given, _mapping, _prefixes
from resolver.dnssec.anchors import RootHint
from resolver.dnssec.config import ValidatorConfig

_TOP_KEYS = ("listen", "root_hints", "trust_anchors", "trust_anchor_file", "forward",
             "validation", "qname_minimisation", "negative_trust_anchors", "outgoing", "limits",
             "timeouts", "cache", "services", "default_service", "log", "metrics",
             "dnstap", "workers", "monitor", "api")


def parse_config(data: object, source: str = "<string>", *, base_dir: str | None = None,
                 ) -> Config:
    """A :class:`Config` from parsed YAML (``None`` gives the defaults). A relative
    file path (``trust_anchor_file``, ``log.hmac_key_file``, ``forward[].tls.ca_file``) is taken
    from ``base_dir`` if given, else the working directory."""
    top = _mapping(data, "", _TOP_KEYS)
    listen = _listen(top["listen"]) if _given(top, "listen") else default("listen")
    hints = _root_hints(top["root_hints"]) if _given(top, "root_hints") else default("root_hints")
    anchors = _trust_anchors(top, base_dir)
    forward = _forward(top["forward"], base_dir=base_dir) if _given(top, "forward") else default(
        "forward")
    when, sha1 = _validation(top.get("validation"))
    qmin = _bool(top["qname_minimisation"], "qname_minimisation") if _given(
        top, "qname_minimisation") else default("qname_minimisation")
    ntas = _negative_trust_anchors(top["negative_trust_anchors"]) if _given(
        top, "negative_trust_anchors") else default("negative_trust_anchors")
    outgoing = _mapping(top.get("outgoing"), "outgoing", ("ipv4", "ipv6", "do_not_query"))
    ipv4 = _bool(outgoing["ipv4"], "outgoing.ipv4") if _given(outgoing, "ipv4") else default(
        "outgoing_ipv4")
    ipv6 = _bool(outgoing["ipv6"], "outgoing.ipv6") if _given(outgoing, "ipv6") else default(
        "outgoing_ipv6")
    do_not_query = _prefixes(outgoing["do_not_query"], "outgoing.do_not_query", empty_ok=True) \
        if _given(outgoing, "do_not_query") else default("outgoing_do_not_query")
    if not ipv4 and not ipv6:
        raise ConfigError("outgoing", "ipv4 and ipv6 cannot both be false")
    services, default_service = _services(top, listen, base_dir)
    forward, forward_entries = _merge_forwards(forward, services, default_service)
    _check_tls_servers(forward_entries)
    _check_families(hints, forward_entries, ipv4, ipv6, _given(top, "root_hints"))
    resolver_limits, dnssec_limits = _limits(top.get("limits"))
    workers, api = _workers(top), _api(top.get("api"), base_dir)
    if api is not None and workers > 1:
        raise ConfigError("api", f"workers is {workers}: a runtime change must reach every "
                                 "worker's policy, and the API serves one process (workers: 1)")
    return Config(
        listen=listen, root_hints=hints, trust_anchors=anchors, forward=forward,
        validation_time=when, validator=ValidatorConfig(limits=dnssec_limits, **sha1),
        qname_minimisation=qmin, negative_trust_anchors=ntas, outgoing_ipv4=ipv4,
        outgoing_ipv6=ipv6, limits=resolver_limits, timeouts=_timeouts(top.get("timeouts")),
        cache=_cache(top.get("cache"), base_dir), source=source, services=services,
        default_service=default_service,
        log=_log_config(_mapping(top.get("log"), "log", _LOG_KEYS), base_dir),
        metrics=_metrics(top.get("metrics")), dnstap=_dnstap(top.get("dnstap")),
        workers=workers, outgoing_do_not_query=do_not_query,
        monitor=_monitor(top.get("monitor")), api=api)


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



def _check_tls_servers(forwards: list[tuple[str, Forward]]) -> None:
    """A forwarder's address is asked one way: every entry naming it has the same ``tls``
    (none, or the same name, pins and CAs), since its connection is shared (RFC 7766 §6.2.1)
    and a query never goes in clear text to a server meant to be asked over TLS (RFC 8310 §5).
    ``forwards`` pairs each forward entry with its field path."""
    seen: dict[Endpoint, tuple[str, Forward]] = {}
    for path, forward in forwards:
        for index, server in enumerate(forward.servers):
            first_path, first = seen.setdefault(server, (path, forward))
            if first.tls != forward.tls:
                how = ("without tls" if first.tls is None else "with tls" if forward.tls is None
                       else "with other tls settings")
                raise ConfigError(f"{path}.addresses[{index}]", f"{server} is also {first_path}'s"
                                  f", {how}: an address is asked one way")


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
