"""The question types this resolver does not serve: answered NOTIMP with EDE 21 (Not Supported,
RFC 8914 §4.22), never resolved and never answered from a cache. One rule for the full path
(resolver.server) and the compiled hit path (resolver._fastcache), which reads it at import.

* ANY: RFC 8482 lets a server decline it; MAILA, MAILB: obsolete (RFC 883);
* AXFR, IXFR: zone transfers are not a resolver's to give;
* OPT, TSIG, TKEY: meaningful only inside a message (RFC 6891, RFC 8945, RFC 2930);
* RRSIG: RRSIGs carry no signature of their own (RFC 4034 §3), so an answer of RRSIGs alone
  can be neither Secure nor proven Insecure, and this resolver never gives a client
  indeterminate data. Asked for the covered type with DO, the same RRSIGs arrive with the
  data they sign, and are validated.
"""

import dns.rdatatype

NOT_SERVED = frozenset((dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR,
                        dns.rdatatype.MAILA, dns.rdatatype.MAILB, dns.rdatatype.OPT,
                        dns.rdatatype.TSIG, dns.rdatatype.TKEY, dns.rdatatype.RRSIG))
