"""What in an answer's data sends a client somewhere: the addresses it may connect to, and the
names it may look up next. Both rebinding protection and the allowlist (resolver.frontend.policy)
and pinning (resolver.frontend.pinning) read them here, so that each treats the same records.

- Addresses: A and AAAA data (RFC 1035 §3.4.1, RFC 3596), and the ``ipv4hint`` and
  ``ipv6hint`` of SVCB and HTTPS records (RFC 9460 §7.3), which a client may connect to
  before its A and AAAA queries are answered (§7.3: "clients MAY use the hints").
- Target names: the TargetName of SVCB and HTTPS records (RFC 9460 §2.5; "." is the owner
  itself in ServiceMode and "no service" in AliasMode, so it leads nowhere new) and the target
  of SRV records (RFC 2782; "." means no service). CNAME and DNAME targets are the chain's,
  which resolver.frontend.pipeline follows itself.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype
from dns.rdtypes.svcbbase import ParamKey

__all__ = ["addresses", "targets"]

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_SERVICE_BINDING = (dns.rdatatype.SVCB, dns.rdatatype.HTTPS)
_HINTS = (ParamKey.IPV4HINT, ParamKey.IPV6HINT)


def addresses(rrset) -> list[str]:
    """The addresses ``rrset`` gives a client, as text: A/AAAA data, SVCB/HTTPS hints."""
    if rrset.rdtype in _ADDRESS_TYPES:
        return [rd.address for rd in rrset]
    if rrset.rdtype in _SERVICE_BINDING:
        return [address for rd in rrset for key in _HINTS if key in rd.params
                for address in rd.params[key].addresses]
    return []


def targets(rrset) -> list[dns.name.Name]:
    """The names ``rrset`` sends a client to look up next: SVCB/HTTPS TargetNames and SRV
    targets, the root (no new name) left out."""
    if rrset.rdtype in _SERVICE_BINDING or rrset.rdtype == dns.rdatatype.SRV:
        return [rd.target for rd in rrset if rd.target != dns.name.root]
    return []
