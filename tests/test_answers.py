"""Replies rendered by resolver.frontend._render are the bytes dnspython renders (issue #20):
every RRset of the test tree, the replies to the tree's scenario queries, refusals with an
EDE, mixed-case questions, names past the last offset a pointer reaches, and truncation at the
client's payload size with TC (RFC 1035 §4.1.1, RFC 2181 §9, RFC 6891 §6.2.3-§6.2.5). The
reference is the dnspython message the frontend built before (``make_response``, ``use_edns``
with the EDE option), rendered by ``Message.to_wire``; records are compared in order
(``want_shuffle=False`` and ``shuffle=False``) byte for byte, and shuffled, parsed back."""

from __future__ import annotations

import asyncio

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from resolver.ede import EDE
from resolver.forensic import record as fields
from resolver.frontend.admission import Admission
from resolver.frontend.answers import Reply, _least_size, build_answer, refuse, to_wire
from resolver.frontend._render import render
from resolver.frontend.resolution import Resolver
from resolver.resolve.cache import Cache
from resolver.wire import EDNS_PAYLOAD, MAX_MESSAGE, udp_limit
from tests.testtree import authority, memory, zonedata


def _reference(reply: Reply, truncated: bool = False) -> dns.message.Message:
    """The reply as the frontend built it with dnspython before issue #20."""
    query = reply.query
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.flags |= dns.flags.RA | (query.flags & dns.flags.CD)
    response.set_rcode(reply.rcode)
    if query.edns >= 0:
        options = [dns.edns.EDEOption(*reply.ede)] if reply.ede and not truncated else []
        response.use_edns(0, query.ednsflags & dns.flags.DO, EDNS_PAYLOAD, options=options)
    if reply.ad:
        response.flags |= dns.flags.AD
    if truncated:
        response.flags |= dns.flags.TC
    else:
        response.answer, response.authority = list(reply.answer), list(reply.authority)
    return response


def _reference_wire(reply: Reply, max_size: int | None) -> bytes:
    """The bytes the frontend sent before: dnspython's, or its truncated reply."""
    response = _reference(reply)
    if max_size is None:
        return response.to_wire(max_size=MAX_MESSAGE, want_shuffle=False)
    limit = udp_limit(reply.query.payload if reply.query.edns >= 0 else None)
    try:
        return response.to_wire(max_size=limit, want_shuffle=False)
    except dns.exception.TooBig:
        return _reference(reply, truncated=True).to_wire(max_size=limit)


def _ours(reply: Reply, limit: int = MAX_MESSAGE) -> bytes | None:
    """The renderer, records in order, with the OPT to_wire gives."""
    from resolver.frontend.answers import _flags, _opt
    return render(reply.query.id, _flags(reply), reply.query.question, reply.answer,
                  reply.authority, _opt(reply.edns, reply.rcode, reply.ede), limit, False)


def _zone_rrsets() -> list[dns.rrset.RRset]:
    rrsets = []
    for name in authority._all_zones():  # the scenarios' hostile zones too
        for owner, node in zonedata.load(name).zone.nodes.items():
            for rdataset in node.rdatasets:
                rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype,
                                        rdataset.covers)
                rrset.update(rdataset)
                rrsets.append(rrset)
    return rrsets


def test_every_rrset_of_the_tree_renders_as_dnspython_renders_it():
    """Every type the tree holds (A, AAAA, NS, SOA, CNAME, DNAME, MX, TXT, DS, DNSKEY, RRSIG,
    NSEC, NSEC3, NSEC3PARAM, SRV, ...), eight RRsets a message so that names compress
    against each other, in both sections."""
    rrsets = _zone_rrsets()
    types = {r.rdtype for r in rrsets}
    assert {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.SOA,
            dns.rdatatype.DNSKEY, dns.rdatatype.TXT, dns.rdatatype.CNAME} <= types
    query = dns.message.make_query("www.rsasha256.example.", "A", want_dnssec=True)
    compared = 0
    for i in range(0, len(rrsets), 8):
        reply = Reply(query, dns.rcode.NOERROR, rrsets[i:i + 4], rrsets[i + 4:i + 8], ad=True)
        try:
            expected = _reference(reply).to_wire(max_size=MAX_MESSAGE, want_shuffle=False)
        except dns.exception.TooBig:  # the near-64 KiB TXT RRset with others
            assert _ours(reply) is None
            continue
        assert _ours(reply) == expected, [(r.name, r.rdtype) for r in rrsets[i:i + 8]]
        compared += 1
    assert compared > 100


def _scenario_replies():
    """The reply to each of the tree's scenario queries, resolved in memory (the hostile
    servers with their zones' data, without their other tricks), with DO and without."""
    hostile = {address: authority.Responder([zonedata.load(z) for z in server["zones"]])
               for address, server in zonedata.manifest()["servers"].items()
               if server["role"] == "hostile"}

    async def run():
        resolver = Resolver(memory.settings(), Cache(), Admission(100, 10, False, 10),
                            exchange=memory.Upstream(extra={
                                address: lambda q, r=responder: r.respond(q)[0]
                                for address, responder in hostile.items()}))
        replies = []
        for scenario in zonedata.manifest()["scenarios"]:
            outcome = await resolver._resolve(dns.name.from_text(scenario["qname"]),
                                              dns.rdatatype.from_text(scenario["qtype"]), None)
            for do in (True, False):
                query = dns.message.make_query(scenario["qname"], scenario["qtype"],
                                               want_dnssec=do)
                replies.append((scenario["name"], build_answer(query, outcome)))
        return replies
    return asyncio.run(run())


def test_the_scenario_replies_are_dnspython_s_bytes_over_tcp_and_udp():
    replies = _scenario_replies()
    assert any(r.ede for _, r in replies) and any(r.ad for _, r in replies)
    assert any(r.authority for _, r in replies) and any(r.answer for _, r in replies)
    for name, reply in replies:
        for max_size in (None, 512, EDNS_PAYLOAD):
            ours = _ours(reply) if max_size is None else None
            if max_size is not None:
                limit = udp_limit(reply.query.payload)
                ours = _ours(reply, limit)
                if ours is None:  # truncated: to_wire's own reply (no records to shuffle)
                    ours = to_wire(reply, max_size)
            assert ours == _reference_wire(reply, max_size), (name, max_size)


def test_shuffled_replies_parse_back_as_dnspython_s():
    """The records of an RRset go out in random order, as dnspython sends them."""
    rrset = dns.rrset.from_text_list("www.example.", 300, "IN", "A",
                                     [f"192.0.2.{i}" for i in range(1, 7)])
    query = dns.message.make_query("www.example.", "A", use_edns=0)
    reply = Reply(query, dns.rcode.NOERROR, [rrset])
    expected = dns.message.from_wire(_reference(reply).to_wire())
    orders = set()
    for _ in range(50):
        ours = dns.message.from_wire(to_wire(reply, None))
        assert ours == expected
        orders.add(tuple(str(rd) for rd in dns.message.from_wire(
            to_wire(reply, None)).answer[0]))
    assert len(orders) > 1


def test_a_mixed_case_question_compresses_as_dnspython_does():
    """Owners point at the question's name whatever its case (0x20 queries)."""
    query = dns.message.make_query("WwW.RsaSha256.Example.", "CNAME", want_dnssec=True)
    answer = [dns.rrset.from_text("www.rsasha256.example.", 60, "IN", "CNAME",
                                  "Other.RSASHA256.example."),
              dns.rrset.from_text("other.rsasha256.example.", 60, "IN", "MX",
                                  "10 mail.rsasha256.example.")]
    authority = [dns.rrset.from_text("rsasha256.example.", 60, "IN", "SOA",
                                     "ns.rsasha256.example. host.RSASHA256.example. 1 2 3 4 5")]
    reply = Reply(query, dns.rcode.NOERROR, answer, authority)
    assert _ours(reply) == _reference(reply).to_wire(want_shuffle=False)


def test_names_past_the_last_pointer_offset_are_written_whole_as_dnspython_does():
    """A TCP reply over 0x3FFF octets: names first written there cannot be pointed at."""
    query = dns.message.make_query("big.example.", "NS")
    ns = dns.rrset.from_text_list("big.example.", 60, "IN", "NS",
                                  [f"ns{i}.host{i}.example." for i in range(1000)])
    reply = Reply(query, dns.rcode.NOERROR, [ns])
    ours = _ours(reply)
    assert len(ours) > 0x3FFF
    assert ours == _reference(reply).to_wire(max_size=MAX_MESSAGE, want_shuffle=False)


@pytest.mark.parametrize("edns", [None, 512, 1232, 4096])
def test_truncation_at_the_client_s_payload_size(edns):
    """A reply of exactly the limit is sent whole; one octet more and it is cut to header,
    question and OPT with TC, AD and the RCODE kept, the EDE left out (RFC 2181 §9)."""
    kwargs = {"use_edns": False} if edns is None else {"use_edns": 0, "payload": edns,
                                                        "want_dnssec": True}
    query = dns.message.make_query("t.example.", "TXT", **kwargs)
    limit = udp_limit(None if edns is None else edns)
    base = Reply(query, dns.rcode.NOERROR, [dns.rrset.from_text(
        "t.example.", 60, "IN", "TXT", '""')], ad=True)
    if edns is not None:
        base.ede = (int(EDE.OTHER), "why")
    size = len(to_wire(base, limit))
    for extra in (limit - size, limit - size + 1):
        rdata = 1 + extra  # octets: strings of 255 characters (256 octets each), then the rest
        strings = ["x" * 255] * ((rdata - 1) // 256) + ["x" * ((rdata - 1) % 256)]
        reply = Reply(query, dns.rcode.NOERROR, [dns.rrset.from_text(
            "t.example.", 60, "IN", "TXT", " ".join(f'"{s}"' for s in strings))],
            ad=True, ede=base.ede)
        wire = to_wire(reply, limit)
        assert wire == _reference_wire(reply, limit)
        message = dns.message.from_wire(wire)
        assert len(wire) <= limit and message.flags & dns.flags.AD
        if extra == limit - size:
            assert len(wire) == limit and not message.flags & dns.flags.TC
        else:
            assert message.flags & dns.flags.TC and not message.answer
            assert not message.options and message.question == query.question
        assert (message.edns >= 0) == (edns is not None)


def test_a_reply_over_65535_octets_is_no_tcp_reply():
    query = dns.message.make_query("txt.example.", "TXT")
    txt = dns.rrset.from_text_list("txt.example.", 60, "IN", "TXT",
                                   [f'"{i:04d} {"y" * 250}"' for i in range(260)])
    with pytest.raises(dns.exception.TooBig):
        to_wire(Reply(query, dns.rcode.NOERROR, [txt]), None)


def test_a_refusal_carries_its_ede_only_with_edns():
    """EDE text cut at 400 characters (UTF-8 on the wire), opcode, RD and CD repeated."""
    query = dns.message.make_query("x.example.", "A", want_dnssec=True, use_edns=0)
    query.flags |= dns.flags.CD
    query.set_opcode(dns.opcode.QUERY)
    reply = refuse(query, dns.rcode.REFUSED, EDE.PROHIBITED, "é" * 500)
    wire = to_wire(reply, EDNS_PAYLOAD)
    assert wire == _reference_wire(reply, EDNS_PAYLOAD)
    (option,) = dns.message.from_wire(wire).options
    assert option.code == EDE.PROHIBITED and option.text == "é" * 400
    plain = dns.message.make_query("x.example.", "A")
    reply = refuse(plain, dns.rcode.REFUSED, EDE.PROHIBITED, "no")
    assert reply.ede is None and to_wire(reply, 512) == _reference_wire(reply, 512)
    other = dns.message.make_query("x.example.", "A")
    other.set_opcode(dns.opcode.NOTIFY)
    reply = refuse(other, dns.rcode.NOTIMP, EDE.NOT_SUPPORTED, "only QUERY")
    assert to_wire(reply, 512) == _reference_wire(reply, 512)


def test_least_size_never_exceeds_the_rendered_size():
    """The UDP path truncates without rendering when the least size is over the limit: that
    bound never exceeds what is rendered, root owners, compression and empty RDATA
    included."""
    query = dns.message.make_query("a.example.", "TXT", want_dnssec=True)
    for owner, count in ((".", 1), ("a.example.", 3), ("a.example.", 228), (".", 40)):
        reply = Reply(query, dns.rcode.NOERROR, [dns.rrset.from_text_list(
            owner, 300, "IN", "TXT", [f'"{i}"' for i in range(count)])],
            [dns.rrset.from_text(".", 300, "IN", "NS", ".")])
        assert _least_size(reply) <= len(to_wire(reply, None)), (owner, count)


def test_record_texts_are_dnspython_s():
    """The record's texts written here (names and TXT strings with nothing to escape,
    addresses, RRSIGs, types, RCODEs) are dnspython's, for every record of the tree."""
    rrsets = _zone_rrsets()
    txt = dns.rrset.from_text_list("t.example.", 60, "IN", "TXT", ['"a" "b"', '"c"', '""'])
    escaped = dns.rrset.from_text_list("t.example.", 60, "IN", "TXT", ['"a"', r'"\255 \""'])
    for rrset in rrsets + [txt, escaped]:
        assert fields.rdata_texts(rrset) == [rdata.to_text() for rdata in rrset], rrset
    sig = next(rd for r in rrsets if r.rdtype == dns.rdatatype.RRSIG for rd in r)
    for length in (0, 1, 23, 24, 25, 48):  # base64 words of 32 characters, the last shorter
        rdata = sig.replace(signature=bytes(range(length)), signer=dns.name.from_text(
            r"a\.b.example."))
        assert fields.rdata_text(rdata) == rdata.to_text()
    names = {r.name for r in rrsets}
    names |= {dns.name.from_text(t) for t in (".", r"a\.b.example.", r"a\032b.c.", "*.x.",
                                              r"x\@y.", r"a\\b.", r"\255.x.", r'q\"q.')}
    for name in names:
        assert fields.name_text(name) == name.to_text()
    for rdtype in (1, 2, 46, 50, 65, 99, 255, 65280, 4711):
        assert fields.type_text(rdtype) == dns.rdatatype.to_text(rdtype)
    for rcode in range(24):
        assert fields.rcode_text(rcode) == dns.rcode.to_text(rcode)


def test_the_record_says_what_the_reply_carries():
    """A full-path record's rcode, ede and answer are those of the bytes sent (dnspython's
    texts of the parsed reply), over the tree's scenarios, with DO and without."""
    from resolver.frontend.pipeline import Frontend

    async def run():
        resolver = Resolver(memory.settings(), Cache(), Admission(100, 10, False, 10),
                            exchange=memory.Upstream())
        frontend = Frontend(resolver, None, None)
        records = []

        async def log(record, started):
            records.append(record)

        frontend._log = log
        checked = 0
        for scenario in zonedata.manifest()["scenarios"]:
            for do in (True, False):
                query = dns.message.make_query(scenario["qname"], scenario["qtype"],
                                               want_dnssec=do)
                wire = await frontend.handle(query.to_wire(), "tcp", ("127.0.0.1", 53),
                                             ("127.0.0.2", 5353), None)
                reply, record = dns.message.from_wire(wire), records[-1]
                assert record["qname"] == query.question[0].name.to_text()
                assert record["qtype"] == scenario["qtype"]
                assert record["flags"] == {"rd": True, "do": do, "cd": False, "ad": False}
                assert record["rcode"] == dns.rcode.to_text(reply.rcode())
                ede = [{"code": int(o.code), "text": o.text} for o in reply.options]
                assert record["ede"] == (ede[0] if ede else None)
                # as records (a looping CNAME chain's reply repeats RRsets; parsing merges them)
                assert {(a["name"], a["type"], a["ttl"], rdata) for a in record["answer"]
                        for rdata in a["rdata"]} == {
                    (r.name.to_text(), dns.rdatatype.to_text(r.rdtype), r.ttl, rd.to_text())
                    for r in reply.answer for rd in r}
                checked += bool(record["answer"])
        return checked

    assert asyncio.run(run()) > 20
