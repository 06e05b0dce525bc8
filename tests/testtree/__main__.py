"""Run the whole test tree: ``python -m tests.testtree`` (as root: the servers use port 53).

Starts one authoritative server per zone address of tree.json, the lame servers, and the
recursive stub ("forwarder"); prints the addresses, a resolver config (also written to
tests/testtree/resolver.yaml), the root hint, the trust anchor and example ``dig`` commands;
runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import zonedata
from .authority import KNOBS, Query, start_tree, trust_anchor_lines, write_resolver_config


def _fault(text: str) -> tuple[str, str, object]:
    """ZONE_OR_ADDRESS:KNOB[=VALUE] -> (key, knob, value)."""
    key, sep, knob = text.rpartition(":")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ZONE_OR_ADDRESS:KNOB[=VALUE]")
    knob, _, value = knob.partition("=")
    if knob not in KNOBS:
        raise argparse.ArgumentTypeError(f"{knob!r}: knobs are {', '.join(KNOBS)}")
    if knob == "delay_ms":
        return key, knob, float(value or 0)
    return key, knob, value.lower() not in ("0", "false", "no", "off") if value else True


def _print_query(q: Query) -> None:
    print(f"query {q.transport} {q.server:<12} {q.qname} {q.qtype}"
          f"{' DO' if q.do else ''}{' RD' if q.rd else ''}{' CD' if q.cd else ''}", flush=True)


def describe(port: int, forwarder: bool) -> str:
    m = zonedata.manifest()
    lines = ["dnssec-sidecar test tree (tests/testtree/README.md)", "", "servers:"]
    for address, s in m["servers"].items():
        if s["role"] == "forwarder" and not forwarder:
            continue
        what = {"authoritative": " ".join(s["zones"]),
                "lame": "lame: serves no zone, REFUSED to everything",
                "unreachable": "unreachable: nothing listens (not started)",
                "forwarder": "forwarder: recursive stub serving the whole tree",
                "hostile": "hostile: " + (" ".join(s["zones"][:2]) + (" ..." if len(s["zones"]) > 2
                                                                     else "") or "no zone")
                + "".join(f" ({k})" for k in s.get("behaviour", {}))}[s["role"]]
        ns = f"  [{', '.join(s['ns'][:3])}{' ...' if len(s['ns']) > 3 else ''}]" \
            if s.get("ns") else ""
        lines.append(f"  {address:<12} {what}{ns}")
    (hint, hint_addr), = m["root_hints"].items()
    lines += ["", f"root hint:    {hint} {hint_addr}",
              *(f"trust anchor: {a}" for a in trust_anchor_lines()),
              "validate at:  2026-06-01T00:00:00Z (every good signature is valid 2026-2036)", "",
              f"resolver config ({m.get('resolver_config', 'resolver.yaml')}):", ""]
    lines += ["  " + ln for ln in write_resolver_config().splitlines()]
    p = "" if port == 53 else f" -p {port}"
    fwd = m["forwarder"]
    lines += ["", "try:",
              f"  dig{p} @{hint_addr} +dnssec +norec www.rsasha256.example. A      # referral "
              "with DS",
              f"  dig{p} @127.0.0.20 +dnssec +norec www.rsasha256.example. A      # AA answer "
              "with RRSIG",
              f"  dig{p} @127.0.0.24 +dnssec +norec nonexistent.ed25519.example. A  # NXDOMAIN, "
              "NSEC3",
              f"  dig{p} @127.0.0.22 +dnssec +norec foo.wild.ecdsap256.example. A  # wildcard",
              f"  dig{p} @127.0.0.20 +dnssec +norec big.rsasha256.example. TXT    # TC, then TCP",
              f"  dig{p} @127.0.0.51 +norec www.lame.example. A                   # lame: REFUSED"]
    if forwarder:
        lines.append(f"  dig{p} @{fwd} +dnssec www.fwd.example. A                    "
                     "# the forwarder (RA)")
    lines += [f"  dig{p} @{m.get('resolver_listen', '127.0.0.2:53').rsplit(':', 1)[0]} +dnssec "
              "www.rsasha256.example. A  # the resolver, once started with the config above",
              "", "running; Ctrl-C or SIGTERM stops"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.testtree", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=53, help="port of every server (default 53)")
    ap.add_argument("--no-forwarder", action="store_true", help="do not start the forwarder")
    ap.add_argument("--log", action="store_true", help="print every query received")
    ap.add_argument("--fault", type=_fault, action="append", default=[],
                    metavar="ZONE_OR_ADDRESS:KNOB[=VALUE]",
                    help=f"e.g. lame.example.:refuse or 127.0.0.20:delay_ms=300; knobs: "
                         f"{', '.join(KNOBS)}")
    args = ap.parse_args(argv)
    faults: dict[str, dict] = {}
    for key, knob, value in args.fault:
        faults.setdefault(key, {})[knob] = value

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        tree = start_tree(faults, port=args.port, forwarder=not args.no_forwarder,
                          on_query=_print_query if args.log else None)
    except OSError as exc:
        print(f"cannot start the servers: {exc} (port {args.port} needs root; is another "
              "tree running?)", file=sys.stderr)
        return 1
    try:
        print(describe(args.port, not args.no_forwarder), flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        tree.stop()
        for error in tree.errors:
            print(f"server error: {error}", file=sys.stderr)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
