"""Validations per second, per algorithm: resolver.dnssec.validate_rrset against dnspython's
dns.dnssec.validate and against the bare cryptography verify call on the same signed bytes (the
floor). Warm key caches; "ours" verifies every time (the verified-signature cache off), and
"cached" is ours again with the cache on, as for a repeated RRSIG (wildcard expansions, the same
NSEC proof, a refetched DNSKEY set). They are measured in alternating rounds, and each one's best
round is reported (noise on a shared machine only ever slows a round down), with the median.

    python bench/verify.py [--seconds 0.3] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cryptography
import dns.dnssec
import dns.name
import dns.version
import dns.rrset
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from dns.dnssectypes import Algorithm

from resolver.dnssec import canonical, crypto, verify
from resolver.dnssec import validate_rrset
from resolver.dnssec import sigcrypt
from resolver.dnssec.sigcrypt import KEY_CACHE

NOW = 1780272000
ZONE = dns.name.from_text("bench.test.")
ALGORITHMS = {
    Algorithm.RSASHA256: lambda: rsa.generate_private_key(65537, 2048),
    Algorithm.RSASHA512: lambda: rsa.generate_private_key(65537, 2048),
    Algorithm.ECDSAP256SHA256: lambda: ec.generate_private_key(ec.SECP256R1()),
    Algorithm.ECDSAP384SHA384: lambda: ec.generate_private_key(ec.SECP384R1()),
    Algorithm.ED25519: ed25519.Ed25519PrivateKey.generate,
    Algorithm.ED448: ed448.Ed448PrivateKey.generate,
}


def bare_verify(algorithm: Algorithm, public, signature: bytes, data: bytes):
    """The cheapest correct call into cryptography for this signature: the floor."""
    if algorithm in (Algorithm.RSASHA256, Algorithm.RSASHA512):
        pad = padding.PKCS1v15()
        digest = hashes.SHA256() if algorithm == Algorithm.RSASHA256 else hashes.SHA512()
        return lambda: public.verify(signature, data, pad, digest)
    if algorithm in (Algorithm.ECDSAP256SHA256, Algorithm.ECDSAP384SHA384):
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                   int.from_bytes(signature[half:], "big"))
        scheme = ec.ECDSA(hashes.SHA256() if half == 32 else hashes.SHA384())
        return lambda: public.verify(der, data, scheme)
    return lambda: public.verify(signature, data)


def cases(algorithm: Algorithm):
    """An A RRset of two addresses signed by the ZSK, and a KSK+ZSK DNSKEY RRset signed by the
    KSK: the two RRsets a resolver validates most. Each measurement is a pair of the
    verified-signature cache to validate with and the call."""
    make = ALGORITHMS[algorithm]
    ksk, zsk = make(), make()
    ksk_key = dns.dnssec.make_dnskey(ksk.public_key(), algorithm, flags=257)
    zsk_key = dns.dnssec.make_dnskey(zsk.public_key(), algorithm, flags=256)
    keys = dns.rrset.from_rdata(ZONE, 3600, ksk_key, zsk_key)
    a = dns.rrset.from_text("www.bench.test.", 300, "IN", "A", "192.0.2.1", "192.0.2.2")
    for rrset, private, dnskey in ((a, zsk, zsk_key), (keys, ksk, ksk_key)):
        rrsig = dns.dnssec.sign(rrset, private, ZONE, dnskey, inception=NOW - 3600,
                                expiration=NOW + 86400)
        sigs = dns.rrset.from_rdata(rrset.name, rrset.ttl, rrsig)
        data = verify.signed_data(verify.rrsig_header(rrsig),
                                  canonical.name_wire(rrset.name.labels),
                                  rrset.rdtype, rrset.rdclass, rrsig.original_ttl,
                                  [canonical.rdata_wire(rd) for rd in rrset])
        public = KEY_CACHE.get(canonical.rdata_wire(dnskey)).public
        assert validate_rrset(rrset, sigs, keys, now=NOW).secure
        dns.dnssec.validate(rrset, sigs, {ZONE: keys}, now=NOW)
        bare_verify(algorithm, public, rrsig.signature, data)()
        ours = lambda r=rrset, s=sigs: validate_rrset(r, s, keys, now=NOW)  # noqa: E731
        yield ("A" if rrset is a else "DNSKEY"), {
            "ours": (None, ours),
            "cached": (CACHE, ours),
            "dnspython": (None, lambda r=rrset, s=sigs: dns.dnssec.validate(r, s, {ZONE: keys},
                                                                            now=NOW)),
            "floor": (None, bare_verify(algorithm, public, rrsig.signature, data)),
        }


#: The verified-signature cache of the "cached" measurement; the others run with none.
CACHE = crypto.VerifiedSignatures(1000)


def rate(func, seconds: float) -> float:
    """Calls per second over about ``seconds`` (a bounded loop)."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            func()
        calls += 50
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.machine()} Python {platform.python_version()}, "
          f"dnspython {dns.version.version}, cryptography {cryptography.__version__}, "
          f"{os.cpu_count()} CPUs; {args.rounds} alternating rounds x {args.seconds}s: "
          "best round (median)")
    print(f"{'algorithm':16s} {'rrset':6s} {'ours/s':>15s} {'dnspython/s':>15s} "
          f"{'floor/s':>15s} {'ours/floor':>13s} {'dnspy/floor':>13s} {'cached/s':>15s}")
    for algorithm in ALGORITHMS:
        for rrset_kind, funcs in cases(algorithm):
            samples: dict[str, list[float]] = {name: [] for name in funcs}
            for _ in range(args.rounds):
                for name, (cache, func) in funcs.items():
                    sigcrypt.VERIFIED = cache
                    samples[name].append(rate(func, args.seconds))
            best = {name: max(values) for name, values in samples.items()}
            med = {name: statistics.median(values) for name, values in samples.items()}
            cells = [f"{best[n]:7.0f} ({med[n]:5.0f})" for n in ("ours", "dnspython", "floor")]
            ratios = [f"{best[n] / best['floor']:5.3f} ({med[n] / med['floor']:5.3f})"
                      for n in ("ours", "dnspython")]
            print(f"{algorithm.name:16s} {rrset_kind:6s} " + " ".join(f"{c:>15s}" for c in cells)
                  + " " + " ".join(f"{r:>13s}" for r in ratios)
                  + f" {best['cached']:7.0f} ({med['cached']:5.0f})", flush=True)


if __name__ == "__main__":
    main()
