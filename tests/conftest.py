"""Shared fixtures: keys and signatures made with dnspython's signer, an implementation
independent of the validator under test."""

from __future__ import annotations

import dns.dnssec
import dns.name
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from dns.dnssectypes import Algorithm

NOW = 1780272000  # 2026-06-01T00:00:00Z, the fixed validation time of the tests
ZONE = dns.name.from_text("example.test.")


def private_key(algorithm: int):
    if algorithm in (5, 7, 8, 10):
        return rsa.generate_private_key(65537, 2048 if algorithm != 5 else 1024)
    if algorithm == 13:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == 14:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm == 15:
        return ed25519.Ed25519PrivateKey.generate()
    return ed448.Ed448PrivateKey.generate()


class Signer:
    """A zone key: its DNSKEY and a helper that signs RRsets with it."""

    def __init__(self, algorithm: int, zone: dns.name.Name = ZONE, flags: int = 257) -> None:
        self.zone = zone
        self.private = private_key(algorithm)
        self.dnskey = dns.dnssec.make_dnskey(self.private.public_key(), Algorithm(algorithm),
                                             flags=flags)
        self.keys = dns.rrset.from_rdata(zone, 3600, self.dnskey)

    def sign(self, rrset: dns.rrset.RRset, *, inception: int = NOW - 86400,
             expiration: int = NOW + 86400 * 30, **changes) -> dns.rrset.RRset:
        rrsig = dns.dnssec.sign(rrset, self.private, self.zone, self.dnskey,
                                inception=inception, expiration=expiration,
                                policy=dns.dnssec.allow_all_policy)
        if changes:
            rrsig = rrsig.replace(**changes)
        return dns.rrset.from_rdata(rrset.name, rrset.ttl, rrsig)


_SIGNERS: dict[int, Signer] = {}


@pytest.fixture(scope="session")
def signer():
    """A factory for one cached Signer per algorithm."""
    def get(algorithm: int = 13) -> Signer:
        if algorithm not in _SIGNERS:
            _SIGNERS[algorithm] = Signer(algorithm)
        return _SIGNERS[algorithm]
    return get


def rrset(text: str, rdtype: str = "A", *rdatas: str, ttl: int = 300) -> dns.rrset.RRset:
    return dns.rrset.from_text(text, ttl, "IN", rdtype, *(rdatas or ("192.0.2.1",)))
