"""The ``dnssec-sidecar`` command."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from resolver import __version__


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
    root hints and root trust anchors)."""
    from resolver import service
    from resolver.config import (ConfigError, default_config, load_config, parse_endpoint,
                                 replace_listen)
    listen = None
    try:
        config = load_config(args.config) if args.config else default_config()
        if args.listen:
            listen = tuple(parse_endpoint(text) for text in args.listen)
            config = replace_listen(config, listen)
    except (ConfigError, ValueError) as exc:
        print(f"dnssec-sidecar: {args.config or 'defaults'}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        service.serve(config, args.config, listen)
    except OSError as exc:
        print(f"dnssec-sidecar: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def check_config(args: argparse.Namespace) -> int:
    from resolver import configcheck
    return configcheck.run(args.file)


def verify_log(args: argparse.Namespace) -> int:
    from resolver import verifylog
    return verifylog.run(args.files, args.hmac_key_file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnssec-sidecar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the validating resolver",
                              description=serve.__doc__)
    run.add_argument("--config", metavar="FILE", help="YAML configuration (default: built-in)")
    run.add_argument("--listen", metavar="ADDR:PORT", action="append",
                     help="listen here instead (repeatable; [v6]:port for IPv6)")
    run.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    run.set_defaults(run=serve)
    check_cfg = commands.add_parser("check-config", help="check a configuration file and exit",
                                    description="Load FILE as serve would; print a summary or "
                                                "the field at fault and why.")
    check_cfg.add_argument("file")
    check_cfg.set_defaults(run=check_config)
    verify = commands.add_parser(
        "verify-log", help="check the hash chain of forensic log files",
        description="Check forensic log files given oldest first (log.3 log.2 log.1 log): "
                    "names the first record changed, removed or reordered.")
    verify.add_argument("files", nargs="+")
    verify.add_argument("--hmac-key-file", metavar="FILE",
                        help="the key the log was written with, for HMAC chains")
    verify.set_defaults(run=verify_log)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _warning_to_log  # before any dependency is imported
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
