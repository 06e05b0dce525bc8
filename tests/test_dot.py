"""DNS over TLS to forwarders (issue #19, Encrypted forwarding): RFC 7858, RFC 8310's strict
privacy profile, RFC 7766 connection reuse and pipelining, RFC 7830/8467 padding.

Two servers: Unbound from Debian (``apt-get install unbound``) serving DNS over TLS on
127.0.0.185:853 with a certificate made here by a throwaway CA (the ``cryptography``
package), recursing into the signed test tree (iterator only: the answers it relays are
validated by us, bogus ones included), and answering clear-text DNS on 127.0.0.185:53 too, so
that its statistics would show a query sent in clear; and a scripted TLS server in process
that holds its replies and answers them in reverse order, closes connections, and counts
them. Run in a network namespace of your own (README, PREAMBLE).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import shutil
import signal
import socket
import ssl
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from resolver.config import ForwardTls
from resolver.ede import EDE
from resolver.resolve import tls, transport
from resolver.resolve.tls import PADDING_BLOCK, TlsUpstream, padded, spki_sha256
from tests.test_client_faults import Sidecar, sidecar_config, udp
from tests.test_dnstap import decode, parse_stream
from tests.test_operations import wait_for
from tests.testtree import authority

SIDECAR = "127.0.0.180"
DOT = "127.0.0.185"       # Unbound: TLS on 853, clear text on 53
SCRIPTED = "127.0.0.186"  # the scripted TLS server
NAME = "dot.test"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
P = "dnssec_sidecar_"


# --- a throwaway PKI ------------------------------------------------------------------------

@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    pin: str  # base64 SHA-256 of the server key's SubjectPublicKeyInfo (RFC 7469 §2.4)


def make_pki(directory: Path, name: str = NAME, address: str = DOT) -> Pki:
    """A CA and a server certificate it signs for ``name`` and ``address``, valid for a day."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dnssec-sidecar test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(address))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key",
              base64.b64encode(spki_sha256(cert.public_bytes(serialization.Encoding.DER)))
              .decode())
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki


def test_the_pin_is_the_digest_openssl_documents(tmp_path):
    """RFC 7469 §2.4 / RFC 7858 §4.2: base64(SHA-256(SubjectPublicKeyInfo)), computed
    independently here from the key's DER."""
    pki = make_pki(tmp_path)
    cert = x509.load_pem_x509_certificate(pki.cert_file.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    assert base64.b64encode(digest.finalize()).decode() == pki.pin


# --- padding (RFC 7830, RFC 8467) -----------------------------------------------------------

@pytest.mark.parametrize("name", ["a.", "www.example.", "x" * 60 + ".y" * 90 + "."])
def test_queries_are_padded_to_blocks_of_468(name):
    query = transport.make_query(dns.name.from_text(name), dns.rdatatype.A, recursion=True)
    wire = padded(query.to_wire())
    assert len(wire) % PADDING_BLOCK == 0
    parsed = dns.message.from_wire(wire)
    assert parsed.question == query.message().question and parsed.flags == query.flags
    assert parsed.ednsflags & dns.flags.DO
    option, = parsed.options
    assert option.otype == dns.edns.PADDING and set(option.data) <= {0}


def test_a_message_without_an_empty_opt_at_the_end_is_left_alone():
    plain = dns.message.make_query("www.example.", "A").to_wire()  # no EDNS
    assert padded(plain) == plain
    with_option = dns.message.make_query("www.example.", "A", use_edns=0,
                                         options=[dns.edns.ECSOption("192.0.2.0", 24)])
    assert padded(with_option.to_wire()) == with_option.to_wire()


# --- the scripted TLS server ----------------------------------------------------------------

class Scripted:
    """A TLS server on SCRIPTED:853: reads framed queries, answers each with an A record
    192.0.2.<n>; ``hold`` of them are kept until that many have arrived, then answered in
    reverse order (pipelining, out-of-order replies); ``close_after``: the connection is
    closed instead of answering that query (0-based, per connection)."""

    def __init__(self, pki: Pki, *, hold: int = 1, close_after: int | None = None) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.cert_file, pki.key_file)
        self.hold, self.close_after = hold, close_after
        self.connections = 0
        self.closed = 0  # connections the client closed
        self.sizes: list[int] = []
        self.most_unanswered = 0
        self.release = asyncio.Event()
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, SCRIPTED, 853, ssl=self.context)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        held: list[dns.message.Message] = []
        seen = 0
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                self.sizes.append(length)
                if seen == self.close_after:
                    writer.close()
                    return
                seen += 1
                held.append(dns.message.from_wire(data))
                self.most_unanswered = max(self.most_unanswered, len(held))
                self.changed.set()
                if len(held) < self.hold:
                    continue
                if self.hold > 1:
                    await self.release.wait()
                for query in reversed(held):
                    reply = dns.message.make_response(query)
                    reply.answer.append(dns.rrset.from_text(
                        query.question[0].name, 60, "IN", "A", f"192.0.2.{query.id % 250}"))
                    wire = reply.to_wire()
                    writer.write(struct.pack("!H", len(wire)) + wire)
                held.clear()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed += 1
            self.changed.set()
        finally:
            writer.close()


def _upstream(pki: Pki, **kwargs) -> TlsUpstream:
    return TlsUpstream(SCRIPTED, 853, ForwardTls(NAME, (), str(pki.ca_file), "forward[0].tls"),
                       **kwargs)


def _query(n: int) -> dns.message.Message:
    return transport.make_query(dns.name.from_text(f"q{n}.example."), dns.rdatatype.A,
                                recursion=True)


async def _until(event: asyncio.Event, predicate) -> None:
    """Wait for the scripted server to change until ``predicate`` holds (bounded)."""
    async with asyncio.timeout(10):
        while not predicate():
            event.clear()
            await event.wait()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_pipelined_queries_answered_out_of_order_on_one_connection(pki):
    async def run():
        async with Scripted(pki, hold=8) as server:
            upstream = _upstream(pki)
            before = tls.CONNECTIONS["ok"]
            queries = [_query(n) for n in range(8)]
            asking = asyncio.gather(*(upstream.exchange(q, timeout=10) for q in queries))
            await _until(server.changed, lambda: server.most_unanswered == 8)  # all in flight
            server.release.set()
            replies = await asking
        return server, queries, replies, tls.CONNECTIONS["ok"] - before

    server, queries, replies, opened = asyncio.run(run())
    for query, reply in zip(queries, replies):  # each matched to its own question and ID
        assert reply.message.id == query.id
        assert reply.message.question == query.message().question
        assert reply.message.answer[0][0].address == f"192.0.2.{query.id % 250}"
        assert reply.tcp
    assert server.connections == 1 and opened == 1  # one handshake for all
    assert all(size % PADDING_BLOCK == 0 for size in server.sizes)  # RFC 8467 padding


def test_outstanding_queries_on_a_connection_are_bounded(pki):
    async def run():
        async with Scripted(pki, hold=2) as server:
            upstream = _upstream(pki, outstanding=2)
            asking = asyncio.gather(*(upstream.exchange(_query(n), timeout=10)
                                      for n in range(6)))
            await _until(server.changed, lambda: server.most_unanswered == 2)
            for _ in range(20):  # let the other four go, if anything would let them
                await asyncio.sleep(0)
            waiting = len(upstream.connection.pending)
            server.release.set()
            replies = await asking
        return server, waiting, replies

    server, waiting, replies = asyncio.run(run())
    assert waiting == 2 and server.most_unanswered == 2
    assert len(replies) == 6 and server.connections == 1


@pytest.mark.parametrize("idle", [True, False], ids=["closed when idle", "closed by the server"])
def test_a_closed_connection_is_opened_again(pki, idle):
    """Idle, the connection is closed (RFC 7766 §6.2.3) and the next query opens another. The
    server closing it on our second query (as an idle timeout of its own would, racing our
    write): that query is sent once more on a new connection."""
    async def run():
        async with Scripted(pki, close_after=None if idle else 1) as server:
            upstream = _upstream(pki, idle=0.2 if idle else 10)
            first = await upstream.exchange(_query(1), timeout=10)
            if idle:
                await _until(server.changed, lambda: server.closed == 1)  # we closed it
            second = await upstream.exchange(_query(2), timeout=10)
        return server, first, second

    server, first, second = asyncio.run(run())
    assert first.message.answer and second.message.answer
    assert server.connections == 2


def test_a_fresh_connection_closed_unanswered_is_a_failed_upstream(pki):
    async def run():
        async with Scripted(pki, close_after=0) as server:
            with pytest.raises(transport.UpstreamError) as caught:
                await _upstream(pki).exchange(_query(1), timeout=10)
        return server, caught.value

    server, error = asyncio.run(run())
    assert error.kind == "network" and server.connections == 1  # not retried


@pytest.mark.parametrize("tls_config, result, text", [
    (lambda pki: ForwardTls("other.test", (), str(pki.ca_file)), "certificate",
     "certificate refused: Hostname mismatch"),
    (lambda pki: ForwardTls(NAME, (), None), "certificate",
     "certificate refused: unable to get local issuer certificate"),  # not the system's CAs
    (lambda pki: ForwardTls(None, (b"\0" * 32,)), "pin", "is not in spki_pins"),
    (lambda pki: ForwardTls(NAME, (b"\0" * 32,), str(pki.ca_file)), "pin", "is not in spki_pins"),
], ids=["wrong name", "CA not trusted", "wrong pin alone", "right name, wrong pin"])
def test_an_unauthenticated_server_gets_no_query(pki, tls_config, result, text):
    async def run():
        async with Scripted(pki) as server:
            before = tls.CONNECTIONS[result]
            upstream = TlsUpstream(SCRIPTED, 853, tls_config(pki))
            with pytest.raises(transport.UpstreamError) as caught:
                await upstream.exchange(_query(1), timeout=10)
        return server, caught.value, tls.CONNECTIONS[result] - before

    server, error, counted = asyncio.run(run())
    assert error.kind == "tls" and text in str(error)
    assert counted == 1
    assert server.sizes == []  # not a byte of a query


def test_pins_alone_authenticate(pki):
    async def run():
        async with Scripted(pki):
            upstream = TlsUpstream(SCRIPTED, 853, ForwardTls(None, (base64.b64decode(pki.pin),)))
            return await upstream.exchange(_query(1), timeout=10)

    assert asyncio.run(run()).message.answer


def test_an_unreadable_ca_file_is_a_failed_upstream(tmp_path):
    upstream = TlsUpstream(SCRIPTED, 853, ForwardTls(NAME, (), str(tmp_path / "none.pem"),
                                                     "forward[0].tls"))
    with pytest.raises(transport.UpstreamError, match=r"forward\[0\]\.tls\.ca_file: .*none\.pem"):
        asyncio.run(upstream.exchange(_query(1), timeout=2))


# --- against Unbound, through the real server -----------------------------------------------

class Unbound:
    """Unbound serving DNS over TLS on DOT:853 and clear text on DOT:53, recursing into the
    test tree without validating (module-config: iterator), statistics by unbound-control."""

    def __init__(self, directory: Path, pki: Pki) -> None:
        manifest = authority.zonedata.manifest()
        (hint_name, hint_addr), = manifest["root_hints"].items()
        (directory / "root.hints").write_text(
            f". 3600000 NS {hint_name}\n{hint_name} 3600000 A {hint_addr}\n")
        self.config = directory / "unbound.conf"
        self.config.write_text("\n".join([
            "server:", f"  interface: {DOT}@853", f"  interface: {DOT}@53", "  tls-port: 853",
            f'  tls-service-key: "{pki.key_file}"', f'  tls-service-pem: "{pki.cert_file}"',
            "  do-ip6: no", "  do-not-query-localhost: no", "  access-control: 127.0.0.0/8 allow",
            '  username: ""', '  chroot: ""', f'  directory: "{directory}"',
            f'  pidfile: "{directory / "unbound.pid"}"', "  use-syslog: no",
            f'  logfile: "{directory / "unbound.log"}"', "  verbosity: 1",
            f'  root-hints: "{directory / "root.hints"}"', '  module-config: "iterator"',
            "  num-threads: 1", "  so-reuseport: no", "  extended-statistics: yes",
            '  local-zone: "test." nodefault',
            "remote-control:", "  control-enable: yes",
            f'  control-interface: "{directory / "control.sock"}"', ""]))
        self.process = subprocess.Popen([UNBOUND, "-d", "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_for(self._listening, 30):
            self.stop()
            pytest.fail(f"unbound did not start: {self.process.stderr.read().decode()}")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            return True
        try:
            socket.create_connection((DOT, 853), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stats(self) -> dict[str, float]:
        out = subprocess.run([UNBOUND_CONTROL, "-c", str(self.config), "stats_noreset"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        return {key: float(value) for key, value in
                (line.split("=", 1) for line in out.splitlines() if "=" in line)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


@pytest.fixture(scope="module")
def unbound(tmp_path_factory, pki, tree):
    if not Path(UNBOUND).exists():
        pytest.skip("unbound is not installed (apt-get install unbound)")
    server = Unbound(tmp_path_factory.mktemp("unbound"), pki)
    yield server
    server.stop()


def _sidecar(directory: Path, tls_config: dict, **sections) -> Sidecar:
    config = sidecar_config(SIDECAR, directory / "log.jsonl",
                            forward=[{"zone": ".", "addresses": [DOT], "tls": tls_config}],
                            timeouts={"upstream_ms": 1500, "query_ms": 6000}, **sections)
    return Sidecar(directory, config)


def _ede(reply: dns.message.Message) -> tuple[int, str]:
    return next((int(o.code), o.text) for o in reply.options if o.otype == dns.edns.EDE)


def _established_to_dot() -> int:
    """TCP connections open to DOT:853 from a client's side (/proc/net/tcp of the namespace)."""
    remote = socket.inet_aton(DOT)[::-1].hex().upper() + ":0355"
    return sum(1 for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
               if line.split()[2] == remote and line.split()[3] == "01")  # ESTABLISHED


def test_forwarded_over_tls_answers_are_validated_here(unbound, pki, tmp_path):
    """The name checked against the CA: Secure answers with AD, a denial proven, and the bogus
    data Unbound relays (it does not validate here) refused; every query reached Unbound over
    TLS, none in clear text; dnstap says so (SocketProtocol DOT)."""
    before = unbound.stats()
    tap = tmp_path / "tap.fstrm"
    sidecar = _sidecar(tmp_path, {"name": NAME, "ca_file": str(pki.ca_file),
                                  "spki_pins": [pki.pin]},
                       dnstap={"path": f"file:{tap}", "client": False, "resolver": True})
    try:
        secure = udp("www.rsasha256.example.", SIDECAR)
        assert secure.rcode() == dns.rcode.NOERROR and secure.flags & dns.flags.AD
        denied = udp("nope.ed448.test.", SIDECAR)
        assert denied.rcode() == dns.rcode.NXDOMAIN and denied.flags & dns.flags.AD
        bogus = udp("www.badsig.test.", SIDECAR)
        assert bogus.rcode() == dns.rcode.SERVFAIL
        assert _ede(bogus)[0] == EDE.DNSSEC_BOGUS
        assert sidecar.metric(P + "upstream_tls_connections_total", result="ok") == 1
    finally:
        assert sidecar.stop() == 0
    after = unbound.stats()
    asked = after["total.num.queries"] - before["total.num.queries"]
    assert asked > 0 and after["num.query.tls"] - before["num.query.tls"] == asked
    pb = pytest.importorskip("dnstap_pb", reason="dnstap-pb (pip install -e '.[test]')")
    messages = [decode(pb, payload).message for kind, payload in parse_stream(tap.read_bytes())
                if kind == "DATA"]
    kinds = {(m.type, m.socket_protocol) for m in messages}
    assert kinds == {(pb.Message.FORWARDER_QUERY, pb.DOT), (pb.Message.FORWARDER_RESPONSE, pb.DOT)}


def test_one_connection_carries_many_queries_and_concurrent_ones(unbound, pki, tmp_path):
    """RFC 7766 §6.2.1: 40 queries one after another, then 40 at once, over one TLS connection
    and one handshake (our metric, and the kernel's table of connections)."""
    sidecar = _sidecar(tmp_path, {"name": NAME, "ca_file": str(pki.ca_file)})
    try:
        for n in range(40):
            reply = udp(f"n{n}.rsasha256.example.", SIDECAR)
            assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AD
        assert _established_to_dot() == 1

        async def together():
            queries = [dns.message.make_query(f"m{n}.ecdsap256.example.", "A",
                                              want_dnssec=True) for n in range(40)]
            return await asyncio.gather(*(dns.asyncquery.udp(q, SIDECAR, timeout=10)
                                          for q in queries))

        for reply in asyncio.run(together()):
            assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AD
        assert _established_to_dot() == 1
        assert sidecar.metric(P + "upstream_tls_connections_total", result="ok") == 1
    finally:
        assert sidecar.stop() == 0


@pytest.mark.parametrize("case", ["wrong pin", "wrong name", "pin only, wrong"])
def test_an_unauthenticated_forwarder_is_never_asked(unbound, pki, tmp_path, case):
    """RFC 8310 strict privacy: SERVFAIL with EDE 22 naming the failure, counted and logged,
    and not one query reached Unbound, over TLS or in clear text on its port 53."""
    tls_config, result, text = {
        "wrong pin": ({"name": NAME, "ca_file": str(pki.ca_file),
                       "spki_pins": [base64.b64encode(b"\1" * 32).decode()]},
                      "pin", "is not in spki_pins"),
        "wrong name": ({"name": "other.test", "ca_file": str(pki.ca_file)}, "certificate",
                       "certificate refused: Hostname mismatch"),
        "pin only, wrong": ({"spki_pins": [base64.b64encode(b"\2" * 32).decode()]}, "pin",
                            "is not in spki_pins"),
    }[case]
    before = unbound.stats()
    sidecar = _sidecar(tmp_path, tls_config)
    try:
        reply = udp("www.rsasha256.example.", SIDECAR)
        assert reply.rcode() == dns.rcode.SERVFAIL
        code, ede_text = _ede(reply)
        assert code == EDE.NO_REACHABLE_AUTHORITY
        assert f"{DOT}:853 over TLS" in ede_text and text in ede_text
        assert sidecar.metric(P + "upstream_tls_connections_total", result=result) >= 1
        assert sidecar.metric(P + "upstream_tls_connections_total", result="ok") == 0
    finally:
        assert sidecar.stop() == 0
    after = unbound.stats()
    assert after["total.num.queries"] == before["total.num.queries"]
    assert f"forward[0].tls: {DOT}:853: " in sidecar.stderr() and text in sidecar.stderr()
    assert "no clear text, no unauthenticated TLS" in sidecar.stderr()


def test_a_reload_with_an_unreadable_ca_file_is_rejected(unbound, pki, tmp_path):
    """A reload reads ``ca_file`` before it applies the file: a bad one keeps the running
    configuration, which goes on answering over TLS."""
    sidecar = _sidecar(tmp_path, {"name": NAME, "ca_file": str(pki.ca_file)})
    try:
        config = tmp_path / "config.yaml"
        config.write_text(config.read_text().replace(str(pki.ca_file),
                                                     str(tmp_path / "gone.pem")))
        sidecar.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "rejected" in sidecar.stderr(), 20)
        assert f"forward[0].tls.ca_file: {tmp_path / 'gone.pem'}: cannot read" in sidecar.stderr()
        reply = udp("www.ecdsap256.example.", SIDECAR)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AD
    finally:
        assert sidecar.stop() == 0
