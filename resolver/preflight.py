"""What ``serve`` needs from the host beyond a valid file, checked before anything starts (and
by ``check-config``): the files it reads can be read (``forward[].tls.ca_file`` loaded as TLS
loads it), the files it writes can be created, appended to and rotated (``cache.persist``
too), the addresses it listens on can be bound, the nftables sets ``services[].pin`` names
exist as pinning needs them (resolver.frontend.pinning).

The first fault raises :class:`resolver.status.Failure` naming the key, the file or address,
and the reason. What cannot be told from here is a note: a privileged port when the check
runs without the privilege, a dnstap collector that is not listening yet (serve retries), the
nftables sets when the check lacks CAP_NET_ADMIN to list them."""

from __future__ import annotations

import errno
import os
import socket
import ssl

from resolver import status
from resolver.config import API_UNIX, DNSTAP_FILE, Config, ConfigError, Endpoint, for_worker
from resolver.forensic.files import continuation
from resolver.frontend import handover
from resolver.forensic.seal import ForensicLogError, UnreadableKey, load_hmac_key
from resolver.frontend.pinning import check_set
from resolver.nft import Nft, NftError
from resolver.ops.api import load_tokens, unix_socket_in_use
from resolver.resolve.tls import client_context
from resolver.status import Failure

#: Why binding a port can be refused (ip(7)): ports below net.ipv4.ip_unprivileged_port_start
#: (1024 unless changed) need the privilege.
PRIVILEGE = "root or CAP_NET_BIND_SERVICE"


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise Failure(key, f"{path}: cannot read: {exc.strerror or exc}",
                      status.UNREADABLE) from None


def _writable(key: str, path: str, *, creates: bool) -> None:
    """``path`` can be written, and its directory too when ``creates`` (the file is made or
    renamed there: created, rotated)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        why = "does not exist" if not os.path.lexists(directory) else "is not a directory"
        raise Failure(key, f"{path}: directory {directory} {why}", status.UNWRITABLE)
    if os.path.isdir(path):
        raise Failure(key, f"{path}: is a directory", status.UNWRITABLE)
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise Failure(key, f"{path}: cannot write: permission denied", status.UNWRITABLE)
    if (creates or not os.path.lexists(path)) and not os.access(directory, os.W_OK | os.X_OK):
        raise Failure(key, f"{path}: cannot create files in {directory}: permission denied",
                      status.UNWRITABLE)


def _log(config: Config) -> None:
    """The HMAC key and every worker's log file, and that each continues its chain."""
    log = config.log
    key = None
    if log.enabled and log.hmac_key_file:
        try:
            key = load_hmac_key(log.hmac_key_file)
        except ForensicLogError as exc:
            kind = status.UNREADABLE if isinstance(exc, UnreadableKey) else status.INVALID
            raise Failure("log.hmac_key_file", str(exc), kind) from None
    if not log.enabled or log.path == "-":
        return
    for index in range(config.workers):
        view = for_worker(config, index).log
        rotates = bool(view.max_bytes or view.max_age_s)
        _writable("log.path", view.path, creates=rotates)
        for path in (view.path, view.path + ".1"):
            if os.path.exists(path):
                _readable("log.path", path)  # its last record is read to continue the chain
        try:
            continuation(view, key)
        except ForensicLogError as exc:
            raise Failure("log.path", str(exc), status.LOG_CHAIN) from None


def _successor(config: Config) -> None:
    """A process taking over from a running predecessor on the same addresses (README
    "Restarts that drop nothing") writes its own forensic log: two writers of one file would
    interleave two hash chains."""
    keys = [handover.key((ep.host, ep.port), ep.family) for ep in config.listen if ep.port]
    log = config.log
    if not log.enabled or log.path == "-" or not handover.others(keys, False):
        return
    for index in range(config.workers):
        path = for_worker(config, index).log.path
        writers = handover.holders(path)
        if writers:
            raise Failure("log.path", f"{path}: written by the running process {writers[0]}, "
                          "which serves these addresses: a successor needs its own log.path",
                          status.UNWRITABLE)


def _dnstap(config: Config, notes: list[str]) -> None:
    """A file is created (an existing one rotated to ``.1``); a socket is the collector's,
    which may come up after the resolver."""
    tap = config.dnstap
    if tap is None:
        return
    if tap.mode == DNSTAP_FILE:
        for index in range(config.workers):
            _writable("dnstap.path", for_worker(config, index).dnstap.path, creates=True)
        return
    if not os.path.lexists(tap.path):
        notes.append(f"dnstap.path: no socket at {tap.path} yet: serve connects when the "
                     "collector listens, and drops messages until then")
    elif os.path.isdir(tap.path):
        raise Failure("dnstap.path", f"{tap.path}: is a directory", status.UNWRITABLE)
    elif not os.access(tap.path, os.W_OK):
        raise Failure("dnstap.path", f"{tap.path}: cannot connect: permission denied",
                      status.UNWRITABLE)


def forward_tls(config: Config) -> None:
    """Every ``forward[].tls.ca_file`` holds authorities TLS can load, as serve loads them
    (resolver.resolve.tls); also checked before a reload is applied."""
    for forward in config.forward:
        if forward.tls is None or forward.tls.ca_file is None:
            continue
        key, path = f"{forward.tls.where}.ca_file", forward.tls.ca_file
        try:
            client_context(forward.tls)
        except ssl.SSLError as exc:  # before OSError, its base
            raise Failure(key, f"{path}: no CA certificate in PEM form ({exc.reason or exc})",
                          status.INVALID) from None
        except OSError as exc:
            raise Failure(key, f"{path}: cannot read: {exc.strerror or exc}",
                          status.UNREADABLE) from None


def pin_sets(config: Config, *, serving: bool = True, notes: list[str] | None = None) -> None:
    """libnftables loads and every set ``services[].pin`` names exists, holds addresses of its
    IP version and has timeouts; also checked before a reload is applied. Without the
    privilege to list the ruleset, a check that does not serve notes it instead."""
    pinned = [(f"services[{i}]", s) for i, s in enumerate(config.services)]
    pinned = [(path, s) for path, s in pinned + [("default_service", config.default_service)]
              if s.pin is not None]
    if not pinned:
        return
    try:
        nft = Nft()
    except NftError as exc:
        raise Failure(f"{pinned[0][0]}.pin", str(exc), status.NFTABLES) from None
    try:
        for path, service in pinned:
            for version, _ in service.pin.sets():
                problem = check_set(nft, service.pin, version)
                if problem is None:
                    continue
                if not serving and notes is not None and "not permitted" in problem:
                    notes.append(f"{path}.pin.nft: cannot tell whether its sets exist: listing "
                                 "them needs CAP_NET_ADMIN, which this check lacks")
                    return
                raise Failure(f"{path}.pin.nft.set{version}", problem, status.NFTABLES)
    finally:
        nft.close()


def _bind_reason(key: str, exc: OSError, endpoint: Endpoint) -> str:
    if exc.errno == errno.EADDRINUSE:
        setting = key.split("[")[0]
        return (f"address already in use by another process that does not share it "
                f"(SO_REUSEPORT; a second instance needs its own {setting})")
    if exc.errno == errno.EACCES:
        return f"permission denied: port {endpoint.port} needs {PRIVILEGE}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this host"
    return exc.strerror or str(exc)


def bind_failure(key: str, endpoint: Endpoint, exc: OSError) -> Failure:
    """The one line for an address that cannot be bound."""
    return Failure(key, f"{endpoint}: {_bind_reason(key, exc, endpoint)}", status.ADDRESS)


def _bindable(key: str, endpoint: Endpoint, kinds: tuple[int, ...], serving: bool,
              notes: list[str]) -> None:
    """Bind ``endpoint`` as the server will (SO_REUSEPORT, so that a running predecessor's
    listeners do not stop a successor; TCP with SO_REUSEADDR, IPv6 only for IPv6, as asyncio's
    start_server does) and let go at once."""
    if endpoint.port == 0:
        return  # any free port: nothing to check
    if handover.others([handover.key((endpoint.host, endpoint.port), endpoint.family)], False):
        # A predecessor serves there: a UDP socket bound to check would join its SO_REUSEPORT
        # group and could take (and lose) a datagram of its. TCP, never listening, tells.
        kinds = tuple(kind for kind in kinds if kind != socket.SOCK_DGRAM)
    for kind in kinds:
        sock = socket.socket(endpoint.family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if endpoint.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((endpoint.host, endpoint.port))
        except OSError as exc:
            if not serving and exc.errno == errno.EACCES:
                notes.append(f"{key}: {endpoint}: cannot tell whether it is free: port "
                             f"{endpoint.port} needs {PRIVILEGE}, which this check lacks")
                return
            raise bind_failure(key, endpoint, exc) from None
        finally:
            sock.close()


def check(config: Config, *, serving: bool, listen_key: str = "listen") -> list[str]:
    """Check ``config`` against the host; raise :class:`Failure` for the first fault, return
    the notes. ``serving``: this process is about to serve (a privileged port it cannot bind
    is a fault, not a note). ``listen_key`` names where the listeners came from (``--listen``
    when the command line replaced them). ``trust_anchor_file`` was read with the file."""
    notes: list[str] = []
    _successor(config)
    _log(config)
    _dnstap(config, notes)
    if config.cache.persist is not None:  # written through a temporary file and a rename
        for index in range(config.workers):
            _writable("cache.persist", for_worker(config, index).cache.persist, creates=True)
    forward_tls(config)
    pin_sets(config, serving=serving, notes=notes)
    for index, endpoint in enumerate(config.listen):
        key = f"listen[{index}]" if listen_key == "listen" else listen_key
        _bindable(key, endpoint, (socket.SOCK_DGRAM, socket.SOCK_STREAM), serving, notes)
    if config.metrics.enabled:
        for index in range(config.workers):
            _bindable("metrics.listen", for_worker(config, index).metrics.listen,
                      (socket.SOCK_STREAM,), serving, notes)
    _api(config, serving, notes)
    return notes


def _api(config: Config, serving: bool, notes: list[str]) -> None:
    """The runtime API's token file parses, its socket can be made (its directory writable,
    no other resolver answering there) or its TCP address bound, its persist file written."""
    api = config.api
    if api is None:
        return
    if api.token_file is not None:
        try:
            load_tokens(api.token_file)
        except ConfigError as exc:
            raise Failure(exc.field, exc.reason, exc.status) from None
    if api.mode == API_UNIX:
        _writable("api.listen", api.path, creates=True)
        if os.path.lexists(api.path) and unix_socket_in_use(api.path):
            raise Failure("api.listen", f"unix:{api.path}: address already in use by another "
                                        "process (a second instance needs its own api.listen)",
                          status.ADDRESS)
    else:
        _bindable("api.listen", api.endpoint, (socket.SOCK_STREAM,), serving, notes)
    if api.persist is not None:
        _writable("api.persist", api.persist, creates=True)
