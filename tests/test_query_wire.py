"""Upstream queries (resolver.resolve.transport.Query), rendered directly from the name's wire
form, are byte for byte what dnspython's renderer makes of the same message (RFC 1035 §4.1,
RFC 6891 §6.1.2): EDNS0 with DO and our payload size (RFC 3225), RD and CD to forwarders
(RFC 6840 §5.9); and a reply's question is matched on its raw bytes, case aside (RFC 5452
§9.1)."""

import os
import random

import dns.flags
import dns.message
import dns.name
import pytest

from resolver import wire
from resolver.resolve import transport


@pytest.mark.parametrize("name", [".", "Rsasha256.Example.", "a.b.c.d.e.f.", "x" * 63 + ".com."])
@pytest.mark.parametrize("rdtype", [1, 28, 43, 48, 255, 65535])
@pytest.mark.parametrize("recursion", [False, True])
def test_queries_render_like_dnspython(name, rdtype, recursion):
    query = transport.make_query(dns.name.from_text(name), rdtype, recursion=recursion)
    expected = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True,
                                      payload=wire.EDNS_PAYLOAD)
    expected.id = query.id
    expected.flags = dns.flags.RD | dns.flags.CD if recursion else 0
    assert query.to_wire() == expected.to_wire()
    assert query.message() == expected


def test_every_query_has_a_fresh_id():
    name = dns.name.from_text("www.example.")
    ids = {transport.make_query(name, 1).id for _ in range(200)}
    assert len(ids) > 190  # 200 draws of 16 random bits: a handful of collisions at most


def test_a_forked_child_draws_ids_of_its_own():
    transport.fresh_id()  # IDs drawn ahead in this process
    parent, child = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(child, bytes(transport._IDS))  # what the child holds right after the fork
        os._exit(0)
    os.close(child)
    with os.fdopen(parent, "rb") as reading:
        held = reading.read()
    os.waitpid(pid, 0)
    assert held == b"" and len(transport._IDS) > 0


def _reply(query: transport.Query, name: str | None = None, rdtype: int | None = None,
           qid: int | None = None, flags: int = dns.flags.QR) -> bytes:
    reply = dns.message.make_query(name or query.qname, rdtype or query.rdtype)
    reply.id = query.id if qid is None else qid
    reply.flags = flags
    return reply.to_wire()


def test_replies_are_matched_on_id_header_and_question_case_aside():
    query = transport.make_query(dns.name.from_text("www.Example."), 1)
    for name in ("www.example.", "WWW.EXAMPLE.", "www.Example."):
        reply, reason = transport._check(query, _reply(query, name))
        assert reason == "" and reply.question[0].name == query.qname
    assert transport._check(query, _reply(query, qid=query.id ^ 1)) == (None, "id")
    assert transport._check(query, _reply(query, flags=0)) == (None, "not_reply")
    assert transport._check(query, _reply(query, flags=dns.flags.QR | 0x2800)) == \
        (None, "not_reply")  # opcode UPDATE
    assert transport._check(query, _reply(query, "www.example.net.")) == (None, "question")
    assert transport._check(query, _reply(query, "ww.example.")) == (None, "question")  # shorter
    assert transport._check(query, _reply(query, rdtype=28)) == (None, "question")
    good = _reply(query)
    assert transport._check(query, good[:4] + b"\x00\x02" + good[6:]) == (None, "question")
    assert transport._check(query, good[:20]) == (None, "unparseable")  # cut in the question
    assert transport._check(query, good[:-1]) == (None, "unparseable")  # cut after it
    assert transport._check(query, good[:11]) == (None, "id")


def test_only_the_name_is_matched_case_aside_never_the_type_or_class():
    """QTYPE 65 (HTTPS) is the octets 00 41, an upper-case "A": a reply to QTYPE 97 (00 61,
    "a") is another question, and so is one of class 0x0041 against 0x0061."""
    query = transport.make_query(dns.name.from_text("www.example."), 65)
    assert transport._check(query, _reply(query))[1] == ""
    assert transport._check(query, _reply(query, rdtype=97)) == (None, "question")
    reply = bytearray(_reply(query))
    question_end = 12 + len(query.question_wire)
    reply[question_end - 2:question_end] = b"\x00\x41"  # the class: 65 in place of IN
    other = transport.Query(query.qname, 65, 0)
    other.id, other.question_wire = query.id, query.question_wire[:-2] + b"\x00\x61"
    other.match = transport.fold(other.question_wire)
    assert transport._check(other, bytes(reply)) == (None, "question")


def test_fold_lowers_the_name_alone_and_ascii_only():
    """Every octet before QTYPE and QCLASS as bytes.lower() reads it (A-Z only, RFC 4343 §3),
    the last four as they are, whatever the octets."""
    rng = random.Random(7)
    for size in [*range(9), 50, 255, 259]:
        for _ in range(50):
            question = bytes(rng.randrange(256) for _ in range(size))
            assert transport.fold(question) == question[:-4].lower() + question[-4:]
