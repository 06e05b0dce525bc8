"""Zone cuts and their security state (RFC 4035 §4.3, §5.2), and the bounded map every table
keyed by network-controlled names uses."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import dns.name
import dns.rrset

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
