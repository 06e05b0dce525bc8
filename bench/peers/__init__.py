"""The resolvers the comparison benchmarks run side by side, each started by hand on its own
loopback address (127.0.0.70-79) with a config written into a temporary directory, all
validating the signed test tree (tests/testtree) from its root trust anchor (RFC 4035 §4.4):

* dnssec-sidecar with the forensic log on (in the run's directory, on disk), on disk
  gzip-compressed (``log.compress: gzip``), on in tmpfs (/dev/shm: what the log costs without
  the disk under it) and off (``workers`` from $WORKERS, default 1); with $BEFORE (a checkout
  of an earlier commit, its modules built in place) that one too, log on disk;
* Unbound (Debian ``unbound``), one thread, validation time pinned like ours, the 4 MiB UDP
  receive buffer ours asks for (``so-rcvbuf``), and a control socket for its counters;
* Knot Resolver (Debian ``knot-resolver``, ``kresd``), one process;
* PowerDNS Recursor (Debian ``pdns-recursor``), one thread.

The tree's zones are served by its own Python servers (``start_tree``) or, for the cold
figures, by NSD (``start_nsd_tree``).

Knot and PowerDNS cannot pin the validation time: they use the real clock, which is inside the
tree's signature window (2026-01-01 to 2036-01-01). A peer whose program is missing or that
does not come up is reported with the reason and left out; no distribution service is used.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT_DIR = Path(__file__).resolve().parents[2]
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

from tests import processes  # noqa: E402
from tests.testtree import authority, nsd, zonedata  # noqa: E402

PORT = 53


@dataclass(frozen=True)
class Tree:
    """What every resolver's config needs to know about the test tree."""

    hint_name: str
    hint_address: str
    anchors: list[str]  # ". IN DS <tag> <alg> <digest type> <digest>"
    validation_time: str  # ISO 8601, for the resolvers that can pin it

    @classmethod
    def load(cls) -> "Tree":
        manifest = zonedata.manifest()
        (hint_name, hint_address), = manifest["root_hints"].items()
        return cls(hint_name, hint_address, authority.trust_anchor_lines(manifest),
                   authority.validation_time())

    def ds_rdata(self) -> list[str]:
        return [" ".join(line.split()[3:]) for line in self.anchors]

    def hints_file(self, path: Path) -> Path:
        path.write_text(f". 3600000 IN NS {self.hint_name}\n"
                        f"{self.hint_name} 3600000 IN A {self.hint_address}\n")
        return path


@dataclass(frozen=True)
class Peer:
    """One resolver: its column name, address, program and how to write its config."""

    name: str
    address: str
    program: str
    configure: Callable[["Peer", Tree, Path], list[str]]  # -> argv; writes into the dir


def _ours(log: str | None, tree_dir: str | None = None,
          ) -> Callable[[Peer, Tree, Path], list[str]]:
    """dnssec-sidecar's config: the forensic log ``"disk"`` (the run's directory), ``"gzip"``
    (there, ``log.compress: gzip``), ``"tmpfs"`` (a directory in /dev/shm, removed at exit;
    one rotated file kept) or None (off); run from ``tree_dir`` (another checkout, built in
    place) instead of this one if given."""
    def configure(peer: Peer, tree: Tree, directory: Path) -> list[str]:
        anchors = ", ".join(f'"{a}"' for a in tree.anchors)
        log_line = "log: {enabled: false}"
        if log == "disk":
            log_line = f"log: {{path: {directory}/log.jsonl}}"
        elif log == "gzip":
            log_line = f"log: {{path: {directory}/log.jsonl.gz, compress: gzip}}"
        elif log == "tmpfs":
            scratch = tempfile.mkdtemp(prefix="dnssec-sidecar-log-", dir="/dev/shm")
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
            log_line = f"log: {{path: {scratch}/log.jsonl, keep: 1}}"
        config = directory / "sidecar.yaml"
        config.write_text(
            f'listen: ["{peer.address}:{PORT}"]\n{log_line}\n'
            f'root_hints: [{{name: {tree.hint_name}, addresses: ["{tree.hint_address}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{tree.validation_time}"}}\n'
            f"{authority.outgoing_line()}\n"
            "metrics: {enabled: false}\n"
            f"workers: {int(os.environ.get('WORKERS', '1'))}\n")
        where = ["env", f"--chdir={tree_dir}"] if tree_dir else []
        return where + [sys.executable, "-m", "resolver.cli", "serve", "--config", str(config)]
    return configure


def unbound_config(tree: Tree, directory: Path, address: str, server: str,
                   remote_control: str) -> Path:
    """An Unbound configuration for the test tree on ``address``:53 in ``directory`` (its anchors,
    hints and pinned validation time), with the ``server:`` lines ``server`` and the
    ``remote-control:`` lines ``remote_control`` added; its path."""
    # local-zone nodefault: Unbound answers the RFC 6761 name test. itself (NXDOMAIN) otherwise.
    pinned = tree.validation_time.replace("-", "").replace(":", "").replace("T", "")[:14]
    anchors = "".join(f'  trust-anchor: ". DS {ds}"\n' for ds in tree.ds_rdata())
    config = directory / "unbound.conf"
    config.write_text(f"""server:
  interface: {address}
  port: {PORT}
  num-threads: 1
  do-not-query-localhost: no
  do-ip6: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  root-hints: "{tree.hints_file(directory / 'root.hints')}"
{anchors}  val-override-date: "{pinned}"
  local-zone: "test." nodefault
  access-control: 127.0.0.0/8 allow
  module-config: "validator iterator"
  so-rcvbuf: 4m
{server}remote-control:
{remote_control}""")
    return config


def _unbound(peer: Peer, tree: Tree, directory: Path) -> list[str]:
    config = unbound_config(tree, directory, peer.address,
                            "  qname-minimisation: yes\n  msg-cache-size: 64m\n"
                            "  rrset-cache-size: 128m\n",
                            "  control-enable: yes\n"
                            f'  control-interface: "{directory}/unbound.ctl"\n')
    return [peer.program, "-d", "-c", str(config)]


def _kresd(peer: Peer, tree: Tree, directory: Path) -> list[str]:
    anchors = "".join(f"trust_anchors.add('. IN DS {ds}')\n" for ds in tree.ds_rdata())
    config = directory / "kresd.conf"
    # Priming and the time-skew check query the root at start-up; unloaded so that a cold
    # query starts from nothing, as it does for the others. ALLOW_LOCAL: kresd ignores glue and
    # servers on loopback addresses otherwise, and the whole tree is on 127.0.0.x. PASS for
    # test.: kresd answers the RFC 6761 special-use names itself (NXDOMAIN) unless a rule
    # lets them through.
    config.write_text(f"""net.ipv6 = false
net.listen('{peer.address}', {PORT}, {{ kind = 'dns' }})
policy.add(policy.all(policy.FLAGS({{'ALLOW_LOCAL'}})))
policy.add(policy.suffix(policy.PASS, {{todname('test.')}}))
modules.unload('priming')
modules.unload('detect_time_skew')
modules.load('hints > iterate')
hints.root({{ ['{tree.hint_name}'] = '{tree.hint_address}' }})
trust_anchors.remove('.')
{anchors}cache.open(256 * MB, 'lmdb://{directory}/cache')
""")
    return [peer.program, "-n", "-q", "-c", str(config), str(directory)]


def _pdns(peer: Peer, tree: Tree, directory: Path) -> list[str]:
    anchors = "".join(f"addTA('.', '{ds}')\n" for ds in tree.ds_rdata())
    (directory / "recursor.lua").write_text("clearTA('.')\n" + anchors)
    (directory / "recursor.conf").write_text(f"""local-address={peer.address}
local-port={PORT}
threads=1
pdns-distributes-queries=no
hint-file={tree.hints_file(directory / 'root.hints')}
dnssec=validate
allow-from=127.0.0.0/8
dont-query=
qname-minimization=yes
socket-dir={directory}
lua-config-file={directory}/recursor.lua
security-poll-suffix=
daemon=no
write-pid=no
disable-syslog=yes
loglevel=3
""")
    return [peer.program, f"--config-dir={directory}"]


PEERS = [
    Peer("dnssec-sidecar, log on", "127.0.0.70", sys.executable, _ours("disk")),
    Peer("dnssec-sidecar, log tmpfs", "127.0.0.75", sys.executable, _ours("tmpfs")),
    Peer("dnssec-sidecar, log gzip", "127.0.0.76", sys.executable, _ours("gzip")),
    Peer("dnssec-sidecar, log off", "127.0.0.71", sys.executable, _ours(None)),
    Peer("unbound", "127.0.0.72", "unbound", _unbound),
    Peer("knot-resolver", "127.0.0.73", "kresd", _kresd),
    Peer("pdns-recursor", "127.0.0.74", "pdns_recursor", _pdns),
]
if os.environ.get("BEFORE"):  # a checkout of an earlier commit: before/after in the same run
    PEERS.append(Peer("dnssec-sidecar, log on, before", "127.0.0.77", sys.executable,
                      _ours("disk", os.environ["BEFORE"])))
BASELINE = "unbound"


def version(peer: Peer) -> str:
    """The peer's program and version, for the table headers."""
    if peer.program == sys.executable:
        return f"dnssec-sidecar (Python {sys.version.split()[0]})"
    if shutil.which(peer.program) is None:
        return f"{peer.program} not installed"
    flag = "-V" if peer.program == "unbound" else "--version"
    out = subprocess.run([peer.program, flag], capture_output=True, text=True, timeout=10)
    found = re.search(r"\d+\.\d+\.\d+", out.stdout + out.stderr)
    return f"{peer.program} {found[0] if found else '?'}"


def wait_tcp(address: str, seconds: float) -> bool:
    """True once something accepts TCP connections on ``address``:53 (bounded wait)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, PORT), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Running:
    """A started process with its output in a file, on ``cpus`` only if given (its every
    thread: sched_setaffinity before the exec); stop() ends it and waits."""

    def __init__(self, argv: list[str], output: Path, cpus: set[int] | None = None) -> None:
        self.output = output
        with output.open("wb") as sink:
            self.process = subprocess.Popen(
                argv, cwd=ROOT_DIR, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
                preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))

    def lines(self) -> int:
        """Lines of output so far (for the tree: upstream queries received)."""
        with self.output.open("rb") as output:
            return sum(1 for _ in output)

    def why(self) -> str:
        lines = self.output.read_text(errors="replace").strip().splitlines()
        status = self.process.poll()
        exited = "still running" if status is None else f"exit status {status}"
        return f"{exited}; last output: {' | '.join(lines[-3:]) or '(none)'}"

    def stop(self) -> None:
        processes.stop(self.process)


def start(peer: Peer, tree: Tree, directory: Path,
          cpus: set[int] | None = None) -> tuple[Running | None, str]:
    """Start ``peer`` with a fresh config (and empty cache) in ``directory``, on ``cpus`` if
    given; (None, why) when its program is missing or it does not accept connections within
    15 s."""
    if shutil.which(peer.program) is None:
        return None, f"{peer.program} not installed"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    running = Running(peer.configure(peer, tree, directory), directory / "output.log", cpus)
    if wait_tcp(peer.address, 15.0) and running.process.poll() is None:
        return running, ""
    why = running.why()
    running.stop()
    return None, why


_TREE = """import signal, sys
from tests.testtree.authority import start_tree
signal.signal(signal.SIGTERM, signal.default_int_handler)
tree = start_tree(on_query=lambda q: print(q.qname, q.qtype, flush=True),
                  delay_ms=float(sys.argv[1]))
try:
    signal.pause()
except KeyboardInterrupt:
    tree.stop()
"""


def start_tree(directory: Path, delay_ms: float = 0, cpus: set[int] | None = None) -> Running:
    """The test tree's authoritative servers, in their own process (not sharing our GIL),
    printing one line per query received; each answer sent ``delay_ms`` after its query came
    (authority.start_tree's ``delay_ms``: a round trip); on ``cpus`` if given."""
    tree = Running([sys.executable, "-c", _TREE, str(delay_ms)], directory / "tree.log", cpus)
    if not wait_tcp(Tree.load().hint_address, 30.0):
        why = tree.why()
        tree.stop()
        raise SystemExit(f"the test tree did not start: {why}")
    return tree


def start_nsd_tree(directory: Path, names: list[str],
                   cpus: set[int] | None = None) -> nsd.NsdTree:
    """The tree's zones on the way to ``names`` served by NSD (tests.testtree.nsd), on
    ``cpus`` if given; exits saying why when NSD is missing or does not start."""
    if not nsd.available():
        raise SystemExit("--upstream nsd needs NSD (apt-get install nsd)")
    try:
        return nsd.NsdTree(directory, nsd.zones_for(names), cpus)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def unbound_stats(directory: Path) -> dict[str, float]:
    """Unbound's counters (``unbound-control stats_noreset`` over the control socket that
    ``_unbound`` configures in ``directory``): cache counts and memory, e.g. ``msg.cache.count``,
    ``mem.cache.rrset``. Empty when unbound-control is missing or does not answer in 10 s."""
    try:
        out = subprocess.run(["unbound-control", "-c", str(directory / "unbound.conf"),
                              "stats_noreset"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    stats = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        try:
            stats[key] = float(value)
        except ValueError:
            continue
    return stats


def schedstat(pid: int) -> tuple[float, float]:
    """Seconds all of a process's threads spent on a CPU and waiting for one (runnable, on a
    run queue): the sums of the first two fields of /proc/<pid>/task/*/schedstat, in ns.
    Threads that ended before the read are not counted (neither resolver ends any while it
    serves)."""
    on_cpu = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        on_cpu, waiting = on_cpu + int(fields[0]), waiting + int(fields[1])
    return on_cpu / 1e9, waiting / 1e9


def cpu_seconds(pid: int) -> float:
    """CPU time of all of a process's threads at nanosecond resolution (``schedstat``): the
    utime and stime of /proc/<pid>/stat count 10 ms clock ticks, too coarse for one query."""
    return schedstat(pid)[0]


def median_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of per-round ratios ``ours[i] / theirs[i]`` (paired rounds: both sides of a
    ratio ran under the same load, which holds on a busy machine where medians of each side
    drift apart)."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root: every server listens on port 53 of 127.0.0.x")


def in_own_namespace(marker: str) -> None:
    """Run this script again, as root, in a new network namespace with only loopback up (the
    servers bind 127.0.0.x:53; never outside our own namespace); ``marker``, an environment
    variable, says it is already there."""
    require_root()
    if os.environ.get(marker) != "1":
        os.environ[marker] = "1"
        os.execvp("unshare", ["unshare", "-n", "sh", "-c",
                              'ip link set lo up && exec "$0" "$@"', sys.executable,
                              *sys.argv])
