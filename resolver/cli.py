"""dnssec-sidecar: a strict DNSSEC-validating recursive resolver (RFC 4033-4035) beside a
workload. serve runs it; check-config checks a configuration file (and this host for it),
check-zone a signed zone file, verify-log the forensic log's hash chain, posture shows the
DNSSEC posture of the expected zones; policy reads and changes a running resolver's services,
learn writes an allow list from a forensic log. Every failure is one
line on standard error and an exit status of its kind (below), never a traceback."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import warnings

from resolver import __version__, status

#: The process log: one line per event on standard error. At the default level the service's
#: own lines (what it serves where, reloads, shutdown) and warnings; -v adds every INFO line.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    """A dependency's warning (a deprecation in cryptography, say) is for developers: it goes
    to the debug log, never to a user's terminal as stray text."""
    logging.getLogger("py.warnings").debug("%s:%s: %s: %s", filename, lineno,
                                           category.__name__, message)


def _time_arg(text: str) -> int:
    from resolver.config import parse_time
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_zone(args: argparse.Namespace) -> int:
    from resolver import checkzone
    return checkzone.run(args)


def serve(args: argparse.Namespace) -> int:
    """Start the resolver: the config file, or the built-in defaults (127.0.0.1:53, the IANA
    root hints and root trust anchors). It says what it serves where on standard error; the
    forensic log goes to standard output unless log.path names a file.

    A restart that drops nothing: start the new process on the same listen addresses (with its
    own forensic log). It finds the running one there, takes its cache (cache.persist), primes,
    then binds beside it (SO_REUSEPORT) and says it is serving. Then send SIGTERM to the old
    one: once a successor answers on every address (or after timeouts.drain_ms without one) it
    hands its sockets over without losing a queued query, finishes the queries in flight,
    writes its cache and flushes its log. README: "Restarts that drop nothing"."""
    from resolver import preflight, service
    from resolver.config import (ConfigError, default_config, load_config, parse_endpoint,
                                 replace_listen)
    where = args.config or "defaults"
    listen = None
    try:
        config = load_config(args.config) if args.config else default_config()
        if args.listen:
            try:
                listen = tuple(parse_endpoint(text) for text in args.listen)
            except ValueError as exc:
                raise ConfigError("--listen", str(exc), status.USAGE) from None
            config = replace_listen(config, listen)
        preflight.check(config, serving=True, listen_key="--listen" if listen else "listen")
    except (ConfigError, status.Failure) as exc:
        print(f"dnssec-sidecar: {where}: {exc}", file=sys.stderr)
        return exc.status
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("dnssec-sidecar").setLevel(logging.INFO)  # start, reload, stop: always
    try:
        service.serve(config, args.config, listen)
    except status.Failure as exc:  # what changed between the checks and the start
        print(f"dnssec-sidecar: {where}: {exc}", file=sys.stderr)
        return exc.status
    return status.OK


def check_config(args: argparse.Namespace) -> int:
    from resolver import configcheck
    return configcheck.run(args.file, host=not args.no_host)


def verify_log(args: argparse.Namespace) -> int:
    from resolver.forensic import verify
    return verify.run(args.files, args.hmac_key_file, args.head, args.collected)


def posture(args: argparse.Namespace) -> int:
    from resolver.monitor import report
    return report.run(args.api, args.log)


def learn(args: argparse.Namespace) -> int:
    from resolver import learn as learning
    return learning.run(args.logs, args.service)


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit status:\n" + "\n".join(f"  {code:3d}  {text}" for code, text in status.TABLE)
    parser = argparse.ArgumentParser(prog="dnssec-sidecar", description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the validating resolver",
                              description=inspect.cleandoc(serve.__doc__),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", metavar="FILE", help="YAML configuration (default: built-in)")
    run.add_argument("--listen", metavar="ADDR:PORT", action="append",
                     help="listen here instead (repeatable; [v6]:port for IPv6)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="log every INFO line (each SERVFAIL and its reason, say), not only "
                          "the start-up summary, reloads and shutdown")
    run.set_defaults(run=serve)
    check_cfg = commands.add_parser("check-config", help="check a configuration file and exit",
                                    description="Load FILE as serve would and check this "
                                                "host as serve would start on it (files "
                                                "readable, directories writable, addresses "
                                                "free); print a summary, or the key at fault "
                                                "and why.")
    check_cfg.add_argument("file")
    check_cfg.add_argument("--no-host", action="store_true",
                           help="check the keys only, not this host: for a file meant for "
                                "another machine, or for a reload of a running resolver (which "
                                "holds the addresses and log files)")
    check_cfg.set_defaults(run=check_config)
    verify = commands.add_parser(
        "verify-log", help="check the hash chain of forensic log files",
        description="Check forensic log files given oldest first (log.3 log.2 log.1 log), "
                    "plain or gzip: names the first record changed, removed or reordered, "
                    "and with --head the records missing after a checkpoint.")
    from resolver.forensic.verify import add_arguments
    add_arguments(verify)
    verify.set_defaults(run=verify_log)
    show = commands.add_parser(
        "posture", help="the DNSSEC posture of the expected zones",
        description="A table of the zones the services expect and the zone cuts above them: "
                    "state, keys, DS, denial, SOA serial, earliest signature expiry, last "
                    "change; from a running resolver or its forensic log.")
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--api", metavar="ADDR:PORT",
                        help="a running resolver's metrics.listen address (GET /posture)")
    source.add_argument("--log", metavar="FILE", nargs="+",
                        help="forensic log files, oldest first (their event records)")
    show.set_defaults(run=posture)
    check = commands.add_parser(
        "check-zone", help="validate every RRset of a signed zone file",
        description="Validate the DNSKEY set of a signed zone file from a DS or DNSKEY trust "
                    "file (default: the zone's own SEP keys), then every authoritative RRset.")
    check.add_argument("zonefile")
    check.add_argument("--origin", default=None,
                       help="zone name, when the file has no $ORIGIN")
    check.add_argument("--trust", metavar="FILE",
                       help="zone-format file with the zone's DS (from the parent) or DNSKEY")
    check.add_argument("--time", type=_time_arg, default=None,
                       help="validation time (RFC 3339 or epoch seconds); default: now")
    check.add_argument("--allow-sha1", action="store_true",
                       help="validate algorithms 5 and 7 (RSASHA1), off per RFC 9905")
    check.add_argument("-v", "--verbose", action="store_true", help="list every RRset")
    check.set_defaults(run=check_zone)
    from resolver import policycli
    policycli.add_parser(commands)
    learner = commands.add_parser(
        "learn", help="an allow list for a service from the names its forensic log shows",
        description="Print, as YAML for services[].allow, one rule per zone cut the proofs of "
                    "the service's answers show: require: secure where every answer was "
                    "Secure, the types seen, the counts as comments.")
    learner.add_argument("logs", nargs="+", metavar="LOG", help="forensic log files")
    learner.add_argument("--service", required=True)
    learner.set_defaults(run=learn)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _warning_to_log  # before any dependency is imported
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help, --version or a usage error, printed already
            code = done.code
        else:
            code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader went away (``| head -1``): nothing more to say, and nothing to flush at
        # exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return status.CLOSED_OUTPUT
    except KeyboardInterrupt:
        return status.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
