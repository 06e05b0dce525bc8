"""atheris harness: the compiled verification core on arbitrary octets: canonical RDATA,
signed data and owners, key parsing from DNSKEY RDATA, key tags, DS digests, NSEC3 hashes,
ECDSA signature encoding and signature checks. Only MalformedData may come out.

    python fuzz/fuzz_verify.py CORPUS_DIR -max_total_time=600
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["dns", "resolver"]):
    from resolver.dnssec import canonical, crypto, verify

TYPES = (1, 2, 5, 6, 12, 15, 17, 18, 21, 24, 26, 30, 33, 35, 36, 38, 39, 46, 47, 48, 50)
ALGORITHMS = (1, 5, 7, 8, 10, 13, 14, 15, 16, 200)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rdtype = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    rdata = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    try:
        canon = canonical.canonical_rdata(rdtype, rdata)
        assert len(canon) == len(rdata)
    except canonical.MalformedData:
        pass
    key_wire = bytes([fdp.ConsumeInt(1) & 0xFF, 1, 3,
                      ALGORITHMS[fdp.ConsumeIntInRange(0, len(ALGORITHMS) - 1)]]) \
        + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    key = crypto.Key(key_wire)
    assert 0 <= key.tag <= 0xFFFF and (key.public is None) == (key.error is not None)
    signature = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    signed = verify.signed_data(fdp.ConsumeBytes(40), fdp.ConsumeBytes(40), rdtype, 1,
                                fdp.ConsumeInt(4) & 0xFFFFFFFF, [rdata, canonical_or(rdata)])
    crypto.verify_signature(key, signature, signed)
    try:
        crypto.ecdsa_der(signature, (32, 48)[fdp.ConsumeIntInRange(0, 1)])
    except canonical.MalformedData:
        pass
    labels = tuple(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70))
                   for _ in range(fdp.ConsumeIntInRange(0, 6))) + (b"",)
    try:
        owner = verify.signed_owner(labels, fdp.ConsumeIntInRange(-2, 8))
    except canonical.MalformedData:
        owner = b"\x00"
    crypto.ds_digest(fdp.ConsumeIntInRange(0, 5), owner, key_wire)
    crypto.nsec3_hash(owner, fdp.ConsumeBytes(255), fdp.ConsumeIntInRange(0, 30))


def canonical_or(rdata: bytes) -> bytes:
    try:
        return canonical.canonical_rdata(46, rdata)
    except canonical.MalformedData:
        return rdata


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
