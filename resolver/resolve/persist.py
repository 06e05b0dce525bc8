"""The cache kept across a restart (``cache.persist``): written on SIGTERM, read at start.

Only what may be served again is written: unexpired entries that were validated Secure or
proven Insecure (RFC 4035 §4.3), never Bogus or Indeterminate data, with the TTL left; at most
the MOST entries used last. At
start each entry's TTL is reduced by the wall-clock time since the file was written, its
RRSIGs' validity windows are checked again at the validation time and its TTL capped by
their expiry (RFC 4035 §5.3.1, §5.3.3), and entries past either are dropped. The file names
fingerprints of what the data was judged by (trust anchors, negative trust anchors, validator
settings: a file written under others is not read) and of the policy (forwarders, services:
under another one the entries are kept as a reload keeps them, never served stale). A file
that is missing, truncated, corrupt or not ours is ignored with one line.

The format: one JSON object per line; a header (``format``, ``version``, ``written``,
``trust``, ``policy``), one line per entry, and a trailer with the number of entries and the
SHA-256 of every line before it, so that a truncated or altered file is told at once. It is
written to a temporary file, synced and renamed over the old one."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time

import dns.name
import dns.rdatatype

from resolver.config import Config
from resolver.dnssec import Verdict
from resolver.dnssec.result import Answer, Proof
from resolver.dnssec.verify import WINDOW_OK, check_window
from resolver.ede import EDE
from resolver.resolve.cache import Cache, pack_rrset, unpack_rrset

log = logging.getLogger(__name__)

FORMAT, VERSION = "dnssec-sidecar cache", 1
NO_FILE = "no file yet"
#: The entries kept: those used last. Each costs about 0.5 ms to write and 0.6 ms to read back
#: (dnspython parsing; bench/RESULTS.md), so this bounds both to seconds, within a Kubernetes
#: grace period and a successor's start.
MOST = 10_000
#: What a restart may serve again (RFC 4035 §4.3): never Bogus, never Indeterminate.
KEPT = (Verdict.SECURE, Verdict.INSECURE)


def fingerprint(config: Config) -> tuple[str, str]:
    """Two SHA-256 digests: of what cached verdicts rest on (trust anchors, negative trust
    anchors, validator settings), and of the policy answers are given under (forwarders,
    services). The validation time is in neither: each signature window is checked again at
    load."""
    trust = sorted(rrset.to_text() for rrset in config.trust_anchors)
    trust += [repr(config.negative_trust_anchors), repr(config.validator)]
    policy = [repr(value) for value in (config.forward, config.services,
                                        config.default_service)]
    return tuple(hashlib.sha256("\n".join(parts).encode()).hexdigest()
                 for parts in (trust, policy))


def _entry(name: dns.name.Name, rdtype: int, answer: Answer) -> dict:
    proof = answer.proof
    return {"name": name.to_text(), "type": rdtype, "rcode": answer.rcode,
            "verdict": answer.verdict.value, "ede": None if answer.ede is None else int(answer.ede),
            "reason": answer.reason, "ttl": answer.ttl, "answers": len(answer.rrsets),
            "rrsets": [base64.b64encode(pack_rrset(rrset, name)).decode()
                       for rrset in answer.rrsets + answer.authority],
            "proof": [None if proof.zone is None else proof.zone.to_text(), proof.zones,
                      proof.signatures, proof.denial, proof.notes, proof.synthesised]}


def _answer(data: dict) -> tuple[dns.name.Name, int, Answer]:
    name = dns.name.from_text(data["name"])
    rrsets = [unpack_rrset(base64.b64decode(packed, validate=True), name)
              for packed in data["rrsets"]]
    zone, zones, signatures, denial, notes, synthesised = data["proof"]
    proof = Proof(None if zone is None else dns.name.from_text(zone), list(zones),
                  [tuple(signature) for signature in signatures], denial, list(notes),
                  list(synthesised))
    verdict = Verdict(data["verdict"])
    if verdict not in KEPT:
        raise ValueError(f"an entry judged {verdict.value}")
    answers = data["answers"]
    return name, int(data["type"]), Answer(
        int(data["rcode"]), verdict, rrsets[:answers], rrsets[answers:],
        None if data["ede"] is None else EDE(data["ede"]), str(data["reason"]), proof,
        int(data["ttl"]))


def dump(cache: Cache, print_: tuple[str, str], *, wall=time.time):
    """The file's lines (bytes, each ending in a newline) for the entries of ``cache`` worth
    keeping, made one at a time, so that a large cache is never held twice in memory."""
    digest = hashlib.sha256()
    count = 0
    header = json.dumps({"format": FORMAT, "version": VERSION, "written": wall(),
                         "trust": print_[0], "policy": print_[1]}).encode() + b"\n"
    digest.update(header)
    yield header
    for name, rdtype, answer in cache.fresh(MOST):
        if answer.verdict in KEPT:
            line = json.dumps(_entry(name, rdtype, answer), separators=(",", ":")).encode()
            digest.update(line + b"\n")
            count += 1
            yield line + b"\n"
    yield json.dumps({"end": count, "sha256": digest.hexdigest()}).encode() + b"\n"


def entries(trailer: bytes) -> int:
    """The number of entries a file's last line (from :func:`dump`) says it holds."""
    return json.loads(trailer)["end"]


def save(cache: Cache, path: str, print_: tuple[str, str], *, wall=time.time) -> int:
    """Write the entries of ``cache`` worth keeping to ``path``; the number written."""
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        for line in dump(cache, print_, wall=wall):
            out.write(line)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return entries(line)


def read_file(path: str) -> bytes | str:
    """The bytes of ``path``, or why there are none."""
    try:
        with open(path, "rb") as source:
            return source.read()
    except FileNotFoundError:
        return NO_FILE
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def _read(raw: bytes, print_: tuple[str, str]) -> tuple[float, bool, list[bytes]] | str:
    """The write time of a file's bytes, whether its policy is ours, and its entries' lines;
    or why they are not used."""
    lines = raw.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"":
        return "truncated or not a cache file"
    try:
        header, trailer = json.loads(lines[0]), json.loads(lines[-2])
    except ValueError:
        return "not a cache file"
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return "not a cache file"
    if header.get("version") != VERSION:
        return f"format version {header.get('version')!r}, not {VERSION}"
    body = b"".join(line + b"\n" for line in lines[:-2])
    if (not isinstance(trailer, dict) or trailer.get("end") != len(lines) - 3
            or trailer.get("sha256") != hashlib.sha256(body).hexdigest()):
        return "truncated or corrupt (its digest does not match)"
    if header.get("trust") != print_[0]:
        return "written under other trust anchors or validator settings: not used"
    written = header.get("written")
    if not isinstance(written, (int, float)):
        return "no write time"
    return float(written), header.get("policy") == print_[1], lines[1:-2]


def load(cache: Cache, raw: bytes | str, source: str, print_: tuple[str, str],
         validation_time: int, *, wall=time.time) -> tuple[int, int]:
    """Store the entries of ``raw`` (a file's bytes, or why there are none) from ``source`` in
    ``cache``: (entries kept, entries dropped for their TTL or a signature expired at
    ``validation_time``). Bytes that cannot be used are logged in one line and ignored (a
    fault past the digest check, in an entry, empties ``cache``: a new one at start). Entries
    written under another policy are kept as a reload keeps them: served while fresh,
    never stale (a new cache epoch starts after them, RFC 8767 as resolver.resolve.stale)."""
    found = _read(raw, print_) if isinstance(raw, bytes) else raw
    if isinstance(found, str):
        (log.info if found == NO_FILE else log.warning)(
            "cache.persist: %s: %s; starting with an empty cache", source, found)
        return 0, 0
    written, same_policy, lines = found
    elapsed = max(0.0, wall() - written)  # a clock set back does not lengthen a TTL
    kept = dropped = 0
    try:
        for data in lines:  # one at a time: a large file is never all parsed at once
            name, rdtype, answer = _answer(json.loads(data))
            answer.ttl = _left(answer, int(answer.ttl - elapsed), validation_time)
            if answer.ttl <= 0:
                dropped += 1
                continue
            cache.put(name, rdtype, answer)
            kept += 1
    except Exception as exc:  # noqa: BLE001 - any fault of a file's content: one line, no traceback
        cache.clear()
        log.warning("cache.persist: %s: an entry cannot be read (%s: %s); starting with an "
                    "empty cache", source, type(exc).__name__, exc)
        return 0, 0
    if not same_policy:
        cache.new_epoch()
    return kept, dropped


def _left(answer: Answer, ttl: int, validation_time: int) -> int:
    """``ttl`` capped by the expiry of each of the answer's RRSIGs at ``validation_time``
    (RFC 4035 §5.3.3); 0 when one is outside its validity window (§5.3.1)."""
    for rrset in answer.rrsets + answer.authority:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            for rdata in rrset:
                if check_window(rdata.inception, rdata.expiration, validation_time) != WINDOW_OK:
                    return 0
                ttl = min(ttl, rdata.expiration - validation_time)
    return ttl
