"""Bounded resolution work (issue #14 §5): how many client queries may wait for a resolution
at once, in the whole process and per client address.

Every client query that misses the cache waits for a resolution, alone or joined with an
identical question already in progress (resolver.server.Resolver), and holds its memory, and a
resolution an upstream socket, for up to ``timeouts.query_ms``. A flood of unique names would
otherwise grow that without bound. A query over either limit is not resolved: it is answered
at once with SERVFAIL and EDE 0 naming the limit, or dropped (``limits.over_limit``), so a
stub moves on to its next server instead of waiting (RFC 8914 §4.1, RFC 1035 §7.2)."""

from __future__ import annotations

PROCESS = "max_resolutions"
CLIENT = "max_resolutions_per_client"


class Admission:
    """The count of client queries waiting for a resolution, in total and per client. A
    client's entry exists only while it has one waiting, so there are never more entries than
    ``total`` queries."""

    def __init__(self, total: int, per_client: int, drop: bool = False) -> None:
        self.total, self.per_client, self.drop = total, per_client, drop
        self.in_progress = 0
        self._clients: dict[str, int] = {}

    def configure(self, total: int, per_client: int, drop: bool) -> None:
        """New limits (a reload); queries already admitted keep their place."""
        self.total, self.per_client, self.drop = total, per_client, drop

    def admit(self, client: str) -> str | None:
        """Count a query of ``client``: None when admitted (then :meth:`release` it once it is
        answered), else the name of the limit it is over."""
        if self.in_progress >= self.total:
            return PROCESS
        held = self._clients.get(client, 0)
        if held >= self.per_client:
            return CLIENT
        self.in_progress += 1
        self._clients[client] = held + 1
        return None

    def release(self, client: str) -> None:
        self.in_progress -= 1
        held = self._clients[client] - 1
        if held:
            self._clients[client] = held
        else:
            del self._clients[client]

    def reason(self, limit: str) -> str:
        """The EDE text of a query over ``limit``."""
        if limit == PROCESS:
            return (f"resolver busy: {self.total} queries waiting for resolutions "
                    "(limits.max_resolutions)")
        return (f"resolver busy: this client has {self.per_client} queries waiting for "
                "resolutions (limits.max_resolutions_per_client)")
