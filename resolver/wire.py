"""Wire rules both client paths follow, each defined once: the full path
(resolver.frontend.answers and pipeline) and the compiled hit path (resolver.resolve._fastcache,
which reads these values when it is imported); resolver.resolve.transport sends our EDNS payload
size upstream and reads replies of up to MAX_MESSAGE octets.

UDP sizes (RFC 1035 §4.2.1, RFC 6891 §6.2.3-§6.2.5): without EDNS a UDP reply is at most 512
octets; with it, the client's payload size, counted as 512 when smaller and capped at 1232, the
size DNS Flag Day 2020 chose so that no reply needs IP fragmentation. A larger reply is sent
truncated (RFC 2181 §9): TC set, the question and the OPT record only, and the client retries
over TCP (65535 octets at most, RFC 1035 §4.2.2).

The question types this resolver does not serve: answered NOTIMP with EDE 21 (Not Supported,
RFC 8914 §4.22), never resolved and never answered from a cache.

* ANY: RFC 8482 lets a server decline it; MAILA, MAILB: obsolete (RFC 883);
* AXFR, IXFR: zone transfers are not a resolver's to give;
* OPT, TSIG, TKEY: meaningful only inside a message (RFC 6891, RFC 8945, RFC 2930);
* RRSIG: RRSIGs carry no signature of their own (RFC 4034 §3), so an answer of RRSIGs alone
  can be neither Secure nor proven Insecure, and this resolver never gives a client
  indeterminate data. Asked for the covered type with DO, the same RRSIGs arrive with the
  data they sign, and are validated.
"""

import dns.rdatatype

#: The most a UDP reply ever is, and the payload size we announce, to clients and upstream.
EDNS_PAYLOAD = 1232
#: A UDP reply's limit without EDNS, and the least an EDNS payload size counts as.
MIN_UDP = 512
#: The largest DNS message, whatever the transport: over TCP its length is a two-octet prefix
#: (RFC 1035 §4.2.2); a UDP datagram read upstream is never larger.
MAX_MESSAGE = 65535

NOT_SERVED = frozenset((dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR,
                        dns.rdatatype.MAILA, dns.rdatatype.MAILB, dns.rdatatype.OPT,
                        dns.rdatatype.TSIG, dns.rdatatype.TKEY, dns.rdatatype.RRSIG))


def udp_limit(payload: int | None) -> int:
    """The most a UDP reply may be, given the query's EDNS payload size (None without EDNS)."""
    if payload is None:
        return MIN_UDP
    return max(MIN_UDP, min(payload, EDNS_PAYLOAD))
