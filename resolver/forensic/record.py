"""The forensic record's fields (issues #4, #5, #16): the one table of what a record holds, which
both encoders follow. The full path builds a record as a dict (:func:`arrival`, :func:`reply`,
:func:`finish`) and ``seal`` encodes it; a cache hit's record is the answer's record encoded
once (``hit_template``) with holes the compiled hit path fills per query (``Chain.append_hit``),
each hole filled as its field's ``fill`` says. Both give the same bytes (property-tested).

Each field is set at one step of a query: on ``arrival``, with the ``reply``, when ``logged``
(the record is handed to the log) or ``sealed`` (the log adds the chain fields, and
``encode_error`` when a value could not be encoded; see :mod:`resolver.forensic.seal`).
Times are RFC 3339 (§5.6) UTC with microseconds; the encoding is canonical JSON (RFC 8259,
keys sorted, no whitespace), as README states byte by byte.
"""

from __future__ import annotations

import base64
import functools
import time
from typing import Any, NamedTuple

import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.RRSIG
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.txtbase

# The record's name and type texts, as the proofs' (a qname, an answer's name and type).
from resolver.dnssec.canonical import name_text
from resolver.dnssec.validator import type_text
from resolver.forensic._fastlog import (FILL_ADDRESS, FILL_ELAPSED, FILL_FLAGS, FILL_HASH,
                                        FILL_ID, FILL_LISTENER, FILL_MAC, FILL_PORT, FILL_PREV,
                                        FILL_SEQ, FILL_STARTED, FILL_TRANSPORT, rfc3339)

__all__ = ["CHAIN", "CHANGE_FIELDS", "EVENT", "EVENT_FIELDS", "FIELDS", "POLICY_CHANGE", "QUERY",
           "STORED", "Field", "arrival", "event", "finish", "flags", "name_text", "policy_change",
           "rcode_text", "rdata_text", "rdata_texts", "reply", "type_text"]

#: Where a field's value comes from: the query (a hole of a hit's template, filled per query);
#: the stored answer's record (a hit repeats it, or the field's ``hit`` value); the log's chain;
#: an event of the zones' posture (an event record, :data:`EVENT_FIELDS`).
QUERY, STORED, CHAIN, EVENT = "query", "stored", "chain", "event"


class Field(NamedTuple):
    """One field of the record: its JSON ``shape``, ``source`` and ``step`` (see the module
    docstring), what it says, and for the hit path either ``fill`` (a hole: what the compiled
    code writes there, a ``_fastlog.FILL_*`` code, or a dict of them for an object's members)
    or ``hit`` (a stored field whose value on a cache hit is this, not the stored one); ``always``
    False for a field only some records have (``pin``, ``encode_error``). (A query that cannot be
    parsed has a shorter record: its reply step gives only id, qname, qtype, policy and rcode,
    and service, ede, verdict and proof when the server failed on it; resolver.frontend.)"""

    name: str
    shape: str
    source: str
    step: str
    text: str
    fill: int | dict[str, int] | None = None
    hit: Any = None
    always: bool = True


FIELDS: tuple[Field, ...] = (
    Field("time", "string", QUERY, "arrival",
          "arrival, RFC 3339 UTC with microseconds, e.g. 2026-06-01T00:00:00.123456Z",
          fill=FILL_STARTED),
    Field("worker", "int | null", STORED, "arrival",
          "the serving process's index (config workers); null with one process"),
    Field("client", "{address: string, port: int}", QUERY, "arrival",
          "the querying client", fill={"address": FILL_ADDRESS, "port": FILL_PORT}),
    Field("transport", '"udp" | "tcp"', QUERY, "arrival", "how the query came",
          fill=FILL_TRANSPORT),
    Field("listener", "string", QUERY, "arrival",
          'the address the query arrived on, e.g. "127.0.0.1:53"', fill=FILL_LISTENER),
    Field("service", "string | null", STORED, "reply",
          "the service the client was matched to (null without policy)"),
    Field("id", "int", QUERY, "reply", "the DNS message id", fill=FILL_ID),
    Field("qname", "string | null", STORED, "reply", "the question's name (null if none)"),
    Field("qtype", "string | null", STORED, "reply", "the question's type (null if none)"),
    Field("flags", "{rd, do, cd, ad: bool}", QUERY, "reply",
          "the query's flags as the client sent them, not the reply's (whether the reply had "
          "AD follows from verdict and the query's DO and AD)", fill=FILL_FLAGS),
    Field("policy", '{decision: "allow" | "refuse" | "malformed" | "error", rule, reason}',
          STORED, "reply",
          'the policy decision; "error" is a query the server failed on (SERVFAIL, EDE 0), '
          "the reason its exception"),
    Field("cache_hit", "bool", STORED, "reply", "answered from the cache", hit=True),
    Field("stale", "bool", STORED, "reply",
          "answered with expired data (serve-stale, RFC 8767; EDE 3 or 19, TTL 30); a stale "
          "answer is never kept for the hit path", hit=False),
    Field("upstream", "[string]", STORED, "reply", "the servers asked", hit=[]),
    Field("rcode", "string", STORED, "reply", "the reply's RCODE"),
    Field("ede", "{code: int, text: string} | null", STORED, "reply",
          "the reply's Extended DNS Error (RFC 8914)"),
    Field("answer", "[{name, type, ttl, rdata: [string]}]", STORED, "reply",
          "the answer section"),
    Field("verdict", '"secure" | "insecure" | "bogus" | "indeterminate" | null', STORED,
          "reply", "null if refused or not resolved (an error, a query over a limit of "
          "resolver.frontend.admission)"),
    Field("proof", "{zones, keys, signatures: [{owner, type, signer, key_tag, algorithm, "
          "inception, expiration}], denial, synthesised: [string]} | null", STORED, "reply",
          "what a verdict on validated data rests on, else null; synthesised names the NSEC "
          'or NSEC3 records ("owner type") kept from earlier answers that proved this one '
          "with no server asked (RFC 8198, cache.aggressive_nsec), [] for an answer fetched"),
    Field("pin", "{added: [{address, timeout}], error: string | null}", STORED, "reply",
          "only for a service with services[].pin and an answer with addresses: those "
          "committed to the service's nftables sets before the reply left, each with its "
          "timeout in seconds (TTL + grace), or the error that made the answer SERVFAIL (EDE "
          "14); a pinned service's answers never take the hit path", always=False),
    Field("duration_ms", "number", QUERY, "logged",
          "time from the query's arrival to the record, in ms to 3 decimals",
          fill=FILL_ELAPSED),
    Field("seq", "int", CHAIN, "sealed",
          "0 for the first record of a fresh chain, +1 per record, continuing across restarts "
          "and rotated files", fill=FILL_SEQ),
    Field("prev", "string", CHAIN, "sealed",
          "the hash of the record before; GENESIS (64 zeros) for seq 0, and for a rotated "
          "file's first record the last hash of the file before", fill=FILL_PREV),
    Field("mac", '"sha256" | "hmac-sha256"', CHAIN, "sealed",
          "hmac-sha256 when an HMAC key is configured (a verifier without the key then knows "
          "it cannot check the chain)", fill=FILL_MAC),
    Field("hash", "string", CHAIN, "sealed",
          "hex SHA-256, or HMAC-SHA-256 (RFC 2104) under the key, of the record's canonical "
          "encoding without hash (so it covers prev, chaining the records)", fill=FILL_HASH),
    Field("encode_error", "string", CHAIN, "sealed",
          "only on a record with a value JSON cannot carry (stringified): what was wrong",
          always=False),
)

#: An event record (issue #18, resolver.monitor): a change in the DNSSEC posture of an expected
#: zone, in the same chain as the replies' records and told apart by its ``event`` field, which
#: no reply's record has. ``verify-log`` checks its chain like any record's.
EVENT_FIELDS: tuple[Field, ...] = (
    Field("time", "string", EVENT, "event", "when it was seen, RFC 3339 UTC with microseconds"),
    Field("worker", "int | null", EVENT, "event", "as in a reply's record"),
    Field("event", "string", EVENT, "event",
          "became_insecure, became_bogus, dnskey_changed, ds_changed, algorithm_changed, "
          "nsec3_changed, signatures_expiring, answer_unexpected, canary_resolved, zone_seen "
          "(resolver.monitor.events.KINDS)"),
    Field("zone", "string", EVENT, "event", "the zone it is about (a canary's name)"),
    Field("detail", "object", EVENT, "event",
          "what changed: added and removed key tags or DS, the states before and after, the "
          "expiry, the refused answer"),
    Field("posture", "{state, ds, dnskey, denial, expiry, serial, checked} | null", EVENT,
          "event", "the zone's posture after the event (resolver.monitor.posture)"),
) + tuple(f for f in FIELDS if f.source == CHAIN)


def event(seconds: float, worker: int | None, kind: str, zone: str, detail: dict,
          posture: dict | None) -> dict:
    """An event record's fields but the chain's (:data:`EVENT_FIELDS`)."""
    return {"time": rfc3339(seconds), "worker": worker, "event": kind, "zone": zone,
            "detail": detail, "posture": posture}


#: ``event`` of a policy change's record (issue #17). A query's record has no ``event`` field:
#: old logs, and readers that know only queries, are unchanged; ``verify-log`` checks both
#: kinds alike (the chain fields).
POLICY_CHANGE = "policy_change"

#: The record of a runtime policy change (resolver.ops.policystore), in the same chain as the
#: queries' and sealed the same way (the chain fields of :data:`FIELDS` are added), before the
#: change takes effect.
CHANGE_FIELDS: tuple[Field, ...] = (
    Field("time", "string", QUERY, "arrival", "when the change was applied, RFC 3339 UTC"),
    Field("worker", "int | null", STORED, "arrival", "as a query's"),
    Field("event", f'"{POLICY_CHANGE}"', STORED, "reply", "the kind of record"),
    Field("action", '"put" | "delete" | "reload"', STORED, "reply",
          "a service created or replaced, deleted (through the API), or the services replaced "
          "by a reload of the configuration file"),
    Field("service", "string", STORED, "reply", "the service changed"),
    Field("by", "{uid: int, pid: int} | {token: string, address: string} | {reload: string}",
          STORED, "reply", "who: the API's unix socket peer (SO_PEERCRED), the name of the "
          "Bearer token used over TCP, or what started the reload"),
    Field("old_generation", "int | null", STORED, "reply",
          "the service's generation before (null: it did not exist)"),
    Field("new_generation", "int | null", STORED, "reply",
          "its generation after (null: deleted)"),
    Field("before", "object | null", STORED, "reply",
          "the service before, in the form of its YAML (null: it did not exist)"),
    Field("after", "object | null", STORED, "reply", "the service after (null: deleted)"),
)


def policy_change(seconds: float, worker: int | None, action: str, service: str, by: dict,
                  old_generation: int | None, new_generation: int | None,
                  before: dict | None, after: dict | None) -> dict:
    """The record of one policy change (:data:`CHANGE_FIELDS`)."""
    return {"time": rfc3339(seconds), "worker": worker, "event": POLICY_CHANGE,
            "action": action, "service": service, "by": by, "old_generation": old_generation,
            "new_generation": new_generation, "before": before, "after": after}


def arrival(seconds: float, worker: int | None, client: tuple[str, int], transport: str,
            listener: str) -> dict:
    """A record's first fields, as a query arrives at ``seconds`` (time.time)."""
    return {"time": rfc3339(seconds), "worker": worker,
            "client": {"address": client[0], "port": client[1]},
            "transport": transport, "listener": listener}


_REPLY = frozenset(f.name for f in FIELDS if f.step == "reply" and f.always)
_SOMETIMES = frozenset(f.name for f in FIELDS if f.step == "reply" and not f.always)


def reply(record: dict, **values: Any) -> None:
    """Set the fields a reply gives: every one (a TypeError names those missing or unknown);
    a field only some records have is left out when its value is None."""
    keys = values.keys() - _SOMETIMES
    if keys != _REPLY:
        raise TypeError(f"a record's reply fields are {sorted(_REPLY)}; missing "
                        f"{sorted(_REPLY - keys)}, unknown {sorted(keys - _REPLY)}")
    record.update(values)
    for key in _SOMETIMES:  # a field or two: cheaper than filtering every value
        if key in values and values[key] is None:
            del record[key]


def finish(record: dict, seconds: float) -> None:
    """The record is handed to the log ``seconds`` after its query arrived."""
    record["duration_ms"] = round(seconds * 1000, 3)


def flags(rd: bool, do: bool, cd: bool, ad: bool) -> dict:
    """The ``flags`` field: the query's RD, DO, CD and AD bits."""
    return {"rd": rd, "do": do, "cd": cd, "ad": ad}


@functools.lru_cache(maxsize=64)
def rcode_text(rcode: int) -> str:
    """The ``rcode`` string: ``dns.rcode.to_text``, kept."""
    return dns.rcode.to_text(rcode)


#: The octets a character-string shows as themselves in presentation form (RFC 1035 §5.1):
#: printable ASCII but the quote and the backslash.
_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


def rdata_texts(rrset) -> list[str]:
    """An ``answer[].rdata`` list: :func:`rdata_text` of each record; an RRset of TXT-like
    records with nothing to escape is written in one pass (issue #20's hostile zone: a
    near-64 KiB answer of 228 TXT records)."""
    if rrset.rdtype in _TXT_TYPES and not b"".join(
            [b"".join(rdata.strings) for rdata in rrset]).translate(None, _PLAIN):
        return [_quoted(rdata.strings) for rdata in rrset]
    return [rdata_text(rdata) for rdata in rrset]


def rdata_text(rdata) -> str:
    """One ``answer[].rdata`` string: ``rdata.to_text()``, written here for the types every
    answer has: an address is its text; an RRSIG's fields as dnspython writes them (its
    signature in base64, in words of 32 characters); a TXT-like RDATA whose strings need no
    escape in C string operations (dnspython escapes octet by octet in Python, about 6 ms for a
    near-64 KiB answer of TXT records: issue #20's hostile zone)."""
    kind = type(rdata)
    if kind in _ADDRESSES:
        return rdata.address
    if kind is _RRSIG:
        b64 = base64.b64encode(rdata.signature)
        words = b" ".join([b64[i:i + 32] for i in range(0, len(b64), 32)]).decode()
        return (f"{type_text(rdata.type_covered)} {rdata.algorithm} {rdata.labels} "
                f"{rdata.original_ttl} {_sigtime(rdata.expiration)} {_sigtime(rdata.inception)} "
                f"{rdata.key_tag} {name_text(rdata.signer)} {words}")
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        strings = rdata.strings
        if not b"".join(strings).translate(None, _PLAIN):
            return _quoted(strings)
    return rdata.to_text()


_ADDRESSES = (dns.rdtypes.IN.A.A, dns.rdtypes.IN.AAAA.AAAA)
_TXT_TYPES = frozenset((dns.rdatatype.TXT, dns.rdatatype.SPF))  # TXTBase's RDATA
_RRSIG = dns.rdtypes.ANY.RRSIG.RRSIG


def _quoted(strings: tuple[bytes, ...]) -> str:
    """TXT strings with nothing to escape in presentation form (RFC 1035 §5.1)."""
    return (b'"' + b'" "'.join(strings) + b'"').decode("ascii")


@functools.lru_cache(maxsize=1024)
def _sigtime(seconds: int) -> str:
    """An RRSIG time's text (RFC 4034 §3.2: YYYYMMDDHHmmSS, UTC), kept: a zone's signatures
    share their inception and expiration (0.8 us each written, 0.1 us kept)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(seconds))
