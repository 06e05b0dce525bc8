"""The resolvers the harnesses run against, each a real process: ``dnssec-sidecar serve`` and,
as the reference, Unbound from Debian (``apt-get install unbound``).

Both get the same root hints, trust anchors and validation time, listen on one loopback
address, port 53, and start with an empty cache::

    with start("unbound", "127.0.0.171", tmp_path, hints=[("a.root-servers.test.",
               "127.0.0.10")], anchors=[". IN DS 12345 8 2 ..."], time=NOW) as r:
        r.ask("www.example.", "A")
"""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query

from tests import processes
from tests.testtree.authority import outgoing_line

ROOT_DIR = Path(__file__).resolve().parent.parent.parent
PORT = 53
KINDS = ("dnssec-sidecar", "unbound")
UNBOUND = shutil.which("unbound") or next(
    (p for p in ("/usr/sbin/unbound",) if Path(p).exists()), None)


def _utc(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


class Resolver:
    """A running resolver process: ``ask`` it like a stub, ``stop`` it."""

    def __init__(self, kind: str, address: str, process: subprocess.Popen, log: Path) -> None:
        self.kind, self.address, self.process, self.log = kind, address, process, log

    def ask(self, name: str, rdtype: str = "A", *, dnssec: bool = True) -> dns.message.Message:
        """UDP with DO (and AD, so a resolver answering without DO still shows AD), TCP on TC."""
        query = dns.message.make_query(name, rdtype, want_dnssec=dnssec, payload=1232)
        query.flags |= dns.flags.AD
        response = dns.query.udp(query, self.address, port=PORT, timeout=8)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, self.address, port=PORT, timeout=8)
        return response

    def stop(self) -> None:
        processes.stop(self.process)

    def __enter__(self) -> "Resolver":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _sidecar_config(address: str, directory: Path, hints, anchors, now: int,
                    allow_sha1: bool, upstream_ms: int) -> str:
    hint_text = ", ".join(f'{{name: {n}, addresses: ["{a}"]}}' for n, a in hints)
    anchor_text = ", ".join(f'"{a}"' for a in anchors)
    return (f'listen: ["{address}:{PORT}"]\n'
            f"root_hints: [{hint_text}]\n"
            f"trust_anchors: [{anchor_text}]\n"
            f'validation: {{time: "{_utc(now):%Y-%m-%dT%H:%M:%SZ}", '
            f"allow_sha1: {'true' if allow_sha1 else 'false'}}}\n"
            + outgoing_line().replace("outgoing: {", "outgoing: {ipv4: true, ipv6: false, ")
            + "\n"
            f"timeouts: {{upstream_ms: {upstream_ms}, query_ms: 4000}}\n"
            "metrics: {enabled: false}\n"
            f'log: {{path: "{directory / "lookups.log"}"}}\n')


def _unbound_config(address: str, directory: Path, hints, anchors, now: int) -> str:
    (directory / "root.hints").write_text("".join(
        f". 3600000 NS {n}\n{n} 3600000 A {a}\n" for n, a in hints))
    lines = ["server:",
             f"  interface: {address}", f"  port: {PORT}", "  do-ip6: no",
             "  do-not-query-localhost: no", "  access-control: 127.0.0.0/8 allow",
             '  username: ""', '  chroot: ""', f'  directory: "{directory}"',
             f'  pidfile: "{directory / "unbound.pid"}"', "  use-syslog: no",
             f'  logfile: "{directory / "unbound.log"}"', "  verbosity: 1",
             f'  root-hints: "{directory / "root.hints"}"',
             "  module-config: \"validator iterator\"",
             f'  val-override-date: "{_utc(now):%Y%m%d%H%M%S}"',
             "  ede: yes", "  val-log-level: 2", "  num-threads: 1",
             "  so-reuseport: no", "  edns-buffer-size: 1232",
             # Bogus answers are kept 60 s by default (RFC 9520 allows caching failures);
             # the harness asks again once the relay is honest, so it keeps none.
             "  val-bogus-ttl: 0",
             "  outgoing-range: 64", "  infra-host-ttl: 1",
             # test. is one of Unbound's built-in empty zones (RFC 6761): the tree uses it
             '  local-zone: "test." nodefault']
    lines += [f'  trust-anchor: "{a}"' for a in anchors]
    lines += ["remote-control:", "  control-enable: no"]
    return "\n".join(lines) + "\n"


def start(kind: str, address: str, directory: Path, *, hints, anchors, now: int,
          allow_sha1: bool = False, extra: str = "", upstream_ms: int = 300) -> Resolver:
    """Start ``kind`` (one of KINDS) on ``address``:53 with root ``hints`` [(name, address)],
    trust ``anchors`` (". IN DS ..." lines) and the validation time ``now`` (epoch);
    ``extra``: more lines of the sidecar's YAML configuration; ``upstream_ms``: its
    ``timeouts.upstream_ms`` (300: the relay's faults are found fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{kind}.stderr"
    if kind == "dnssec-sidecar":
        config = directory / "sidecar.yaml"
        config.write_text(_sidecar_config(address, directory, hints, anchors, now, allow_sha1,
                                          upstream_ms) + extra)
        argv = [sys.executable, "-m", "resolver.cli", "serve", "--config", str(config)]
    elif kind == "unbound":
        if UNBOUND is None:
            raise RuntimeError("unbound is not installed")
        # Unbound has no switch for SHA-1: it validates RSASHA1 like every algorithm it knows
        config = directory / "unbound.conf"
        config.write_text(_unbound_config(address, directory, hints, anchors, now))
        argv = [UNBOUND, "-d", "-c", str(config)]
    else:
        raise ValueError(kind)
    with log.open("w") as err:
        process = subprocess.Popen(argv, cwd=ROOT_DIR, stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(200):  # bounded wait for the listener
        try:
            with socket.create_connection((address, PORT), timeout=0.2):
                return Resolver(kind, address, process, log)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {process.returncode}: "
                                   f"{log.read_text()[-2000:]}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{kind} did not start on {address}")
