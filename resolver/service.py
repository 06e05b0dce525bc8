"""Assembling and running the resolver from a configuration: cache, iterator, listeners, signals."""

from __future__ import annotations

import asyncio
import logging
import signal

from resolver.cache import Cache
from resolver.config import Config
from resolver.forensic import ForensicLog
from resolver.policy import Policy
from resolver.iterator import Settings
from resolver.server import Frontend, Resolver, Server

log = logging.getLogger("dnssec-sidecar")


def settings_from(config: Config) -> Settings:
    """The iterator's settings from a checked configuration."""
    return Settings(
        root_hints=[(hint.name, list(hint.addresses)) for hint in config.root_hints],
        trust_anchors=list(config.trust_anchors),
        forward=[(fwd.zone, [(ep.host, ep.port) for ep in fwd.servers])
                 for fwd in config.forward],
        validator=config.validator,
        validation_time=config.validation_time,
        qname_minimisation=config.qname_minimisation,
        negative_trust_anchors=list(config.negative_trust_anchors),
        ipv4=config.outgoing_ipv4,
        ipv6=config.outgoing_ipv6,
        max_upstream_queries=config.limits.max_upstream_queries,
        max_referral_depth=config.limits.max_referral_depth,
        max_cname_chain=config.limits.max_cname_chain,
        max_ns_lookups=config.limits.max_ns_lookups,
        upstream_timeout=config.timeouts.upstream_ms / 1000,
        query_timeout=config.timeouts.query_ms / 1000,
    )


def build(config: Config, *, exchange=None, policy=None, forensic=None) -> tuple[Resolver, Server]:
    cache = Cache(config.cache.max_entries, config.cache.max_ttl, config.cache.max_negative_ttl,
                  config.cache.min_ttl)
    resolver = Resolver(settings_from(config), cache, exchange=exchange)
    server = Server(Frontend(resolver, policy, forensic),
                    [(ep.host, ep.port) for ep in config.listen],
                    tcp_idle=config.timeouts.tcp_idle_ms / 1000)
    return resolver, server


async def run(config: Config) -> None:
    """Serve until SIGINT or SIGTERM; on either, stop accepting, let queries in flight finish,
    and flush the forensic log."""
    policy = Policy(config)
    forensic = ForensicLog(config.log) if config.log.enabled else None
    if forensic is not None:
        await forensic.start()
    _, server = build(config, policy=policy, forensic=forensic)
    try:
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("dnssec-sidecar serving (config %s)", config.source)
        await stop.wait()
        await server.stop()
    finally:
        if forensic is not None:
            await forensic.close()
    log.info("stopped")


def serve(config: Config) -> None:
    """Run on uvloop (the project's event loop) when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(run(config))
        return
    uvloop.run(run(config))
