"""The pod's DNS capture, proven with the very script the init container runs
(k8s/capture/dns-capture.sh), in a network namespace made here.

The namespace stands for a pod: loopback, and an ``eth0`` (a dummy interface, or where the kernel
has none a veth pair with both ends inside the namespace) carrying TEST-NET-3 and 2001:db8::
addresses and a default route into nowhere, so that packets to a non-local address are routed
but nothing outside the namespace is reachable. In it, after the script has run:

* "the resolver", a small DNS responder running as the resolver's UID 10053 on 127.0.0.1:53 and
  [::1]:53 (:func:`start_resolver`), answers A 192.0.2.53 and records every query it gets;
* a process of another UID (65534, as the workload) that sends a query straight to some other
  server's port 53 (198.51.100.1, 2001:db8:ffff::1, over UDP and TCP) is answered by the
  resolver, and the query is in the resolver's record;
* the resolver's own UID is not captured: its queries to an "upstream" responder (on a local
  address, 198.18.0.53) reach that upstream, not itself - which would loop.

Needs root, unshare, nsenter, ip and iptables (.ci/run installs iptables when missing); skips
with the reason otherwise. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURE_SCRIPT = ROOT / "k8s" / "capture" / "dns-capture.sh"
LINK_LOCAL_SCRIPT = ROOT / "k8s" / "overlays" / "node" / "link-local.sh"
CHAIN = "DNSSEC_SIDECAR_DNS"

RESOLVER_UID = 10053  # the image's user (Dockerfile), exempt from capture
WORKLOAD_UID = 65534  # any other user: the workload
RESOLVER_ANSWER = "192.0.2.53"
UPSTREAM_ANSWER = "192.0.2.99"
#: Where the workload sends its queries: a server that is not there (TEST-NET-2, documentation
#: IPv6), reachable only through the capture.
ELSEWHERE = {4: "198.51.100.1", 6: "2001:db8:ffff::1"}
#: A local "upstream" DNS server (RFC 2544 benchmarking range, on lo), for the exemption check.
UPSTREAM = "198.18.0.53"
QUERY_TIMEOUT = 3.0

_TOOLS = ("unshare", "nsenter", "ip", "iptables")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in _TOOLS),
    reason="needs root and " + ", ".join(_TOOLS) + " to make a network namespace and install "
           "the capture rules (.ci/run installs iptables)")


# --- the network namespace ----------------------------------------------------------------------

class Netns:
    """A network namespace held open by a ``sleep`` made with ``unshare --net``; commands enter
    it with ``nsenter``. Closing it kills the holder: the namespace and everything in it go."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        ours = os.readlink("/proc/self/ns/net")
        while True:
            if self.holder.poll() is not None:
                reason = self.holder.stderr.read().decode(errors="replace").strip()
                pytest.skip(f"unshare --net failed: {reason}")
            try:
                if os.readlink(f"/proc/{self.holder.pid}/ns/net") != ours:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                pytest.fail("unshare --net did not make a namespace within 10 s")
            time.sleep(0.02)

    def argv(self, *argv: str) -> list[str]:
        # nsenter by its full path: the command may run with a PATH of its own.
        return [shutil.which("nsenter"), f"--net=/proc/{self.holder.pid}/ns/net", "--", *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}\n"
                                 f"{done.stderr}")
        return done

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(timeout=10)


def make_pod_network(ns: Netns) -> str:
    """Loopback, and eth0 with addresses and default routes into nowhere; returns what eth0 is."""
    ns.run("ip", "link", "set", "lo", "up")
    if ns.run("ip", "link", "add", "eth0", "type", "dummy", check=False).returncode == 0:
        kind = "dummy"
    else:  # a kernel without the dummy driver: a veth pair, both ends in here
        ns.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
        ns.run("ip", "link", "set", "eth0-peer", "up")
        kind = "veth"
    ns.run("ip", "link", "set", "eth0", "up")
    ns.run("ip", "addr", "add", "203.0.113.2/24", "dev", "eth0")
    ns.run("ip", "route", "add", "default", "via", "203.0.113.1", "dev", "eth0")
    ns.run("ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
    ns.run("ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "eth0")
    ns.run("ip", "addr", "add", f"{UPSTREAM}/32", "dev", "lo")
    return kind


def capture(ns: Netns, **env: str) -> subprocess.CompletedProcess:
    """Run k8s/capture/dns-capture.sh in the namespace, as the init container does."""
    return ns.run("sh", str(CAPTURE_SCRIPT), check=False,
                  env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                       "RESOLVER_UID": str(RESOLVER_UID), **env})


# --- DNS processes in the namespace -----------------------------------------------------------

# The interpreter may live where other users cannot read (here under /root, mode 700), so each
# process below starts as root, imports and exercises what it needs, and only then drops to its
# UID: the sockets it makes afterwards are owned by that UID, which is what iptables' owner
# match sees.
_DROP = r"""
import os
def drop(uid):
    if uid:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
"""

_RESPONDER = _DROP + r"""
import json, socket, sys, threading
import dns.message, dns.rrset, dns.rdatatype, dns.rcode
addresses, answer, log_path, uid = json.loads(sys.argv[1])
lock = threading.Lock()
log = open(log_path, "a", buffering=1)

def respond(wire, transport, client, listener):
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    if question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", answer))
    with lock:
        log.write(json.dumps({"qname": question.name.to_text(), "transport": transport,
                              "client": client[0], "listener": listener,
                              "uid": os.getuid()}) + "\n")
    return response.to_wire()

def serve_udp(sock, listener):
    while True:
        wire, client = sock.recvfrom(65535)
        try:
            sock.sendto(respond(wire, "udp", client, listener), client)
        except Exception as exc:
            print("udp:", exc, file=sys.stderr, flush=True)

def read_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data

def serve_tcp_client(conn, client, listener):
    with conn:
        conn.settimeout(10)
        try:
            length = int.from_bytes(read_exactly(conn, 2), "big")
            wire = read_exactly(conn, length)
            reply = respond(wire, "tcp", client, listener)
            conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except Exception as exc:
            print("tcp:", exc, file=sys.stderr, flush=True)

def serve_tcp(sock, listener):
    while True:
        conn, client = sock.accept()
        threading.Thread(target=serve_tcp_client, args=(conn, client, listener),
                         daemon=True).start()

servers = []
for address in addresses:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.bind((address, 53))
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, 53))
    tcp.listen(16)
    servers += [(serve_udp, udp, address), (serve_tcp, tcp, address)]
# Exercise the code paths once (lazy imports) before the interpreter's files become unreadable.
warm = dns.message.make_query("warm.up.", "A")
dns.message.from_wire(dns.message.from_wire(warm.to_wire()).to_wire())
response = dns.message.make_response(warm)
response.answer.append(dns.rrset.from_text("warm.up.", 60, "IN", "A", answer))
dns.message.from_wire(response.to_wire())
drop(uid)
for target, sock, address in servers:
    threading.Thread(target=target, args=(sock, address), daemon=True).start()
print("ready", os.getuid(), flush=True)
threading.Event().wait()
"""

_CLIENT = _DROP + r"""
import json, sys
import dns.message, dns.query, dns.rrset, dns.exception
uid, server, qname, transport, timeout = json.loads(sys.argv[1])
warm = dns.message.make_response(dns.message.make_query("warm.up.", "A"))
warm.answer.append(dns.rrset.from_text("warm.up.", 60, "IN", "A", "192.0.2.1"))
dns.message.from_wire(warm.to_wire())
drop(uid)
query = dns.message.make_query(qname, "A")
result = {"uid": os.getuid()}
try:
    ask = dns.query.udp if transport == "udp" else dns.query.tcp
    response = ask(query, server, port=53, timeout=timeout)
    result["answers"] = sorted(rd.address for rrset in response.answer for rd in rrset)
    result["rcode"] = response.rcode()
except (dns.exception.Timeout, OSError) as exc:
    result["error"] = type(exc).__name__
print(json.dumps(result))
"""


@dataclass
class Responder:
    """A DNS responder process in the namespace and the file where it records each query."""

    process: subprocess.Popen
    log_path: Path

    def queries(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def names(self) -> set[str]:
        return {q["qname"] for q in self.queries()}

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
        return err


def start_responder(ns: Netns, addresses: list[str], answer: str, log_path: Path,
                    uid: int) -> Responder:
    """A DNS responder on port 53 (UDP and TCP) of ``addresses`` inside ``ns``, running as
    ``uid`` once its sockets are bound: it answers every A query with ``answer`` and appends
    each query (name, transport, client and listener address) to ``log_path`` as a JSON line."""
    process = subprocess.Popen(
        ns.argv(sys.executable, "-c", _RESPONDER, json.dumps([addresses, answer,
                                                                str(log_path), uid])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 20)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("ready"):
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"the responder on {addresses} did not start: {line!r}\n{err}")
    assert line.split() == ["ready", str(uid)]
    return Responder(process, log_path)


def start_resolver(ns: Netns, workdir: Path) -> Responder:
    """The pod's resolver: listening on 127.0.0.1:53 and [::1]:53, as RESOLVER_UID, answering
    A RESOLVER_ANSWER; its record of queries stands for the forensic log.

    To use the real resolver instead: start ``dnssec-sidecar serve --config FILE`` here in
    ``ns`` as RESOLVER_UID (with CAP_NET_BIND_SERVICE, e.g. ``setpriv --reuid 10053 --regid
    10053 --clear-groups --inh-caps +net_bind_service --ambient-caps +net_bind_service``, and
    an interpreter that user can read), FILE listening on 127.0.0.1:53 and [::1]:53, forwarding
    ``.`` to the UPSTREAM responder, allowing the tests' names, with ``log: {path: ...}`` in
    ``workdir``; and read that forensic log in ``queries()``."""
    return start_responder(ns, ["127.0.0.1", "::1"], RESOLVER_ANSWER,
                           workdir / "resolver-queries.jsonl", RESOLVER_UID)


def query(ns: Netns, uid: int, server: str, transport: str, qname: str | None = None,
          ) -> tuple[str, dict]:
    """Send an A query for a fresh name (or ``qname``) to ``server``:53 as ``uid``; the name
    and what came back (``answers`` and ``rcode``, or ``error``)."""
    qname = qname or f"q-{uuid.uuid4().hex[:12]}.example.com."
    done = ns.run(sys.executable, "-c", _CLIENT,
                  json.dumps([uid, server, qname, transport, QUERY_TIMEOUT]),
                  timeout=QUERY_TIMEOUT + 30)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["uid"] == uid
    return qname, result


@dataclass
class Pod:
    ns: Netns
    eth0: str
    capture_runs: list[subprocess.CompletedProcess]
    resolver: Responder
    upstream: Responder


@pytest.fixture(scope="module")
def pod(tmp_path_factory) -> Iterator[Pod]:
    workdir = tmp_path_factory.mktemp("capture")
    os.chmod(workdir, 0o755)
    ns = Netns()
    responders: list[Responder] = []
    try:
        eth0 = make_pod_network(ns)
        runs = [capture(ns), capture(ns)]  # the second run shows it is idempotent
        for run in runs:
            assert run.returncode == 0, run.stdout + run.stderr
        responders.append(start_resolver(ns, workdir))
        responders.append(start_responder(ns, [UPSTREAM], UPSTREAM_ANSWER,
                                          workdir / "upstream-queries.jsonl", 0))
        yield Pod(ns, eth0, runs, *responders)
    finally:
        for responder in responders:
            responder.stop()
        ns.close()


# --- the rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("tool", ["iptables", "ip6tables"])
def test_script_installs_the_capture_once(pod, tool):
    if tool == "ip6tables" and not shutil.which(tool):
        pytest.skip("no ip6tables")
    rules = pod.ns.run(tool, "-w", "-t", "nat", "-S").stdout.splitlines()
    assert rules.count(f"-A OUTPUT -j {CHAIN}") == 1, rules
    assert [r for r in rules if r.startswith(f"-A {CHAIN} ")] == [
        f"-A {CHAIN} -m owner --uid-owner {RESOLVER_UID} -j RETURN",
        f"-A {CHAIN} -p udp -m udp --dport 53 -j REDIRECT --to-ports 53",
        f"-A {CHAIN} -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 53",
    ]
    first, second = (run.stdout for run in pod.capture_runs)
    family = "IPv4" if tool == "iptables" else "IPv6"
    assert f"{family}: {tool} -w -t nat -I OUTPUT 1 -j {CHAIN}" in first
    assert f"{family}: OUTPUT already jumps to {CHAIN}" in second
    assert f"--uid-owner {RESOLVER_UID} -j RETURN" in first and "REDIRECT" in first


# --- the workload is captured -----------------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("family", [4, 6])
def test_workload_query_to_another_server_is_answered_by_the_resolver(pod, family, transport):
    server = ELSEWHERE[family]
    qname, result = query(pod.ns, WORKLOAD_UID, server, transport)
    assert result.get("answers") == [RESOLVER_ANSWER], result
    recorded = [q for q in pod.resolver.queries() if q["qname"] == qname]
    assert len(recorded) == 1, pod.resolver.queries()
    assert recorded[0]["transport"] == transport
    assert recorded[0]["listener"] == ("127.0.0.1" if family == 4 else "::1")
    assert recorded[0]["uid"] == RESOLVER_UID
    assert qname not in pod.upstream.names()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_workload_query_to_a_real_upstream_is_captured_too(pod, transport):
    qname, result = query(pod.ns, WORKLOAD_UID, UPSTREAM, transport)
    assert result.get("answers") == [RESOLVER_ANSWER], result
    assert qname in pod.resolver.names()
    assert qname not in pod.upstream.names()


def test_workload_query_to_the_resolver_itself_is_answered(pod):
    qname, result = query(pod.ns, WORKLOAD_UID, "127.0.0.1", "udp")
    assert result.get("answers") == [RESOLVER_ANSWER], result
    assert qname in pod.resolver.names()


# --- the resolver is not ----------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_resolver_uid_reaches_its_upstream(pod, transport):
    qname, result = query(pod.ns, RESOLVER_UID, UPSTREAM, transport)
    assert result.get("answers") == [UPSTREAM_ANSWER], result
    assert qname in pod.upstream.names()
    assert qname not in pod.resolver.names(), "the resolver's own query would loop"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_resolver_uid_query_elsewhere_is_not_redirected(pod, transport):
    qname, result = query(pod.ns, RESOLVER_UID, ELSEWHERE[4], transport)
    assert "answers" not in result, result  # routed into nowhere: no answer at all
    assert qname not in pod.resolver.names()
    assert qname not in pod.upstream.names()


# --- the script's own checks ------------------------------------------------------------------

def test_script_refuses_bad_settings(pod):
    for env in ({"RESOLVER_UID": "root"}, {"DNS_PORT": "70000"}, {"CAPTURE_IPV6": "maybe"},
                {"CAPTURE_CHAIN": "a;b"}):
        done = capture(pod.ns, **env)
        assert done.returncode != 0, env
        assert "dns-capture: error:" in done.stderr, done.stderr
        assert " -j " not in done.stdout, "nothing installed"


def test_script_fails_closed_without_ip6tables_when_ipv6_is_in_use(pod, tmp_path):
    # A PATH with the script's tools but no ip6tables.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables", "awk", "grep", "sed", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = pod.ns.run("sh", str(CAPTURE_SCRIPT), check=False,
                      env={"PATH": str(bin_dir), "RESOLVER_UID": str(RESOLVER_UID)})
    assert done.returncode != 0
    assert "IPv6 DNS would bypass the resolver" in done.stderr, done.stderr
    done = pod.ns.run("sh", str(CAPTURE_SCRIPT), check=False,
                      env={"PATH": str(bin_dir), "RESOLVER_UID": str(RESOLVER_UID),
                           "CAPTURE_IPV6": "off"})
    assert done.returncode == 0, done.stderr
    assert "IPv6: skipped (CAPTURE_IPV6=off)" in done.stdout
    # Still captured afterwards (the IPv4 chain was rebuilt in place).
    qname, result = query(pod.ns, WORKLOAD_UID, ELSEWHERE[4], "udp")
    assert result.get("answers") == [RESOLVER_ANSWER], result
    assert qname in pod.resolver.names()


# --- node mode: the link-local address ---------------------------------------------------------

def test_node_link_local_script_adds_the_address_and_conntrack_exemptions(tmp_path):
    ns = Netns()
    try:
        ns.run("ip", "link", "set", "lo", "up")
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LOCAL_ADDRESS": "169.254.20.10", "INTERFACE": "dnssec0"}
        if ns.run("ip", "link", "add", "probe0", "type", "dummy", check=False).returncode:
            # No dummy driver in this kernel: give the script an interface of that name to use.
            ns.run("ip", "link", "add", "dnssec0", "type", "bridge")
        else:
            ns.run("ip", "link", "del", "probe0")
        runs = [ns.run("sh", str(LINK_LOCAL_SCRIPT), env=env) for _ in range(2)]
        address = ns.run("ip", "-o", "addr", "show", "dev", "dnssec0").stdout
        assert "inet 169.254.20.10/32" in address
        for table, expected in (("raw", ["PREROUTING -d 169.254.20.10/32", "OUTPUT -s 169"]),
                                ("filter", ["INPUT -d 169.254.20.10/32", "OUTPUT -s 169"])):
            rules = ns.run("iptables", "-w", "-t", table, "-S").stdout.splitlines()
            added = [r for r in rules if "169.254.20.10" in r]
            assert len(added) == 4, rules  # UDP and TCP, each way, once despite two runs
            for prefix in expected:
                assert sum(r.startswith("-A " + prefix) for r in added) == 2, rules
        assert "already there" in runs[1].stdout
        # The resolver can bind the address and a query reaches it.
        responder = start_responder(ns, ["169.254.20.10"], RESOLVER_ANSWER,
                                    tmp_path / "node.jsonl", RESOLVER_UID)
        try:
            qname, result = query(ns, WORKLOAD_UID, "169.254.20.10", "udp")
            assert result.get("answers") == [RESOLVER_ANSWER], result
            assert qname in responder.names()
        finally:
            responder.stop()
    finally:
        ns.close()



# --- the real resolver behind the capture -------------------------------------------------------

REAL_CONFIG = """\
listen: ["127.0.0.1:53"]
forward: [{{zone: ., addresses: ["{upstream}"]}}]
trust_anchors: [". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"]
negative_trust_anchors: [allowed.test.]
services:
  - name: workload
    listeners: ["127.0.0.1:53"]
    allow: [{{zone: allowed.test., require: insecure-ok}}]
log: {{path: {log}, fsync_interval_ms: 0}}
metrics: {{enabled: false}}
timeouts: {{upstream_ms: 500, query_ms: 2000}}
"""


def test_captured_query_is_answered_by_the_real_resolver_and_logged(tmp_path):
    """The whole chain of issue #6: a workload query sent straight to another server's port 53
    is redirected to dnssec-sidecar, which answers it under the service's policy and writes its
    forensic record. The resolver runs as root here (the interpreter lives where UID 10053 cannot
    read), so the capture exempts UID 0 instead of 10053; the upstream is an unsigned responder in
    the namespace, its zone under a negative trust anchor."""
    os.chmod(tmp_path, 0o755)
    ns = Netns()
    processes = []
    try:
        make_pod_network(ns)
        assert capture(ns, RESOLVER_UID="0").returncode == 0
        upstream = start_responder(ns, [UPSTREAM], UPSTREAM_ANSWER,
                                   tmp_path / "upstream.jsonl", 0)
        processes.append(upstream)
        log_path = tmp_path / "lookups.jsonl"
        config = tmp_path / "config.yaml"
        config.write_text(REAL_CONFIG.format(upstream=UPSTREAM, log=log_path))
        resolver = subprocess.Popen(ns.argv(sys.executable, "-m", "resolver.cli", "serve",
                                            "--config", str(config)),
                                    cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while ns.run("sh", "-c", "ss -ltn | grep -q '127.0.0.1:53 '", check=False).returncode:
            assert resolver.poll() is None, resolver.stderr.read()
            assert time.monotonic() < deadline, "the resolver did not start"
            time.sleep(0.1)
        allowed, got = query(ns, WORKLOAD_UID, "198.51.100.1", "udp", "www.allowed.test.")
        assert got.get("rcode") == 0 and got.get("answers") == [UPSTREAM_ANSWER], got
        denied, refused = query(ns, WORKLOAD_UID, "198.51.100.1", "tcp", "exfil.denied.test.")
        assert refused.get("rcode") == 5, refused  # REFUSED
        assert not [name for name in upstream.names() if "denied" in name]
        resolver.terminate()
        resolver.wait(timeout=15)
        records = {r["qname"]: r for r in map(json.loads, log_path.read_text().splitlines())}
        assert records[allowed]["policy"]["decision"] == "allow"
        assert records[allowed]["service"] == "workload"
        assert records[denied]["policy"]["decision"] == "refuse"
        assert records[denied]["transport"] == "tcp" and records[denied]["upstream"] == []
    finally:
        for process in processes:
            process.stop()
        ns.close()
