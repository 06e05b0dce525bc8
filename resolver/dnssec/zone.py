"""Zone cuts and their security state (RFC 4035 §4.3, §5.2), and the bounded maps every table
keyed by network-controlled names uses."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import dns.name
import dns.rrset

from resolver.dnssec.canonical import name_wire
from resolver.dnssec.config import BudgetName
from resolver.dnssec.result import Verdict
from resolver.ede import EDE

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A dict bounded to ``size`` entries, the one used longest ago evicted first. Every table
    whose keys come from the network (zone names, signers) is one, so that no query stream can
    grow memory without bound (issue #14 §5)."""

    __slots__ = ("size", "_items")

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def name_key(name: dns.name.Name) -> bytes:
    """How the tables of zones hold a name: its canonical wire form (RFC 4034 §6.2), equal for
    names DNS holds equal (RFC 4343). Python hashes it once, where dnspython hashes a Name label
    by label, character by character, on every lookup. A walk up to the root takes
    :func:`parent_key` of each key instead of building names."""
    return name_wire(name.labels)


_new, _set = object.__new__, object.__setattr__


def ancestor(name: dns.name.Name, labels: int) -> dns.name.Name:
    """The name of the last ``labels`` labels of ``name`` (at least 1: the root), its ancestor
    at that depth, built without dnspython's checks and conversions of each label (about 2 us
    a name, on every minimised question and DS owner): ``name``'s were checked when it was
    made."""
    found = _new(dns.name.Name)
    _set(found, "labels", name.labels[-labels:])
    return found


def parent(name: dns.name.Name) -> dns.name.Name:
    """``name.parent()`` (``name`` not the root) as :func:`ancestor` builds it."""
    return ancestor(name, len(name.labels) - 1)


def parent_key(key: bytes) -> bytes:
    """The :func:`name_key` of the parent of the name of ``key``: the key less its first
    label (``b""`` after the root's, which ends a walk)."""
    return key[key[0] + 1:]


class NameLru(Lru[bytes, V]):
    """An :class:`Lru` by DNS name: ``get``, ``put``, ``pop`` and ``in`` take names, held
    under their :func:`name_key`; ``get_key`` and ``pop_key`` take keys, for walks that slice
    them."""

    __slots__ = ()

    def get_key(self, key: bytes) -> V | None:
        return Lru.get(self, key)

    def pop_key(self, key: bytes) -> V | None:
        return Lru.pop(self, key)

    def get(self, name: dns.name.Name) -> V | None:  # type: ignore[override]
        return Lru.get(self, name_key(name))

    def put(self, name: dns.name.Name, value: V) -> V:  # type: ignore[override]
        return Lru.put(self, name_key(name), value)

    def pop(self, name: dns.name.Name) -> V | None:  # type: ignore[override]
        return Lru.pop(self, name_key(name))

    def __contains__(self, name: dns.name.Name) -> bool:  # type: ignore[override]
        return Lru.__contains__(self, name_key(name))


@dataclass(slots=True)
class Zone:
    """A zone cut: where to ask, and whether and how its data is signed."""

    name: dns.name.Name
    servers: list[tuple[str, int]]
    ns_names: list[dns.name.Name] = field(default_factory=list)
    security: Verdict = Verdict.INDETERMINATE
    keys: dns.rrset.RRset | None = None
    ds: dns.rrset.RRset | None = None  # the parent's validated DS set that authenticated keys
    key_expiration: int | None = None  # of the RRSIG that authenticated keys (RFC 4034 §3.1.5)
    ede: EDE | None = None
    reason: str = ""
    budget: BudgetName | None = None  # the work budget a BOGUS verdict ran out of
    recursive: bool = False
    expires: float = float("inf")
    proof: list[str] = field(default_factory=list)  # how its security was established
    not_queried: list[str] = field(default_factory=list)  # addresses do_not_query left out
    parent: "Zone | None" = None

    def chain(self) -> list["Zone"]:
        """This zone and its ancestors up to the root, root first: the chain of trust."""
        zones, zone = [], self
        while zone is not None and len(zones) < 128:
            zones.append(zone)
            zone = zone.parent
        return zones[::-1]
