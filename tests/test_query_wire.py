"""Upstream queries rendered directly (resolver.resolve.transport._wire) are byte for byte what
dnspython's renderer makes of them (RFC 1035 §4.1, RFC 6891 §6.1.2)."""

import dns.edns
import dns.message
import dns.name
import pytest

from resolver import wire
from resolver.resolve import transport


@pytest.mark.parametrize("name", [".", "Rsasha256.Example.", "a.b.c.d.e.f.", "x" * 63 + ".com."])
@pytest.mark.parametrize("rdtype", [1, 43, 48, 255, 65535])
@pytest.mark.parametrize("recursion", [False, True])
def test_made_queries_render_like_dnspython(name, rdtype, recursion):
    query = transport.make_query(dns.name.from_text(name), rdtype, recursion=recursion)
    assert transport._wire(query) == query.to_wire()


@pytest.mark.parametrize("query", [
    dns.message.make_query("example.", "A"),  # no EDNS
    dns.message.make_query("example.", "A", use_edns=0,
                           options=[dns.edns.ECSOption("192.0.2.0", 24)]),
])
def test_other_queries_use_dnspython(query):
    assert transport._wire(query) == query.to_wire()


@pytest.mark.parametrize("recursion", [False, True])
def test_made_queries_are_dnspythons_with_do_and_our_flags(recursion):
    """EDNS0 with DO and a 1232-octet payload (RFC 6891, RFC 3225); RD and CD to forwarders."""
    query = transport.make_query(dns.name.from_text("www.example."), 28, recursion=recursion)
    expected = dns.message.make_query("www.example.", "AAAA", use_edns=0, want_dnssec=True,
                                      payload=wire.EDNS_PAYLOAD)
    expected.id, expected.flags = query.id, (0x0110 if recursion else 0)  # RD | CD
    assert query.to_wire() == expected.to_wire()
