"""The running services and their generations (issue #17): what the runtime policy API
(resolver.ops.api) reads and changes, and what a reload of the configuration file replaces.

Every service, ``default`` included, has a generation: a number that changes with each change of
that service, drawn from one counter that only goes up (``generation`` of the whole). A change
names the generation it was made against (HTTP ``If-Match``, RFC 9110 §13.1.1; 0 for a service
that must not exist yet); any other is refused (:class:`Stale`), so that of two clients changing
the same service from the same generation one wins and the other is told. Changes are applied
one at a time (one lock), each atomically between two queries:

1. the new services are checked as the file's are (resolver.config.services);
2. listeners they name that are not bound yet are bound (one sandbox, one loopback address);
3. the runtime changes are written to ``api.persist`` when it is set;
4. a record of the change (resolver.forensic.record.CHANGE_FIELDS: who, what, the old and new
   generation) is sealed into the forensic chain;
5. the frontend takes the new policy (resolver.frontend.pipeline.Frontend.use_policy): the hit
   path forgets every kept answer and service match, so a rule removed takes effect with the
   next query; listeners no service names any more are closed; a pins provider forgets the
   pins of a service deleted or narrowed.

A failure before step 5 changes nothing. A reload replaces the services with the file's, and
then, with ``api.persist``, applies the runtime changes kept there again: for the services they
name, the API's version wins over the file's until it is deleted through the API or the persist
file is removed; every service the reload changes is recorded too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype
import orjson

from resolver.config import (DEFAULT_SERVICE_NAME, Config, ConfigError, Endpoint, Service,
                             check_pins, parse_service, service_data)
from resolver.errors import ResolverError
from resolver.forensic import record as fields
from resolver.forensic.seal import ForensicLogError
from resolver.frontend.policy import Policy

__all__ = ["Gone", "PolicyStore", "Refused", "Stale", "Unavailable"]

log = logging.getLogger("dnssec-sidecar")


class Refused(ResolverError):
    """A change refused for its content: ``field`` (within the service) and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason = field, reason


class Stale(ResolverError):
    """A change made against a generation that is not the service's: ``current`` (0: the
    service does not exist)."""

    def __init__(self, name: str, given: int, current: int) -> None:
        super().__init__(f"service {name}: generation {given} is not the current one ({current}"
                         + (", no such service" if current == 0 else "") + ")")
        self.current = current


class Gone(ResolverError):
    """No such service."""


class Unavailable(ResolverError):
    """The change could not be recorded or kept (the forensic log, the persist file)."""


class PolicyStore:
    """The services in force (``config``: the file's configuration with the runtime changes),
    their generations, and the listeners bound for them at run time. ``server`` binds and
    closes listeners (resolver.frontend.listeners.Server), ``forensic`` takes the change
    records (None: not recorded), ``on_change`` is told each new configuration. ``pins``, the
    pins provider (None until one is wired in), has ``forget(service)`` and ``snapshot(
    service)``, and may have ``revoke(service, keep)`` (``keep(name)``: still allowed); its
    ``forget`` and ``revoke`` may be coroutines."""

    def __init__(self, config: Config, server, forensic=None, *, metrics=None, pins=None,
                 worker: int | None = None,
                 on_change: Callable[[Config], None] | None = None) -> None:
        self.file_config = self.config = config
        self.server = server
        self.frontend = server.frontend
        self.forensic = forensic
        self.metrics = metrics
        self.pins = pins
        self.worker = worker
        self.on_change = on_change
        self.persist = config.api.persist if config.api is not None else None
        self.generation = 1
        self.generations = {service.name: 1 for service in _all(config)}
        self.overrides: dict[str, dict | None] = {}  # runtime changes: name -> spec, or deleted
        self.bound: set[Endpoint] = set()
        self.lock = asyncio.Lock()

    # --- reading ------------------------------------------------------------------------------

    def services(self) -> list[dict]:
        """Every service in matching order, ``default`` last: name, generation, where its
        version comes from (``file`` or ``api``) and the service in its YAML form."""
        return [self.describe(service) for service in _all(self.config)]

    def describe(self, service: Service) -> dict:
        return {"name": service.name, "generation": self.generations[service.name],
                "origin": "api" if service.name in self.overrides else "file",
                "service": service_data(service)}

    def get(self, name: str) -> Service:
        for service in _all(self.config):
            if service.name == name:
                return service
        raise Gone(f"no service {name!r}")

    def check(self, name: str, qname: str, qtype: str) -> dict:
        """The decision and rule a query of ``qname``/``qtype`` by service ``name`` would get
        now, from a copy of the policy (no budget spent, nothing sent upstream). Raises Gone,
        or Refused naming ``name`` or ``type``."""
        service = self.get(name)
        try:
            question = dns.name.from_text(qname)
        except Exception as exc:  # noqa: BLE001 - dnspython's many name errors
            raise Refused("name", f"{qname!r}: not a domain name ({exc})") from None
        try:
            rdtype = dns.rdatatype.from_text(qtype)
        except Exception:  # noqa: BLE001
            raise Refused("type", f"{qtype!r}: not a DNS type") from None
        return check(self.config, service, question, rdtype)

    # --- changing -----------------------------------------------------------------------------

    async def put(self, name: str, body: Any, if_match: int, by: dict) -> tuple[bool, int]:
        """Create or replace service ``name`` with ``body`` (a services entry's mapping) if its
        generation is ``if_match`` (0: it must not exist). Returns (created, new generation)."""
        async with self.lock:
            current = self.generations.get(name, 0)
            if if_match != current:
                raise Stale(name, if_match, current)
            try:
                service = parse_service(body, name)
            except ConfigError as exc:
                raise Refused(exc.field, exc.reason) from None
            old = self.config
            if name == DEFAULT_SERVICE_NAME:
                new = dataclasses.replace(old, default_service=service)
            else:
                self._check_forward(service, current)
                services = [service if s.name == name else s for s in old.services]
                if not current:
                    services.append(service)
                new = dataclasses.replace(old, services=tuple(services))
            try:  # each service pins into sets of its own, as in the file
                check_pins([(s.name, s) for s in _all(new) if s.name != name] + [("", service)])
            except ConfigError as exc:
                raise Refused(exc.field.lstrip("."), exc.reason) from None
            overrides = dict(self.overrides, **{name: service_data(service)})
            await self._apply(new, "put", by, overrides)
            return not current, self.generations[name]

    async def delete(self, name: str, if_match: int, by: dict) -> None:
        """Delete service ``name`` if its generation is ``if_match``."""
        async with self.lock:
            current = self.generations.get(name, 0)
            if current == 0:
                raise Gone(f"no service {name!r}")
            if name == DEFAULT_SERVICE_NAME:
                raise Refused("name", "the default service cannot be deleted; PUT it to change "
                                      "what clients matching no service may resolve")
            if if_match != current:
                raise Stale(name, if_match, current)
            new = dataclasses.replace(self.config, services=tuple(
                s for s in self.config.services if s.name != name))
            in_file = any(s.name == name for s in self.file_config.services)
            overrides = dict(self.overrides)
            if in_file:
                overrides[name] = None
            else:
                overrides.pop(name, None)
            await self._apply(new, "delete", by, overrides)

    async def start(self) -> None:
        """Apply the runtime changes kept in ``api.persist`` (if any) over the file's services;
        once serving, before the API answers."""
        if self.persist is None:
            return
        async with self.lock:
            try:
                kept = _read_persisted(self.persist)
            except (OSError, ValueError) as exc:
                log.error("api.persist: %s: %s; starting with the file's services",
                          self.persist, exc)
                return
            self.generation = max(self.generation, kept["generation"])
            await self._reapply(self.file_config, kept["services"], {"reload": "api.persist"})

    async def reload(self, file_config: Config, why: str) -> Config:
        """A reload of the file: its services replace the running ones, then (``api.persist``)
        the runtime changes kept are applied again. Returns the configuration in force."""
        async with self.lock:
            self.file_config = file_config
            overrides = self.overrides if self.persist is not None else {}
            return await self._reapply(file_config, overrides, {"reload": why})

    async def _reapply(self, file_config: Config, overrides: dict, by: dict) -> Config:
        services = list(file_config.services)
        default = file_config.default_service
        kept = {}
        for name, spec in overrides.items():
            try:
                service = None if spec is None else parse_service(spec, name)
            except ConfigError as exc:
                log.error("api.persist: service %s: %s; the file's version is used", name, exc)
                continue
            kept[name] = spec
            if name == DEFAULT_SERVICE_NAME and service is not None:
                default = service
            elif service is None:
                services = [s for s in services if s.name != name]
            elif any(s.name == name for s in services):
                services = [service if s.name == name else s for s in services]
            else:
                services.append(service)
        new = dataclasses.replace(file_config, services=tuple(services), default_service=default)
        try:
            await self._apply(new, "reload", by, kept)
        except (Refused, Unavailable) as exc:  # a listener of a kept change cannot be bound
            log.error("reload: runtime changes not applied (%s); the file's services are", exc)
            await self._apply(file_config, "reload", by, {})
        return self.config

    def _check_forward(self, service: Service, current: int) -> None:
        """A service's ``forward`` feeds the resolver's one forward table, which is the file's:
        a change may repeat the entries the service has, not change them."""
        before = self.get(service.name).forward if current else ()
        if service.forward != before:
            raise Refused("forward", "the forward table is set in the configuration file; a "
                                     "runtime change may repeat the service's entries as they "
                                     "are, not change them")

    async def _apply(self, new: Config, action: str, by: dict, overrides: dict) -> None:
        """Steps 2 to 5 of the module docstring, under the lock."""
        old_services = {s.name: s for s in _all(self.config)}
        new_services = {s.name: s for s in _all(new)}
        changed = [name for name in dict.fromkeys([*old_services, *new_services])
                   if old_services.get(name) != new_services.get(name)]
        generation, generations, records = self.generation, dict(self.generations), []
        for name in changed:
            before, after = old_services.get(name), new_services.get(name)
            generations.pop(name, None)
            if after is not None:
                generation += 1
                generations[name] = generation
            records.append(fields.policy_change(
                time.time(), self.worker, action, name, by, self.generations.get(name),
                generations.get(name), service_data(before) if before else None,
                service_data(after) if after else None))
        wanted = {ep for s in new.services for ep in s.listeners} - set(new.listen)
        added = await self._bind(wanted - self.bound, new)
        try:
            if self.persist is not None and action != "reload":
                _write_persisted(self.persist, generation, overrides)
            await self._record(records, required=action != "reload")
        except BaseException:
            for endpoint in added:
                await self.server.unbind(endpoint.host, endpoint.port)
            raise
        self.generation, self.generations, self.overrides = generation, generations, overrides
        policy = Policy(new)
        self.frontend.use_policy(policy)
        self.config = new
        for endpoint in sorted(self.bound - wanted, key=str):
            await self.server.unbind(endpoint.host, endpoint.port)
        self.bound = wanted
        for name in changed:
            await self._forget(old_services.get(name), new_services.get(name), policy)
        if self.metrics is not None and changed:
            self.metrics.policy_changes.labels(action).inc(len(changed))
        if self.on_change is not None:
            self.on_change(new)
        say = log.debug if action == "reload" else log.info  # a reload says its own line
        for record in records:
            say("policy %s: service %s, generation %s -> %s, by %s", action,
                     record["service"], record["old_generation"], record["new_generation"],
                     ", ".join(f"{key} {value}" for key, value in by.items()))

    async def _bind(self, endpoints: set[Endpoint], new: Config) -> list[Endpoint]:
        """Bind ``endpoints``; on a failure, close those bound and refuse, naming the field."""
        added: list[Endpoint] = []
        for endpoint in sorted(endpoints, key=str):
            try:
                await self.server.bind(endpoint.host, endpoint.port)
            except OSError as exc:
                for done in added:
                    await self.server.unbind(done.host, done.port)
                raise Refused(_listener_field(new, endpoint),
                              f"'{endpoint}': cannot bind: {exc.strerror or exc}") from None
            added.append(endpoint)
        return added

    async def _record(self, records: list[dict], required: bool) -> None:
        """Seal the change's records; a change through the API that cannot be recorded is not
        made, a reload (the file is the authority) is made and the failure logged."""
        if self.forensic is None:
            return
        try:
            for record in records:
                await self.forensic.append(record)
        except ForensicLogError as exc:
            if required:
                raise Unavailable(f"the change cannot be recorded: {exc}") from None
            log.error("reload: the policy changes could not be recorded: %s", exc)

    async def _forget(self, before: Service | None, after: Service | None,
                      policy: Policy) -> None:
        """A service deleted forgets its recent denials and its pins; narrowed (a rule it had
        is gone), the pins of names ``policy`` no longer allows (``revoke``), or all of them
        when the provider has only ``forget``."""
        if before is None:
            return
        if after is None:
            self.frontend.denials.forget(before.name)
        pins = self.pins
        if pins is None or (after is not None and set(before.allow) <= set(after.allow)):
            return
        try:
            if after is not None and hasattr(pins, "revoke"):
                done = pins.revoke(before.name, lambda name: policy.check_name(
                    after, dns.name.from_text(name)).allowed)
            else:
                done = pins.forget(before.name)
            if inspect.isawaitable(done):
                await done
        except Exception:  # noqa: BLE001 - the policy is in force; say what failed
            log.exception("pins of service %s could not be removed", before.name)


def check(config: Config, service: Service, qname: dns.name.Name, qtype: int) -> dict:
    """The decision a query of ``qname``/``qtype`` by ``service`` gets under ``config``'s
    policy, judged by a copy (its budgets untouched): ``decision`` (``allow``, ``refuse``,
    ``would_refuse``), ``rule``, ``reason``, ``rcode`` and ``mode``. The question only: the
    answer's chain and addresses are judged when it arrives. Shared by ``POST /v1/check`` and
    the offline ``policy check``."""
    decision = Policy(config).check_question(service, qname, qtype)
    word = ("refuse" if not decision.allowed else "would_refuse" if decision.would_refuse
            else "allow")
    return {"service": service.name, "mode": service.mode, "name": qname.to_text(),
            "type": dns.rdatatype.to_text(qtype), "decision": word, "rule": decision.rule,
            "reason": decision.reason, "rcode": dns.rcode.to_text(decision.rcode)}


def _all(config: Config) -> tuple[Service, ...]:
    return (*config.services, config.default_service)


def _listener_field(config: Config, endpoint: Endpoint) -> str:
    for service in config.services:
        if endpoint in service.listeners:
            return f"listeners[{service.listeners.index(endpoint)}]"
    return "listeners"


def _read_persisted(path: str) -> dict:
    """The runtime changes kept in ``path``: ``{"generation": int, "services": {name: spec or
    null}}``; an absent file holds none."""
    try:
        with open(path, "rb") as f:
            data = orjson.loads(f.read())
    except FileNotFoundError:
        return {"generation": 1, "services": {}}
    if not (isinstance(data, dict) and type(data.get("generation")) is int
            and isinstance(data.get("services"), dict)):
        raise ValueError("not a file of runtime changes (generation, services)")
    return data


def _write_persisted(path: str, generation: int, overrides: dict) -> None:
    """Replace ``path`` atomically (a temporary file, fsync, rename) with the runtime changes."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(orjson.dumps({"generation": generation, "services": overrides},
                                 option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise Unavailable(f"api.persist: {path}: {exc.strerror or exc}") from None
