"""The ``dnssec-sidecar`` command."""

from __future__ import annotations

import argparse
import logging
import sys

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from resolver import __version__
from resolver.config import (ConfigError, default_config, load_config, parse_endpoint,
                             parse_time, replace_listen)
from resolver.dnssec import ValidatorConfig, Verdict, authenticate_dnskeys, validate_rrset

SEP_FLAG = 0x0001  # RFC 4034 §2.1.1


def _time_arg(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _trust(zone: dns.zone.Zone, path: str | None) -> tuple[dns.rrset.RRset | None, str]:
    """The DS or DNSKEY records to trust the zone's keys through, and how they were chosen."""
    apex = zone.origin
    if path:
        records = dns.zone.from_file(path, origin=apex, relativize=False, check_origin=False)
        for rdtype in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            found = records.get_rrset(apex, rdtype)
            if found:
                return found, f"{len(found)} {dns.rdatatype.to_text(rdtype)} from {path}"
        raise SystemExit(f"check-zone: {path}: no DS or DNSKEY record for {apex}")
    keys = zone.get_rrset(apex, dns.rdatatype.DNSKEY)
    if keys is None:
        return None, "none"
    sep = [rd for rd in keys if rd.flags & SEP_FLAG] or list(keys)
    return dns.rrset.from_rdata(apex, keys.ttl, *sep), "the zone's own SEP keys"


def check_zone(args: argparse.Namespace) -> int:
    """Validate every authoritative RRset of a signed zone file (RFC 4035 §5.2-§5.3)."""
    try:
        zone = dns.zone.from_file(args.zonefile, origin=args.origin, relativize=False)
    except (OSError, dns.exception.DNSException) as exc:
        print(f"check-zone: {args.zonefile}: {exc}", file=sys.stderr)
        return 2
    config = ValidatorConfig(allow_sha1=args.allow_sha1)
    apex = zone.origin
    trust, how = _trust(zone, args.trust)
    keys = zone.get_rrset(apex, dns.rdatatype.DNSKEY)
    key_sigs = zone.get_rrset(apex, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    print(f"zone {apex}  trust: {how}")
    if keys is None or trust is None:
        print("  no DNSKEY at the apex: the zone is unsigned")
        return 1
    keyset = authenticate_dnskeys(keys, key_sigs, trust, now=args.time, config=config)
    print(f"  DNSKEY: {keyset.verdict.value}"
          + (f" via key {keyset.key.tag} algorithm {keyset.key.algorithm}" if keyset.key else "")
          + (f"  ({keyset.reason}) [EDE {int(keyset.ede)}]" if keyset.ede is not None else ""))
    if keyset.verdict is not Verdict.SECURE:
        return 1
    cuts = {name for name, node in zone.nodes.items()
            if name != apex and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)}
    counts = {verdict: 0 for verdict in Verdict}
    for name in sorted(zone.nodes):
        if any(name != cut and name.is_subdomain(cut) for cut in cuts):
            continue  # glue: not authoritative, not signed (RFC 4035 §2.2)
        node = zone.nodes[name]
        for rdataset in node:
            rdtype = rdataset.rdtype
            if rdtype == dns.rdatatype.RRSIG or (name in cuts and rdtype not in (
                    dns.rdatatype.DS, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)):
                continue
            rrset = dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
            sig_rrset = dns.rrset.from_rdata_list(name, sigs.ttl, list(sigs)) if sigs else None
            result = validate_rrset(rrset, sig_rrset, keys, now=args.time, config=config)
            counts[result.verdict] += 1
            if args.verbose or not result.secure:
                detail = result.reason or (f"{name}/{dns.rdatatype.to_text(rdtype)}: "
                                           f"key {result.key.tag}")
                ede = f" [EDE {int(result.ede)}]" if result.ede is not None else ""
                print(f"  {result.verdict.value.upper():8s} {detail}{ede}")
    print("  " + ", ".join(f"{n} {v.value}" for v, n in counts.items() if n))
    return 0 if counts[Verdict.BOGUS] == 0 and counts[Verdict.INDETERMINATE] == 0 else 1


def serve(args: argparse.Namespace) -> int:
    """Start the resolver: the config file, or the built-in defaults (127.0.0.1:53, the IANA
    root hints and root trust anchors)."""
    from resolver import service
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
    check.add_argument("--origin", type=dns.name.from_text, default=None,
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
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
