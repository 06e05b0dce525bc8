"""atheris harness: a response message, parsed by dnspython, through the validator: every
RRset with its RRSIGs against the keys of the zone it claims to be from, its DNSKEY set against
the zone's DS, and its NSEC/NSEC3 records through every denial proof. Verdicts, never
exceptions.

    python fuzz/fuzz_validator.py CORPUS_DIR -max_total_time=600
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["dns", "resolver"]):
    import dns.exception
    import dns.message
    import dns.name
    import dns.rdatatype

    from resolver.dnssec import (Budget, BudgetExhausted, Limits, ValidatorConfig,
                                 authenticate_dnskeys, denial, validate_rrset)

from tests.testtree import NOW, zonedata

ZONES = [zonedata.load(name) for name in zonedata.manifest()["zones"]
         if zonedata.load(name).dnskeys() is not None]
DENIAL_TYPES = (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
CONFIG = ValidatorConfig(limits=Limits(nsec3_max_iterations=150))


def _zone_for(name: dns.name.Name):
    best = None
    for zone in ZONES:
        if name.is_subdomain(zone.name) and (best is None or len(zone.name) > len(best.name)):
            best = zone
    return best


def one_input(data: bytes) -> None:
    try:
        message = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return
    try:
        _validate(message, Budget(CONFIG.limits))
    except BudgetExhausted:  # how a per-query budget ends the work (the iterator's catch)
        pass


def _validate(message: dns.message.Message, budget: Budget) -> None:
    sections = message.answer + message.authority + message.additional
    sigs = {(r.name, r.covers): r for r in sections if r.rdtype == dns.rdatatype.RRSIG}
    for rrset in sections:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        zone = _zone_for(rrset.name)
        if zone is None:
            continue
        rrsigs = sigs.get((rrset.name, rrset.rdtype))
        validate_rrset(rrset, rrsigs, zone.dnskeys(), now=NOW, budget=budget, config=CONFIG)
        if rrset.rdtype == dns.rdatatype.DNSKEY and zone.ds() is not None:
            authenticate_dnskeys(rrset, rrsigs, zone.ds(), now=NOW, config=CONFIG)
    proofs = [r for r in message.authority if r.rdtype in DENIAL_TYPES]
    if proofs and message.question:
        q = message.question[0]
        star = dns.name.from_text("*", q.name.parent()) if len(q.name) > 1 else q.name
        for prove in (lambda: denial.prove_nxdomain(q.name, proofs, config=CONFIG, budget=budget),
                      lambda: denial.prove_nodata(q.name, q.rdtype, proofs, config=CONFIG,
                                                  budget=budget),
                      lambda: denial.prove_wildcard_nodata(q.name, q.rdtype, proofs,
                                                           config=CONFIG, budget=budget),
                      lambda: denial.prove_wildcard_answer(q.name, star, proofs, config=CONFIG,
                                                           budget=budget),
                      lambda: denial.prove_no_ds(q.name, proofs, config=CONFIG, budget=budget)):
            prove()


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
