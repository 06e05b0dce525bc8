"""atheris harness: a client packet through the query parser and the hit path
(``_fastcache.parse_query``, ``WireCache.store``/``answer``), ``header_only``, dnspython's
parser, and the front end's ``fast`` path, which must never raise.

    python fuzz/fuzz_query.py CORPUS_DIR -max_total_time=600
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["dns", "resolver"]):
    import dns.exception
    import dns.message
    import dns.rcode

    from resolver.resolve._fastcache import WireCache, parse_query
    from resolver.frontend.answers import header_only

from fuzz.tree import frontend

CACHE = WireCache(64)
FRONTEND = frontend()
QUERY = dns.message.make_query("www.rsasha256.example.", "A", want_dnssec=True).to_wire()


def one_input(data: bytes) -> None:
    """``data`` as a query, and as a response stored for a seed query."""
    parsed = parse_query(data)
    reply = header_only(data, dns.rcode.FORMERR)
    assert reply is None or len(reply) == 12
    try:
        message = dns.message.from_wire(data)
    except dns.exception.DNSException:
        message = None
    if parsed is not None:
        assert message is not None and len(message.question) == 1
    if CACHE.store(QUERY, "", data, 1000.0, 60):
        answered = CACHE.answer(QUERY, "", 1010.0, 65535)
        assert answered is not None and len(answered) == len(data)
    CACHE.store(data, "", QUERY, 1000.0, 60)
    CACHE.answer(data, "", 1001.0)
    FRONTEND.fast(data, "udp", ("127.0.0.80", 53), ("127.0.0.1", 1))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
