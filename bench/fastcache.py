"""Cache hit path on raw bytes: resolver.resolve._fastcache.WireCache answer (hit and miss)
and store rates, against dnspython parsing and rendering the same response
(``dns.message.from_wire`` then ``to_wire``: what the slow path costs per answer at the least) and against the floor of a bare
responder that only patches the ID of stored bytes (``query[:2] + stored[2:]``).

Each operation runs over a batch of 1,000 distinct names (0x20-mixed case, random IDs, TTLs
decremented: 10 s elapsed) in alternating rounds; the best round is reported, the median beside
it. Then RSS of 100,000 cached names, and stores into a full cache (every store evicts).

    python bench/fastcache.py [--seconds 0.3] [--rounds 7] [--names 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import dns.version

from resolver.resolve import _fastcache as fc

NOW = 1780272000.0
SIG = ("Kx3oKc2mzbfPgdn5w5gTXe5Ml2hQpTX9wpE4qtWwE0EMVPZbbdWVnm8Gcv5pRSJ6Iea0YujB4rLIgQPQWUSjgw==")


def _rrsig(covered: str, signer: str, labels: int, ttl: int) -> str:
    return f"{covered} 13 {labels} {ttl} 20360101000000 20260101000000 4711 {signer} {SIG}"


def _mixed(name: str, rnd: random.Random) -> str:
    return "".join(c.upper() if rnd.random() < 0.5 else c for c in name)


def case(kind: str, name: str, rnd: random.Random):
    """(query wire, response wire, a differently cased and numbered query) for one name."""
    zone = name.split(".", 1)[1]
    if kind == "A, no EDNS":
        q = dns.message.make_query(name, "A", use_edns=False)
        r = dns.message.make_response(q, recursion_available=True)
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1", "192.0.2.2"))
    elif kind == "A+RRSIG, DO":
        q = dns.message.make_query(name, "A", want_dnssec=True)
        r = dns.message.make_response(q, recursion_available=True, our_payload=1232)
        r.flags |= dns.flags.AD
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "RRSIG",
                                            _rrsig("A", zone, name.count(".") - 0, 300)))
    else:  # NXDOMAIN with SOA, NSEC and their RRSIGs
        q = dns.message.make_query(name, "AAAA", want_dnssec=True)
        r = dns.message.make_response(q, recursion_available=True, our_payload=1232)
        r.flags |= dns.flags.AD
        r.set_rcode(dns.rcode.NXDOMAIN)
        labels = zone.count(".")
        r.authority.append(dns.rrset.from_text(
            zone, 900, "IN", "SOA", f"ns.{zone} hostmaster.{zone} 2026010101 7200 900 1209600 900"))
        r.authority.append(dns.rrset.from_text(zone, 900, "IN", "RRSIG",
                                               _rrsig("SOA", zone, labels, 900)))
        r.authority.append(dns.rrset.from_text(zone, 900, "IN", "NSEC",
                                               f"www.{zone} A NS SOA RRSIG NSEC DNSKEY"))
        r.authority.append(dns.rrset.from_text(zone, 900, "IN", "RRSIG",
                                               _rrsig("NSEC", zone, labels, 900)))
    again = dns.message.make_query(_mixed(name, rnd), q.question[0].rdtype,
                                   use_edns=0 if q.edns >= 0 else False,
                                   want_dnssec=bool(q.ednsflags & dns.flags.DO))
    return q.to_wire(), r.to_wire(), again.to_wire()


KINDS = ("A, no EDNS", "A+RRSIG, DO", "NXDOMAIN+NSEC+RRSIGs, DO")


def batch_rate(func, batch: int, seconds: float) -> float:
    """Operations per second: ``func()`` performs ``batch`` operations."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        func()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            return calls * batch / (now - start)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(kind: str, names: int, seconds: float, rounds: int) -> None:
    rnd = random.Random(5)
    rows = [case(kind, f"h{i}.zone{i % 37}.example.", rnd) for i in range(names)]
    others = [case(kind, f"m{i}.zone{i % 37}.example.", rnd) for i in range(names)]
    queries = [r[0] for r in rows]
    responses = [r[1] for r in rows]
    asked = [r[2] for r in rows]
    missing = [r[2] for r in others]
    cache = fc.WireCache(max_entries=4 * names)
    for query, response in zip(queries, responses):
        assert cache.store(query, "svc", response, NOW, 3600)
    later = NOW + 10
    for query in asked:  # every hit really is one
        assert cache.answer(query, "svc", later) is not None
    assert all(cache.answer(q, "svc", later) is None for q in missing)
    answer, store = cache.answer, cache.store
    from_wire = dns.message.from_wire
    pairs = list(zip(queries, responses))
    id_pairs = list(zip(asked, responses))

    def hits():
        for q in asked:
            answer(q, "svc", later)

    def misses():
        for q in missing:
            answer(q, "svc", later)

    def stores():
        for q, r in pairs:
            store(q, "svc", r, NOW, 3600)

    def dnspython():
        for r in responses:
            from_wire(r).to_wire()

    def floor():
        for q, r in id_pairs:
            q[:2] + r[2:]

    funcs = {"hit": hits, "miss": misses, "store": stores, "dnspython": dnspython,
             "floor": floor}
    samples: dict[str, list[float]] = {n: [] for n in funcs}
    for _ in range(rounds):
        for n, func in funcs.items():
            samples[n].append(batch_rate(func, names, seconds))
    best = {n: max(v) for n, v in samples.items()}
    med = {n: statistics.median(v) for n, v in samples.items()}
    size = statistics.median(len(r) for r in responses)
    cells = " ".join(f"{best[n]:9.0f} ({med[n]:9.0f})" for n in funcs)
    print(f"{kind:26s} {size:5.0f} {cells} {1e9 / best['hit']:6.0f} "
          f"{best['hit'] / best['dnspython']:8.1f}x {best['hit'] / best['floor']:6.2f}",
          flush=True)


def memory(count: int) -> None:
    rnd = random.Random(7)
    kind = "A+RRSIG, DO"
    query, response, _ = case(kind, "h00000.zone0.example.", rnd)
    assert query[13:19] == response[13:19] == b"h00000"
    # Distinct names of the same length, patched into the question (offsets and compression
    # pointers stay valid): dnspython would take a minute to render 100k names.
    rows = []
    for i in range(count):
        label = f"{i:06d}".encode()
        rows.append((query[:13] + label + query[19:], response[:13] + label + response[19:]))
    gc.collect()
    before = rss_bytes()
    cache = fc.WireCache(max_entries=count)
    stored = sum(cache.store(q, "svc", r, NOW, 3600) for q, r in rows)
    gc.collect()
    after = rss_bytes()
    size = len(rows[0][1])
    print(f"\nRSS for {stored} cached {size}-octet responses ({kind}): "
          f"{(after - before) / 2**20:.1f} MiB over the inputs, "
          f"{(after - before) / stored:.0f} octets per entry; process RSS {after / 2**20:.1f} MiB")
    full = fc.WireCache(max_entries=count // 10)
    start = time.perf_counter()
    for q, r in rows:
        full.store(q, "svc", r, NOW, 3600)
    took = time.perf_counter() - start
    print(f"store into a full cache of {count // 10} ({full.evictions} evictions): "
          f"{count / took:.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    parser.add_argument("--names", type=int, default=1000, help="distinct names per batch")
    parser.add_argument("--memory", type=int, default=100000, help="entries for the RSS figure")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.machine()} Python {platform.python_version()}, "
          f"dnspython {dns.version.version}, {os.cpu_count()} CPUs; {args.rounds} alternating "
          f"rounds x {args.seconds}s over {args.names} names: operations/s, best round (median)")
    print(f"{'response':26s} {'octets':>5s} {'hit/s':>21s} {'miss/s':>21s} {'store/s':>21s} "
          f"{'dnspython/s':>21s} {'floor/s':>21s} {'ns/hit':>6s} {'hit/dnspy':>9s} "
          f"{'hit/floor':>6s}")
    for kind in KINDS:
        measure(kind, args.names, args.seconds, args.rounds)
    memory(args.memory)


if __name__ == "__main__":
    main()
