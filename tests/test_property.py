"""Property tests: on randomly built and randomly corrupted RRsets our verdict agrees with
dnspython's independent validator, ``dns.dnssec.validate``."""

from __future__ import annotations

import dns.dnssec
import dns.name
import dns.rdata
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dnssec import ValidatorConfig, validate_rrset
from tests.conftest import NOW, ZONE, Signer

SIGNERS = {alg: Signer(alg) for alg in (8, 13, 15)}
CONFIG = ValidatorConfig()

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                min_size=1, max_size=12)
owner = st.lists(label, min_size=0, max_size=3).map(
    lambda labels: dns.name.Name([lab.encode() for lab in labels] + list(ZONE.labels)))

RDATA = {
    "A": st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    "AAAA": st.binary(min_size=16, max_size=16).map(
        lambda b: ":".join(b[i:i + 2].hex() for i in range(0, 16, 2))),
    "TXT": st.text(alphabet="abcXYZ 012", max_size=40).map(lambda t: f'"{t}"'),
    "MX": st.tuples(st.integers(0, 65535), label).map(lambda t: f"{t[0]} {t[1]}.Example.test."),
    "NS": label.map(lambda t: f"ns.{t}.TEST."),
}


@st.composite
def signed_rrset(draw):
    rdtype = draw(st.sampled_from(sorted(RDATA)))
    texts = draw(st.lists(RDATA[rdtype], min_size=1, max_size=4, unique=True))
    rrset = dns.rrset.from_text(draw(owner), draw(st.integers(0, 86400)), "IN", rdtype, *texts)
    signer = SIGNERS[draw(st.sampled_from(sorted(SIGNERS)))]
    return rrset, signer, signer.sign(rrset)


def _mutate(draw, rrset, sigs, signer):
    """One corruption, or none."""
    rrsig = sigs[0]
    kind = draw(st.sampled_from(["none", "sigbyte", "field", "rdata", "owner-case", "ttl",
                                 "drop-rr", "window"]))
    if kind == "sigbyte":
        sig = bytearray(rrsig.signature)
        pos = draw(st.integers(0, len(sig) - 1))
        sig[pos] ^= draw(st.integers(1, 255))
        rrsig = rrsig.replace(signature=bytes(sig))
    elif kind == "field":
        field = draw(st.sampled_from(["original_ttl", "key_tag", "labels", "algorithm"]))
        value = getattr(rrsig, field)
        rrsig = rrsig.replace(**{field: (value + draw(st.integers(1, 3))) % 256
                                 if field in ("labels", "algorithm") else value + 1})
    elif kind == "rdata":
        extra = dns.rrset.from_text(rrset.name, rrset.ttl, "IN", "TXT", '"injected"')
        rrset = extra if rrset.rdtype != extra.rdtype else dns.rrset.from_text(
            rrset.name, rrset.ttl, "IN", "TXT", '"other"')
    elif kind == "owner-case":
        rrset = dns.rrset.from_rdata(dns.name.from_text(rrset.name.to_text().upper()),
                                     rrset.ttl, *rrset)
    elif kind == "ttl":
        rrset = dns.rrset.from_rdata(rrset.name, rrset.ttl + 1, *rrset)
    elif kind == "drop-rr" and len(rrset) > 1:
        rrset = dns.rrset.from_rdata(rrset.name, rrset.ttl, *list(rrset)[1:])
    elif kind == "window":
        rrsig = rrsig.replace(expiration=NOW - draw(st.integers(1, 10**6)))
    return rrset, dns.rrset.from_rdata(rrset.name, sigs.ttl, rrsig), kind


def _dnspython_accepts(rrset, sigs, keys) -> bool:
    try:
        dns.dnssec.validate(rrset, sigs, {keys.name: keys}, now=NOW)
        return True
    except dns.dnssec.ValidationFailure:
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_verdict_agrees_with_dnspython(data):
    rrset, signer, sigs = data.draw(signed_rrset())
    rrset, sigs, kind = _mutate(data.draw, rrset, sigs, signer)
    ours = validate_rrset(rrset, sigs, signer.keys, now=NOW, config=CONFIG)
    assert ours.secure == _dnspython_accepts(rrset, sigs, signer.keys), (kind, ours)
