"""The test tree served by NSD (Debian ``nsd``, NLnet Labs' authoritative server) in place of
authority.py's servers: one instance for each authoritative server address of tree.json,
serving that server's signed zone files as they are, so that referrals go from address to
address as in the tree. What the resolver then reads is NSD's replies, not ours: resolving the
tree through it shows that no verdict depends on how our own test servers shape a reply
(tests/test_nsd_tree.py), and it gives the cold benchmarks an upstream whose answers cost tens
of microseconds instead of about a millisecond (bench/cold.py ``--upstream nsd``).

The hostile, lame and forwarding servers of tree.json have behaviours of authority.py's own
(floods, REFUSED, recursion) and are not started here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests import processes
from tests.testtree import HERE, zonedata

PORT = 53
START_S = 15.0  # for each instance to accept connections

_CONF = """server:
  ip-address: {address}
  port: {port}
  username: ""
  chroot: ""
  zonesdir: ""
  database: ""
  pidfile: {dir}/nsd.pid
  xfrdfile: {dir}/xfrd.state
  zonelistfile: {dir}/zone.list
  cookie-secret-file: {dir}/cookiesecrets.txt
  logfile: {dir}/nsd.log
  server-count: 1
  verbosity: 0
  hide-version: yes
remote-control:
  control-enable: yes
  control-interface: {dir}/nsd.sock
"""


def available() -> bool:
    """Whether NSD and nsd-control are installed."""
    return shutil.which("nsd") is not None and shutil.which("nsd-control") is not None


def zones_for(names: list[str]) -> set[str]:
    """The zones of the tree a resolver meets resolving ``names``: those on the way down to
    each and, as some resolvers look up a zone's NS names (Knot Resolver does, the root's
    ``a.root-servers.test.`` among them), those on the way to each of their NS names."""
    entries = _entries()
    zones, todo = set(), list(names)
    while todo:
        for zone in _ancestors(todo.pop()):
            if zone in entries and zone not in zones:
                zones.add(zone)
                todo.append(entries[zone]["ns"])
    return zones


def _entries() -> dict:
    manifest = zonedata.manifest()
    return {**manifest["zones"], **manifest.get("scenario_zones", {})}


def _ancestors(name: str) -> list[str]:
    """``name`` (absolute, in text) and every name above it, the root last."""
    labels = name.rstrip(".").split(".") if name != "." else []
    return [".".join(labels[i:]) + "." for i in range(len(labels))] + ["."]


class NsdTree:
    """NSD instances serving the tree's zones from ``directory``: every authoritative
    server's, or only those holding one of ``zones``; on ``port`` of each server's address
    (another than 53 behind tests/onpath's relay), each on ``cpus`` if given. A context
    manager; :meth:`stop` ends them all."""

    def __init__(self, directory: Path, zones: set[str] | None = None,
                 cpus: set[int] | None = None, port: int = PORT) -> None:
        entries = _entries()
        self.confs: list[Path] = []
        self.processes: list[subprocess.Popen] = []
        try:
            for address, server in zonedata.manifest()["servers"].items():
                served = [z for z in server["zones"] if zones is None or z in zones]
                if server.get("role") != "authoritative" or not served:
                    continue
                where = directory / f"nsd-{address}"
                where.mkdir(parents=True, exist_ok=True)
                conf = where / "nsd.conf"
                conf.write_text(_CONF.format(address=address, port=port, dir=where) + "".join(
                    f'zone:\n  name: "{zone}"\n  zonefile: {HERE / entries[zone]["file"]}\n'
                    for zone in served))
                self.confs.append(conf)
                with (where / "output.log").open("wb") as sink:
                    self.processes.append(subprocess.Popen(
                        ["nsd", "-d", "-c", str(conf)], stdout=sink, stderr=sink,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus)))
                self._wait((address, port), self.processes[-1], where)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _wait(address: tuple[str, int], process: subprocess.Popen, where: Path) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with socket.create_connection(address, timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        log = (where / "output.log").read_text(errors="replace").strip().splitlines()
        raise RuntimeError(f"nsd on {address[0]} port {address[1]} did not start: "
                           f"{' | '.join(log[-3:]) or 'no output'}")

    def queries(self) -> int:
        """Queries the instances have received so far (``nsd-control stats_noreset``)."""
        total = 0
        for conf in self.confs:
            out = subprocess.run(["nsd-control", "-c", str(conf), "stats_noreset"],
                                 capture_output=True, text=True, timeout=10).stdout
            total += sum(int(line.partition("=")[2]) for line in out.splitlines()
                         if line.startswith("num.queries="))
        return total

    def stop(self) -> None:
        for process in self.processes:
            processes.stop(process)

    def __enter__(self) -> NsdTree:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
