"""The running service (``dnssec-sidecar serve``): the cache, the resolver (resolver.resolve),
the policy, the forensic log and the listeners (resolver.frontend) assembled from a checked
configuration (resolver.config); metrics and health (resolver.ops); reload on SIGHUP or when
the mounted file changes (the policy swapped between two queries; the cache kept unless the
trust changes; listen, log, metrics and dnstap take a restart); restarts that drop nothing:
a successor primes before it binds beside a running predecessor (SO_REUSEPORT), and on SIGTERM
a process hands its listeners over to a successor once one answers (resolver.frontend.handover),
finishes the queries in flight, writes its cache (``cache.persist``, resolver.resolve.persist)
and flushes the log. With ``workers`` above one, a supervisor forks that many processes on
SO_REUSEPORT sockets and restarts one that dies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import time

import dns.name
import dns.rdatatype

from resolver import status
from resolver.resolve.cache import Cache
from resolver.frontend.admission import Admission
from resolver.config import (OVER_LIMIT_DROP, Config, ConfigError, Endpoint, for_worker,
                             load_config, open_default_service, replace_listen)
from resolver.dnssec import Verdict, dnskey_tag
from resolver.ops.dnstap import Dnstap, DnstapCollector
from resolver.forensic.checkpoint import Checkpoints
from resolver.forensic.log import ForensicLog, ForensicLogError
from resolver.resolve import persist
from resolver.resolve.iterator import Iterator, Settings
from resolver.ops.api import Api
from resolver.ops.metrics import Health, HttpEndpoint, Metrics
from resolver.monitor.check import Monitor
from resolver.monitor.events import Events
from resolver.frontend.pinning import Pinner
from resolver.ops.policystore import PolicyStore
from resolver.frontend.policy import Policy
from resolver.preflight import bind_failure, forward_tls, pin_sets
from resolver.frontend import handover
from resolver.frontend.listeners import Server
from resolver.frontend.pipeline import Frontend
from resolver.frontend.resolution import Resolver
from resolver.status import Failure

log = logging.getLogger("dnssec-sidecar")

WATCH_INTERVAL = 2.0  # seconds between looks at the config file
PRIME_LIMIT = 10  # seconds a successor primes before binding beside its predecessor anyway
SUCCESSOR_POLL = 0.05  # seconds between looks for a successor after SIGTERM
HANDOVER_READ = 30  # seconds a successor waits for its predecessor's cache
HANDOVER_CHUNK = 1 << 20  # octets of it written before the loop turns to queries again
LOG_WATCH_INTERVAL = 1.0  # seconds between looks at the forensic log's health, to log changes


def admission_limits(config: Config) -> tuple[int, int, bool, int, int]:
    """resolver.frontend.admission's limits from a checked configuration."""
    limits = config.limits
    return (limits.max_resolutions, limits.max_resolutions_per_client,
            limits.over_limit == OVER_LIMIT_DROP, limits.over_limit_answers_per_second,
            limits.max_misses_per_client_per_second)


def _trust(settings: Settings) -> tuple:
    """What validated data in the cache depends on: change it and the cache must go."""
    return (settings.trust_anchors, settings.negative_trust_anchors, settings.validator,
            settings.validation_time)


def build(config: Config, *, exchange=None, policy=None, forensic=None, metrics=None,
          tap=None, worker: int | None = None, pinner=None) -> tuple[Resolver, Server]:
    """The resolver and its listeners. A ``tap`` is wired to what ``config.dnstap`` asks for:
    client messages at the frontend, resolver messages at the iterator."""
    stale = config.cache.serve_stale
    cache = Cache(config.cache.max_entries, config.cache.max_ttl, config.cache.max_negative_ttl,
                  config.cache.min_ttl, aggressive_nsec=config.cache.aggressive_nsec,
                  max_stale=stale.max_stale if stale is not None else 0)
    resolver = Resolver(Settings.from_config(config), cache,
                        Admission(*admission_limits(config)), exchange=exchange,
                        serve_stale=stale, prefetch=config.cache.prefetch)
    resolver.iterator.tap = _tap_for(config, tap, "resolver")
    server = Server(Frontend(resolver, policy, forensic, metrics, _tap_for(config, tap, "client"),
                             wire_entries=config.cache.max_entries, worker=worker,
                             pinner=pinner),
                    [(ep.host, ep.port) for ep in config.listen],
                    tcp_idle=config.timeouts.tcp_idle_ms / 1000,
                    tcp_clients=config.limits.tcp_clients,
                    tcp_pipeline=config.limits.tcp_pipeline)
    return resolver, server


def _tap_for(config: Config, tap, kind: str):
    """``tap`` if ``config.dnstap`` asks for ``kind`` ("client" or "resolver") messages."""
    wanted = tap is not None and config.dnstap is not None and getattr(config.dnstap, kind)
    return tap if wanted else None


class Service:
    """One running resolver and what keeps it healthy and current."""

    def __init__(self, config: Config, path: str | None = None,
                 listen_override: tuple | None = None, worker: int | None = None) -> None:
        self.worker = worker
        config = for_worker(config, worker or 0)
        self.config = config
        self.path = path
        self.listen_override = listen_override
        self.metrics = Metrics()
        self.health = Health()
        self._trust: tuple[bool, str] = (False, "trust not established yet")
        self._log_failing: float | None = None  # since when the forensic log fails (monotonic)
        self.forensic = ForensicLog(config.log) if config.log.enabled else None
        self.checkpoints = (Checkpoints(self.forensic, config.log.checkpoint, self._say)
                            if self.forensic is not None and config.log.checkpoint else None)
        self.tap = Dnstap(config.dnstap) if config.dnstap is not None else None
        self.pinner = Pinner(_all_services(config))  # preflight checked libnftables and sets
        self.resolver, self.server = build(config, policy=Policy(config), forensic=self.forensic,
                                           metrics=self.metrics, tap=self.tap,
                                           worker=worker if config.workers > 1 else None,
                                           pinner=self.pinner)
        self.metrics.sources.update(cache=self.resolver.cache, forensic=self.forensic,
                                    wirecache=self.server.frontend.wirecache,
                                    server=self.server, admission=self.resolver.admission,
                                    resolver=self.resolver, checkpoints=self.checkpoints,
                                    iterator=lambda: self.resolver.iterator)
        self.metrics.resolutions.set_function(lambda: self.resolver.admission.in_progress)
        # The expected zones' posture (issue #18), fed by the chain of trust and the frontend.
        self.monitor = Monitor(config, lambda: self.resolver.iterator, Events(
            self.forensic, worker if config.workers > 1 else None,
            lambda kind: self.metrics.events.labels(kind).inc()))
        self.metrics.sources["posture"] = self.monitor
        self.server.frontend.posture = self.monitor
        if self.tap is not None:
            self.metrics.registry.register(DnstapCollector(self.tap))
        self._hook_iterator(self.resolver.iterator)
        self._stat = self._file_state()
        # The services in force, changed by the runtime API and by reloads (issue #17).
        self.policies = PolicyStore(config, self.server, self.forensic, metrics=self.metrics,
                                    pins=self.pinner,
                                    worker=worker if config.workers > 1 else None,
                                    on_change=self._policy_changed)
        self.api = Api(config.api, self.policies) if config.api is not None else None

    def _policy_changed(self, new: Config) -> None:
        """The services in force changed (a reload, the runtime API): the posture follows the
        zones they expect, pinning the services that pin (their removed pins are revoked by the
        store, resolver.ops.policystore)."""
        self.config = dataclasses.replace(self.config, services=new.services,
                                          default_service=new.default_service)
        self.monitor.configure(new)
        self.pinner.configure(_all_services(new))

    def _hook_iterator(self, iterator: Iterator) -> None:
        iterator.on_rtt = self.metrics.observe_rtt
        iterator.on_event = lambda event: self.metrics.events.labels(event).inc()
        iterator.tap = _tap_for(self.config, self.tap, "resolver")
        iterator.trust.observer = self.monitor.observe_zone

    async def run(self) -> None:
        """Serve until SIGINT or SIGTERM; then stop accepting, let queries in flight finish,
        and flush the forensic log; dnstap sends its STOP."""
        if self.forensic is not None:
            try:
                await self.forensic.start()
            except ForensicLogError as exc:  # preflight saw it fine: changed since
                raise Failure("log", str(exc), status.UNWRITABLE) from None
            for note in self.forensic.notes:
                log.warning("%s", note)
        if self.tap is not None:
            self.tap.start()
        http = offer = None
        tasks = []
        try:
            predecessor = handover.others(self._listen_keys(), self.worker is not None)
            await self._load_cache(predecessor)
            if predecessor:
                await self._prime()  # the predecessor serves these addresses meanwhile
            try:
                await self.server.start()
            except OSError as exc:  # taken since preflight, or held by a process not sharing
                raise bind_failure("listen" if self.listen_override is None else "--listen",
                                   Endpoint(*self.server.binding), exc) from None
            await self.policies.start()
            if self.api is not None:
                try:
                    await self.api.start()
                except OSError as exc:
                    raise Failure("api.listen", f"{self.config.api}: "
                                  f"{exc.strerror or exc}", status.ADDRESS) from None
                except ConfigError as exc:
                    raise Failure(exc.field, exc.reason, exc.status) from None
            if self.config.metrics.enabled:
                endpoint = self.config.metrics.listen
                http = HttpEndpoint(self.metrics, self.health, endpoint.host, endpoint.port)
                try:
                    await http.start()
                except OSError as exc:
                    raise bind_failure("metrics.listen", endpoint, exc) from None
            offer = await self._offer_cache()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: asyncio.ensure_future(self.reload("SIGHUP")))
            tasks = [asyncio.ensure_future(self.health.watch_loop()),
                     asyncio.ensure_future(self._readiness()),
                     asyncio.ensure_future(self.monitor.run())]
            if self.path:
                tasks.append(asyncio.ensure_future(self._watch_file()))
            if self.checkpoints is not None:
                tasks.append(asyncio.ensure_future(self.checkpoints.run()))
            for line in self.summary():
                self._say(line)
            # What start-up made (modules, configuration, trust anchors) lives as long as the
            # process: kept out of the collector's generations, a full collection while serving
            # walks only what serving made (gc.freeze).
            gc.freeze()
            await stop.wait()
            if await self._successor():
                self._say("stopping: a successor answers on every listener; handing over, "
                          "finishing queries in flight, then flushing the log")
                if http is not None:  # /readyz and /metrics are the successor's from now on
                    await http.stop()
                    http = None
                await self.server.hand_over()
            else:
                self._say("stopping: finishing queries in flight, then flushing the log")
            await self.server.stop()
            self._save_cache()
        finally:
            for task in tasks:
                task.cancel()
            if self.api is not None:
                await self.api.stop()
            if offer is not None:
                offer.close()
            if http is not None:
                await http.stop()
            try:
                if self.forensic is not None:
                    await self.forensic.close()
                    if self.checkpoints is not None:  # the head the log stopped at
                        await self.checkpoints.take()
            finally:
                self.pinner.close()
                if self.tap is not None:
                    await self.tap.close()
        self._say("stopped")

    # --- restarts (README "Restarts that drop nothing") -----------------------------------

    def _listen_keys(self) -> list:
        """Our listening addresses as resolver.frontend.handover names them (port 0 left out:
        nobody else can hold that)."""
        return [handover.key((ep.host, ep.port), ep.family) for ep in self.config.listen
                if ep.port]

    async def _prime(self) -> None:
        """Before binding beside a predecessor: become ready first (the anchors' keys
        validated, the cache warm), so that every datagram the kernel hands us from the
        moment we bind is answered as well as the predecessor would. Bounded by PRIME_LIMIT:
        then we bind anyway, as a first start does."""
        loop = asyncio.get_running_loop()
        until = loop.time() + PRIME_LIMIT
        while loop.time() < until:
            ready, why = await self._check_ready()
            if ready:
                self._say(f"primed beside a running predecessor: {why}")
                return
            await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
        log.warning("not ready after %d s beside a running predecessor (%s); binding anyway",
                    PRIME_LIMIT, why)

    async def _successor(self) -> bool:
        """After SIGTERM: whether another process answers on every listening address, waited
        for up to ``timeouts.drain_ms`` while we go on answering (SUCCESSOR_POLL)."""
        keys = self.server.udp_keys()
        loop = asyncio.get_running_loop()
        until = loop.time() + self.config.timeouts.drain_ms / 1000
        while True:
            if handover.others(keys, self.worker is not None):
                return True
            if loop.time() >= until:
                return False
            await asyncio.sleep(SUCCESSOR_POLL)

    async def _load_cache(self, predecessor: bool) -> None:
        """Fill the cache from a running predecessor (its ``<cache.persist>.sock``), else from
        the file the last process wrote on SIGTERM."""
        path = self.config.cache.persist
        if path is None:
            return
        raw, source = None, path
        if predecessor:
            try:
                async with asyncio.timeout(HANDOVER_READ):
                    reader, writer = await asyncio.open_unix_connection(path + ".sock")
                    raw = await reader.read()
                    writer.close()
                source = f"the predecessor on {path}.sock"
            except (OSError, TimeoutError) as exc:
                log.warning("cache.persist: no cache from the predecessor on %s.sock (%s); "
                            "reading %s", path, getattr(exc, "strerror", None) or exc, path)
        if raw is None:
            raw = persist.read_file(path)
        kept, dropped = persist.load(self.resolver.cache, raw, source,
                                     persist.fingerprint(self.config),
                                     self.resolver.iterator.now())
        if kept or dropped:
            self._say(f"cache: {kept} entries from {source} (cache.persist), {dropped} "
                      "dropped: expired, or a signature expired meanwhile")

    async def _offer_cache(self):
        """Hand the cache to a successor that asks on ``<cache.persist>.sock`` (a Unix socket
        only this user may connect to; a successor's replaces ours)."""
        path = self.config.cache.persist
        if path is None:
            return None
        sock_path = path + ".sock"

        async def give(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                for line in persist.dump(self.resolver.cache, persist.fingerprint(self.config)):
                    writer.write(line)
                    if writer.transport.get_write_buffer_size() > HANDOVER_CHUNK:
                        await writer.drain()  # the loop answers queries meanwhile
                await writer.drain()
                self._say(f"cache: {persist.entries(line)} entries handed to a successor on "
                          f"{sock_path}")
            except (ConnectionError, RuntimeError):  # the successor went; the cache changed
                pass
            finally:
                writer.close()

        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock_path)
            server = await asyncio.start_unix_server(give, path=sock_path)
            os.chmod(sock_path, 0o600)
        except OSError as exc:
            log.warning("cache.persist: cannot offer the cache to a successor on %s: %s",
                        sock_path, exc.strerror or exc)
            return None
        return server

    def _save_cache(self) -> None:
        path = self.config.cache.persist
        if path is None:
            return
        try:
            written = persist.save(self.resolver.cache, path, persist.fingerprint(self.config))
        except OSError as exc:
            log.error("cache.persist: %s: cannot write: %s", path, exc.strerror or exc)
            return
        self._say(f"cache: {written} entries written to {path} (cache.persist)")

    def _say(self, line: str) -> None:
        """One line of the process log at INFO, shown at the default level (cli.py)."""
        if self.worker is not None:
            line = f"worker {self.worker}: {line}"
        log.info("%s", line)

    def summary(self) -> list[str]:
        """What serves where, once started: each listener, the metrics address, where the
        forensic log goes, the trust anchors (key tags), the services."""
        config = self.config
        lines = [f"listening on {endpoint} (UDP and TCP)" for endpoint in config.listen]
        if config.metrics.enabled:
            lines.append(f"metrics, /healthz and /readyz on http://{config.metrics.listen}/ "
                         "(metrics.listen)")
        else:
            lines.append("metrics: off (metrics.enabled: false)")
        lines.append("forensic log: " + _log_text(config))
        if config.api is not None:
            lines.append(f"policy API on {config.api} (api.listen)")
        anchors = "; ".join(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} key tag "
                            + ", ".join(str(tag) for tag in _anchor_tags(rrset))
                            for rrset in config.trust_anchors)
        lines.append(f"trust anchors: {anchors or 'none (nothing validates as Secure)'}")
        lines.append(f"services: {_services_text(config)} (config {config.source})")
        return lines

    # --- readiness ------------------------------------------------------------------------

    async def _readiness(self) -> None:
        """Ready (``/readyz``) once the DNSKEY sets of the anchors' zones validate (through the
        forwarders when forwarded), or, failing that, every forwarder answers; and while the
        forensic log writes (queries get SERVFAIL while it cannot), and while no validation
        canary resolves (monitor.canary, checked by the monitor). Trust is checked every 60 s
        once established (2 s before); the log and the canaries are read when readiness is
        asked (:meth:`_ready_now`), and the log's changes are logged from there and every
        LOG_WATCH_INTERVAL, so an idle resolver wakes for it once a second."""
        loop = asyncio.get_running_loop()
        self.health.readiness = self._ready_now
        next_check = 0.0
        while True:
            if loop.time() >= next_check:
                self._trust = await self._check_ready()
                next_check = loop.time() + (60 if self._trust[0] else 2)
            self._ready_now()
            await asyncio.sleep(min(LOG_WATCH_INTERVAL, next_check - loop.time()))

    def _ready_now(self) -> tuple[bool, str]:
        """Ready or not, and why: trust as last checked, the log and the canaries as they are
        now."""
        log_problem = self._log_health()
        canary = self.monitor.problem
        trusted, why = self._trust
        return trusted and log_problem is None and canary is None, log_problem or canary or why

    def _log_health(self) -> str | None:
        """What to say about the forensic log while it fails (None: it writes); since when it
        fails is kept in ``_log_failing``, and the changes are logged."""
        now = time.monotonic()
        if self.forensic is None or self.forensic.healthy:
            if self._log_failing is not None:
                log.warning("forensic log writing again after %.1f s; answering queries",
                            now - self._log_failing)
                self._log_failing = None
            return None
        error = self.forensic.stats["last_error"]
        if self._log_failing is None:
            log.error("forensic log cannot write (%s): answering SERVFAIL (EDE 14) and not "
                      "ready until it can", error)
            self._log_failing = now
        return f"forensic log unavailable ({error}): not answering unlogged"

    async def _check_ready(self) -> tuple[bool, str]:
        """Whether the DNSKEY set of every trust anchor's zone validates: the root's, or an
        island's (RFC 4035 §4.4), never the keys of a zone above an anchor, which nothing
        could authenticate (RFC 4033 §3). With no anchor, the root's DNSKEY set answered."""
        anchored = self.config.trust_anchors
        zones = sorted({rrset.name for rrset in anchored}) or [dns.name.root]
        for zone in zones:
            outcome = await self.resolver.resolve(zone, dns.rdatatype.DNSKEY)
            answer = outcome.answer
            if answer is None or (anchored and answer.verdict is not Verdict.SECURE):
                why = outcome.failure.reason if outcome.failure else f"{zone} DNSKEY not secure"
                break
        else:
            return True, " ".join(str(zone) for zone in zones) + " DNSKEY validated"
        forwards = self.config.forward
        if forwards:
            for fwd in forwards:
                probe = await self.resolver.resolve(fwd.zone, dns.rdatatype.SOA)
                if probe.answer is None:
                    return False, f"forwarders for {fwd.zone} unreachable; {why}"
            return True, "forwarders reachable"
        return False, why

    # --- reload ---------------------------------------------------------------------------

    def _file_state(self):
        if not self.path:
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return os.path.realpath(self.path), info.st_ino, info.st_mtime_ns, info.st_size

    async def _watch_file(self) -> None:
        """ConfigMap updates swap a symlink, so the resolved path, inode or mtime changes."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            state = self._file_state()
            if state is not None and state != self._stat:
                self._stat = state
                await self.reload("config file changed")

    async def reload(self, why: str) -> bool:
        """Load the file again; apply it only if it is valid, else keep the running one. The
        cache survives a policy change; a change of trust (anchors, NTAs, validation settings)
        empties it."""
        try:
            new = load_config(self.path) if self.path else None
            if new is None:
                raise ConfigError("", "no configuration file to reload")
            if self.listen_override:
                new = replace_listen(new, self.listen_override)
            new = for_worker(new, self.worker or 0)
            forward_tls(new)  # a new ca_file is read before it replaces the running one
            pin_sets(new)  # and new pin sets exist
        except (ConfigError, Failure) as exc:
            log.error("reload (%s) rejected, keeping the running configuration: %s", why, exc)
            self.metrics.reloads.labels("rejected").inc()
            return False
        for field in RESTART_ONLY:
            if getattr(new, field) != getattr(self.config, field):
                log.warning("reload: %s changed; that takes a restart", field)
                new = dataclasses.replace(new, **{field: getattr(self.config, field)})
        # The policy swapped, changes recorded, pins of names no longer allowed gone (the store
        # revokes them once, as for a change through the API).
        new = await self.policies.reload(new, why)
        self.resolver.admission.configure(*admission_limits(new))
        settings = Settings.from_config(new)
        if settings != self.resolver.settings:
            if _trust(settings) != _trust(self.resolver.settings):
                self.resolver.cache.clear()
            self.resolver.settings = settings
            self.resolver.iterator = Iterator(settings, self.resolver.cache)
            self._hook_iterator(self.resolver.iterator)
        self.config = new
        self.metrics.reloads.labels("applied").inc()
        self._say(f"reload ({why}) applied; services: {_services_text(new)}")
        return True


#: Configuration keys a reload cannot apply: sockets and files held open, processes started,
#: and the cache's size and behaviour. A change is logged and the running value kept.
RESTART_ONLY = ("listen", "log", "metrics", "dnstap", "cache", "workers", "api")


def _all_services(config: Config) -> tuple:
    return (*config.services, config.default_service)


def _anchor_tags(rrset) -> list[int]:
    """The key tags of a DS or DNSKEY anchor set (RFC 4034 §5.1, App. B)."""
    if rrset.rdtype == dns.rdatatype.DS:
        return [rdata.key_tag for rdata in rrset]
    return [dnskey_tag(rdata) for rdata in rrset]


def _log_text(config: Config) -> str:
    log_config = config.log
    if not log_config.enabled:
        return "off (log.enabled: false)"
    where = "standard output" if log_config.path == "-" else log_config.path
    chain = (f"HMAC-SHA-256 chain, key {log_config.hmac_key_file}" if log_config.hmac_key_file
             else "SHA-256 chain")
    return f"{where} ({chain})"


def _services_text(config: Config) -> str:
    if not config.services:
        return "none, an open resolver" if config.default_service == open_default_service() \
            else "none, only the default service"
    return (f"{len(config.services)} (" + ", ".join(s.name for s in config.services)
            + ") and the default service")


def serve(config: Config, path: str | None = None, listen_override: tuple | None = None) -> None:
    """Run on uvloop, the project's event loop: one process, or ``workers`` processes on
    SO_REUSEPORT sockets under a supervisor."""
    import uvloop
    if config.workers <= 1:
        uvloop.run(Service(config, path, listen_override).run())
        return
    supervise(config, path, listen_override)


MAX_RESTARTS = 10  # per worker, then the supervisor gives up and exits non-zero


def supervise(config: Config, path: str | None, listen_override: tuple | None) -> None:
    """Fork the workers, pass SIGTERM, SIGINT and SIGHUP on to them, restart one that dies
    unexpectedly (a bounded number of times), and exit when all have stopped."""
    import uvloop

    def start(index: int) -> int:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 0
            try:
                uvloop.run(Service(config, path, listen_override, worker=index).run())
            except Failure as exc:  # a fault of the host or the file: one line
                log.error("worker %d: %s", index, exc)
                code = exc.status
            except BaseException:  # a worker reports its own failure, then exits
                log.exception("worker %d failed", index)
                code = 1
            os._exit(code)
        return pid

    workers = {start(index): index for index in range(config.workers)}
    restarts = dict.fromkeys(range(config.workers), 0)
    stopping = False

    def forward(sig, _frame) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in workers:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    log.info("supervising %d workers", config.workers)
    failed = False
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = workers.pop(pid, None)
        if index is None:
            continue
        if not stopping and restarts[index] < MAX_RESTARTS:
            restarts[index] += 1
            log.error("worker %d exited (status %d); restarting it", index, status)
            workers[start(index)] = index
        elif not stopping:
            log.error("worker %d keeps failing; stopping", index)
            failed = True
            forward(signal.SIGTERM, None)
    if failed:
        raise SystemExit(1)
