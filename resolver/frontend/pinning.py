"""Pinning (issue #17, ``services[].pin``): the addresses a service's answers give (A, AAAA,
SVCB/HTTPS hints: resolver.frontend.addresses) added to the service's nftables sets, so that
a firewall that drops egress except to those sets lets the workload reach exactly the
addresses its validated, allowed answers named: not a raw IP, not an address some other name
once had (the rebinding of a name to an internal address is refused before it is pinned).

Each address gets a timeout of its record's TTL (as sent, counted down) plus ``grace``,
refreshed by every answer that carries it, and never shortened by one: the kernel element's
timeout is the latest expiry any name of the service gave it. ``add element`` of an element
already present sets its timeout anew since Linux 6.10 and is a no-op before, which
:meth:`resolver.nft.Nft.updates_timeouts` finds out at start; on an older kernel each address
is written as ``add``, ``delete``, ``add`` in one transaction: atomic, the element never
absent in between, its timeout set.

The pins of concurrent answers go to libnftables (resolver.nft) as one command list, one
netlink transaction, run in a thread of its own so that the event loop never waits on the
kernel; answers that arrive while a transaction runs make the next one. :meth:`Pinner.pin`
returns once the transaction is committed, and the frontend releases the answer only then
(a client's connect never races its rule); when it fails, it raises :class:`PinError` and the
client gets SERVFAIL (fail closed). A failed batch of several answers is retried one answer at
a time, so that one bad answer fails alone.

The names that led to each address (the question's name and the owner of the record, in lower
case) are kept with their expiry, for proxies: :meth:`Pinner.lookup` tells which validated
names pointed at an address for a service and until when, so that a proxy can check SNI or
Host against them. :meth:`Pinner.forget` removes a service's pins at once (a revoked rule),
:meth:`Pinner.revoke` those whose names are no longer allowed, :meth:`Pinner.snapshot` lists
them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.name

from resolver.config import Pin, Service
from resolver.errors import ResolverError
from resolver.frontend.addresses import addresses
from resolver.nft import Nft, NftError

log = logging.getLogger(__name__)

__all__ = ["MAX_PINS", "PinError", "Pinned", "Pinner", "check_set", "elements"]

#: Addresses remembered per service: beyond it, a new address is not pinned (SERVFAIL), so a
#: workload cannot grow the table without bound; expired ones are dropped first.
MAX_PINS = 65536
#: Seconds between sweeps of expired pins from the table (the kernel drops its own).
SWEEP_EVERY = 10.0
#: The set type each IP version needs (libnftables-json(5) names).
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}


class PinError(ResolverError):
    """A pin could not be committed; the text says why."""


@dataclass(frozen=True, slots=True)
class Element:
    """One address of an answer to pin: where it came from and for how long."""

    address: str
    version: int
    owner: str     # the record's owner name
    ttl: int


@dataclass(frozen=True, slots=True)
class Pinned:
    """What one answer pinned: ``(address, timeout in seconds)`` each, as committed."""

    added: tuple[tuple[str, int], ...]


def elements(rrsets: Iterable) -> list[Element]:
    """The addresses of an answer's RRsets (resolver.frontend.addresses), each with its
    record's TTL and owner name (lowercased, as a proxy compares SNI or Host)."""
    found = []
    for rrset in rrsets:
        for address in addresses(rrset):
            version = 6 if ":" in address else 4
            found.append(Element(address, version, rrset.name.to_text().lower(), rrset.ttl))
    return found


def check_set(nft: Nft, pin: Pin, version: int) -> str | None:
    """Why the set of IP ``version`` that ``pin`` names cannot be pinned into (no table, no
    set, the wrong type, no ``timeout`` flag, no permission: libnftables' words), or None."""
    name = pin.set4 if version == 4 else pin.set6
    try:
        info = nft.set_info(pin.family, pin.table, name)
    except NftError as exc:
        text = str(exc)
        return text if text.startswith("no ") else f"set {pin.family} {pin.table} {name}: {text}"
    if info.get("type") != SET_TYPES[version]:
        return (f"set {pin.family} {pin.table} {name}: type {info.get('type')}, not "
                f"{SET_TYPES[version]}")
    if "timeout" not in info.get("flags", ()):
        return (f"set {pin.family} {pin.table} {name}: no 'flags timeout' (pins expire with "
                "their TTL)")
    return None


class _Address:
    """A pinned address of a service: when its element expires, and each name that led to it
    with the expiry that name gave."""

    __slots__ = ("expires", "names")

    def __init__(self) -> None:
        self.expires = 0.0
        self.names: dict[str, float] = {}


class _Request:
    """One answer's pins (``found``), or pins to remove (``found`` None): those of ``service``
    in ``pin``'s sets except the addresses whose names ``keep`` keeps (None: keeps none)."""

    __slots__ = ("service", "qname", "found", "pin", "keep", "future")

    def __init__(self, service: str, qname: str = "", found: list[Element] | None = None,
                 pin: Pin | None = None,
                 keep: Callable[[dict[str, float]], bool] | None = None) -> None:
        self.service, self.qname, self.found, self.pin, self.keep = (service, qname, found,
                                                                    pin, keep)
        self.future: asyncio.Future | None = None


class Pinner:
    """The pins of every service with ``pin``, in the kernel's sets and in a table of names.
    ``nft`` is a resolver.nft.Nft (made here when there is a service to pin for; a missing
    library raises NftError); ``clock`` gives seconds since the epoch. One event loop uses it;
    libnftables runs in one thread of its own."""

    def __init__(self, services: Iterable[Service], nft: Nft | None = None,
                 clock: Callable[[], float] = time.time, readd: bool | None = None) -> None:
        self.clock = clock
        #: Whether a refresh is written ``add``, ``delete``, ``add`` (None: probe the kernel).
        self.readd = readd
        self._pins: dict[str, dict[str, _Address]] = {}
        self._targets: dict[str, Pin] = {}
        self._nft = nft
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[_Request] = []
        self._task: asyncio.Task | None = None
        self._swept = 0.0
        self._last_error: str | None = None
        #: Transactions committed, commands sent, answers refused for a failed pin.
        self.stats = {"transactions": 0, "commands": 0, "failures": 0}
        self.configure(services)

    def configure(self, services: Iterable[Service]) -> None:
        """Pin for ``services`` from now on (a reload). The pins of a service removed, or whose
        sets changed, are removed from their sets at once (from within a running event loop;
        in the background: a failure is logged)."""
        targets = {s.name: s.pin for s in services if s.pin is not None}
        if targets and self._nft is None:
            self._nft = Nft()
        if targets and self.readd is None:
            try:
                self.readd = not self._nft.updates_timeouts()
            except NftError as exc:
                log.warning("pinning: cannot tell whether this kernel updates an element's "
                            "timeout (%s): refreshing with add, delete, add", exc)
                self.readd = True
        for name, pin in self._targets.items():
            if targets.get(name) != pin and self._pins.get(name):
                self._enqueue(_Request(name, pin=pin)).add_done_callback(_log_failure)
        self._targets = targets

    def wants(self, service: Service | None) -> bool:
        """Whether answers of ``service`` are pinned."""
        return service is not None and service.name in self._targets

    async def pin(self, service: str, qname: dns.name.Name, found: list[Element]) -> Pinned:
        """Add the addresses ``found`` in an answer to ``qname`` to ``service``'s sets; return
        once committed, or raise :class:`PinError`. An address of a version the service has
        no set for is not pinned."""
        pin = self._targets.get(service)
        if pin is None:
            raise PinError(f"service {service} does not pin")
        wanted = [e for e in found if (pin.set4 if e.version == 4 else pin.set6) is not None]
        if not wanted:
            return Pinned(())
        return await self._enqueue(_Request(service, qname.to_text().lower(), wanted))

    async def forget(self, service: str) -> int:
        """Remove every pin of ``service`` from its sets and the table at once (a removed
        service, a revocation); the number of addresses removed."""
        return await self.revoke(service, None)

    async def revoke(self, service: str, keep: Callable[[str], bool] | None) -> int:
        """Remove the pins of ``service`` none of whose names ``keep`` (a name's text -> still
        allowed) keeps, at once (a rule removed; None: every pin); the number removed."""
        if not self._pins.get(service):
            return 0
        kept = None if keep is None else (lambda names: any(map(keep, names)))
        return await self._enqueue(_Request(service, pin=self._targets.get(service), keep=kept))

    def lookup(self, service: str, address: str) -> list[tuple[str, float]]:
        """The validated names that pointed at ``address`` for ``service`` and the time (epoch
        seconds) each pin ends, latest first; [] when it is not pinned."""
        entry = self._pins.get(service, {}).get(_normal(address))
        now = self.clock()
        if entry is None or entry.expires <= now:
            return []
        return sorted(((n, t) for n, t in entry.names.items() if t > now),
                      key=lambda item: (-item[1], item[0]))

    def snapshot(self, service: str) -> list[dict]:
        """Every live pin of ``service``: ``{"address", "expires", "names": {name: expires}}``,
        by address."""
        now = self.clock()
        return [{"address": address, "expires": entry.expires,
                 "names": {n: t for n, t in entry.names.items() if t > now}}
                for address, entry in sorted(self._pins.get(service, {}).items())
                if entry.expires > now]

    def close(self) -> None:
        """Stop the pinning thread and free libnftables' context (at shutdown)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._nft is not None:
            self._nft.close()

    # --- the batches -----------------------------------------------------------------------

    def _enqueue(self, request: _Request) -> asyncio.Future:
        """Queue ``request`` for the next transaction; its future gets the result."""
        loop = asyncio.get_running_loop()
        request.future = loop.create_future()
        self._pending.append(request)
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return request.future

    async def _drain(self) -> None:
        """Commit what is pending, batch after batch, until nothing is."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="nft")
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._commit(loop, batch, retry=len(batch) > 1)
        finally:
            self._task = None

    async def _commit(self, loop, batch: list[_Request], retry: bool) -> None:
        """One transaction for ``batch``; the table changes and the waiting answers are
        released only once it is committed. A failure is retried one request at a time when
        ``retry``, else given to every request of the batch."""
        now = self.clock()
        self._sweep(now)
        try:
            commands, staged, results = self._plan(batch, now)
            if commands:
                await loop.run_in_executor(self._executor, self._nft.run, commands)
        except (NftError, PinError) as exc:
            if retry:
                for request in batch:
                    await self._commit(loop, [request], retry=False)
                return
            self.stats["failures"] += len(batch)
            error = exc if isinstance(exc, PinError) else PinError(f"nftables: {exc}")
            if str(error) != self._last_error:  # once per change of reason, not per answer
                self._last_error = str(error)
                log.warning("pinning failed, answers refused (SERVFAIL): %s", error)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        except Exception as exc:  # noqa: BLE001 - a waiting answer never hangs
            log.exception("pinning failed")
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(PinError(f"internal error: {exc!r}"))
            return
        self._last_error = None
        self.stats["transactions"] += bool(commands)
        self.stats["commands"] += len(commands)
        for (service, address), entry in staged.items():
            table = self._pins.setdefault(service, {})
            if entry is None:
                table.pop(address, None)
            else:
                table[address] = entry
        for request, result in zip(batch, results):
            if not request.future.done():
                request.future.set_result(result)

    def _plan(self, batch: list[_Request], now: float):
        """The commands of ``batch`` in order, the table's entries they change (None: gone),
        and each request's result."""
        commands: list[dict] = []
        staged: dict[tuple[str, str], _Address | None] = {}
        results: list = []

        def current(service: str, address: str) -> _Address | None:
            key = (service, address)
            return staged[key] if key in staged else self._pins.get(service, {}).get(address)

        for request in batch:
            if request.found is None:  # pins to remove
                service, removed = request.service, 0
                for address in dict.fromkeys([*self._pins.get(service, {}),
                                              *(a for s, a in staged if s == service)]):
                    entry = current(service, address)
                    if entry is None or (request.keep is not None and request.keep(entry.names)):
                        continue
                    staged[(service, address)] = None
                    removed += 1
                    if request.pin is not None:
                        commands += _remove(request.pin, address)
                results.append(removed)
                continue
            pin = self._targets.get(request.service)
            if pin is None:
                raise PinError(f"service {request.service} does not pin (any more)")
            added = []
            for element in request.found:
                address = _normal(element.address)
                old = current(request.service, address)
                if old is None and len(self._pins.get(request.service, {})) >= MAX_PINS:
                    self._sweep(now, force=True)
                if old is None and len(self._pins.get(request.service, {})) >= MAX_PINS:
                    raise PinError(f"{MAX_PINS} addresses pinned for service "
                                   f"{request.service}: the table is full")
                entry = _Address()
                if old is not None:
                    entry.expires, entry.names = old.expires, dict(old.names)
                until = now + element.ttl + pin.grace
                entry.expires = max(entry.expires, until)
                for name in dict.fromkeys((request.qname, element.owner)):
                    entry.names[name] = max(entry.names.get(name, 0.0), until)
                staged[(request.service, address)] = entry
                timeout = max(1, math.ceil(entry.expires - now))
                commands += _refresh(pin, element.version, address, timeout, self.readd)
                added.append((address, element.ttl + pin.grace))
            results.append(Pinned(tuple(added)))
        return commands, staged, results

    def _sweep(self, now: float, force: bool = False) -> None:
        """Drop the table's expired pins (every SWEEP_EVERY seconds at most, unless ``force``:
        a full table)."""
        if now - self._swept < SWEEP_EVERY and not force:
            return
        self._swept = now
        for table in self._pins.values():
            for address in [a for a, e in table.items() if e.expires <= now]:
                del table[address]


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("pins of a service removed or changed by a reload: %s", future.exception())


def _normal(address: str) -> str:
    """One text per address (``2001:DB8::0:1`` -> ``2001:db8::1``), as the table's key."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _element(pin: Pin, version: int, elem) -> dict:
    return {"element": {"family": pin.family, "table": pin.table,
                        "name": pin.set4 if version == 4 else pin.set6, "elem": [elem]}}


def _refresh(pin: Pin, version: int, address: str, timeout: int, readd: bool) -> list[dict]:
    """The element present with ``timeout``: ``add`` where that sets it, else ``add``,
    ``delete``, ``add``."""
    value = {"add": _element(pin, version, {"elem": {"val": address, "timeout": timeout}})}
    if not readd:
        return [value]
    return [value, {"delete": _element(pin, version, address)}, value]


def _remove(pin: Pin, address: str) -> list[dict]:
    """``add`` then ``delete``: gone whether or not the kernel had expired it already (a
    ``delete`` of an absent element would fail the whole transaction)."""
    version = 6 if ":" in address else 4
    if (pin.set4 if version == 4 else pin.set6) is None:
        return []
    value = {"elem": {"val": address, "timeout": 1}}
    return [{"add": _element(pin, version, value)}, {"delete": _element(pin, version, address)}]
