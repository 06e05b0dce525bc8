"""Exit statuses of the ``dnssec-sidecar`` commands: one per kind of failure, so that a script
or an init system can tell them apart (listed in README.md and ``dnssec-sidecar --help``)."""

from __future__ import annotations

from resolver.errors import ResolverError

OK = 0
#: A check ran and found a problem: check-zone's data is not Secure, verify-log's chain broke,
#: posture shows a bogus zone or a canary that resolves.
FOUND = 1
#: The command line is wrong (argparse's own status), or verify-log lacks the HMAC key.
USAGE = 2
#: An input is invalid: a configuration key's value, YAML, a zone or key file's content.
INVALID = 3
#: A file cannot be read: missing, no permission, a directory where a file is expected.
UNREADABLE = 4
#: A file or directory cannot be written: the forensic log's, dnstap's.
UNWRITABLE = 5
#: An address cannot be bound: in use, a privileged port, not an address of this host.
ADDRESS = 6
#: The forensic log cannot be continued: its last record does not verify.
LOG_CHAIN = 7
#: The nftables sets of ``services[].pin`` cannot be used: no libnftables, no such table or
#: set, a set of the wrong type or without timeouts, no permission (CAP_NET_ADMIN).
NFTABLES = 8
#: ``policy``: the running resolver's API refused the request (a stale generation, a bad
#: service, no such service).
API_REFUSED = 9
#: ``policy``: the running resolver's API cannot be reached (``--api``).
UNREACHABLE = 10
#: Standard output was closed before everything was written (``... | head -1``): as a shell
#: reports a command ended by SIGPIPE.
CLOSED_OUTPUT = 141
#: Interrupted (Ctrl-C) before serving began: as a shell reports SIGINT.
INTERRUPTED = 130

#: The ``--help`` text, in the order above.
TABLE = (
    (OK, "success"),
    (FOUND, "a check found a problem (check-zone: data not Secure; verify-log: chain broken; "
            "posture: a zone bogus or a canary resolving; policy check: the query would be "
            "refused)"),
    (USAGE, "wrong command line; verify-log of an HMAC log without the key"),
    (INVALID, "invalid input: a configuration key's value, YAML, a zone or key file's content"),
    (UNREADABLE, "a file cannot be read (missing, no permission, a directory)"),
    (UNWRITABLE, "a file or directory cannot be written (log.path, dnstap.path)"),
    (ADDRESS, "an address cannot be bound (listen, metrics.listen): in use, privileged port, "
              "not local"),
    (LOG_CHAIN, "the forensic log's last record does not verify: the chain cannot continue"),
    (NFTABLES, "services[].pin's nftables sets cannot be used: no libnftables, no such table "
               "or set, wrong type, no timeout flag, no permission"),
    (API_REFUSED, "policy: the API refused the request (stale generation, bad service, none "
                  "such)"),
    (UNREACHABLE, "policy: the API cannot be reached (--api)"),
    (INTERRUPTED, "interrupted (Ctrl-C) before serving began"),
    (CLOSED_OUTPUT, "standard output closed early (e.g. | head -1)"),
)


class Failure(ResolverError):
    """A command cannot go on: ``where`` names the configuration key or the file, ``reason``
    says why, ``status`` is the exit status. Printed as one line, never a traceback."""

    def __init__(self, where: str, reason: str, status: int) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where, self.reason, self.status = where, reason, status
