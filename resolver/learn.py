"""``dnssec-sidecar learn LOG... --service S`` (issue #17): an allow list written from what a
service resolved, typically run in ``mode: observe`` first.

From the forensic log's query records of the service whose answer was resolved and validated
(Secure or Insecure; refused, failed and bogus queries teach nothing), every name of the answer
(the question, the owners, each CNAME target: policy checks the whole chain) is placed in the
deepest zone cut its record's proof shows (``proof.zones``, RFC 4035 §5: the chain of trust,
root first), so one rule stands for a zone, not for each name in it. A rule gets ``require:
secure`` when every answer under it was Secure (an Insecure one then shows a removed DS), else
``insecure-ok``; ``types`` the query types seen; the counts go in comments. The output is a
configuration document (``listen``, ``services`` with the one service and the listeners its
queries arrived on) that ``check-config`` accepts, to be merged into the real one."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

import dns.name
import orjson

from resolver import status
from resolver.errors import ResolverError
from resolver.forensic.record import POLICY_CHANGE

__all__ = ["learn", "run"]

#: Verdicts an allow rule can be learned from.
_LEARNED = ("secure", "insecure")


@dataclass
class _Zone:
    """What was seen under one zone cut."""

    types: Counter = field(default_factory=Counter)
    verdicts: Counter = field(default_factory=Counter)
    names: set = field(default_factory=set)


class LogError(ResolverError):
    """A log line that is not a forensic record: ``where`` is file:line."""


def _owner(name: dns.name.Name, zones: list[dns.name.Name]) -> dns.name.Name:
    """The deepest of ``zones`` that ``name`` is at or below; the name itself when the proof
    shows none (learned as narrowly as it can be)."""
    found = [zone for zone in zones if name.is_subdomain(zone)]
    return max(found, key=lambda zone: len(zone.labels)) if found else name


def _names(record: dict) -> set[str]:
    names = {record["qname"]}
    for rrset in record.get("answer") or ():
        names.add(rrset["name"])
        if rrset["type"] == "CNAME":
            names.update(rrset["rdata"])
    return names


def learn(paths: list[str], service: str) -> tuple[dict[dns.name.Name, _Zone], Counter, list]:
    """The zones a service's answers fell in, the queries not learned from (by why), and the
    listeners its queries arrived on, from forensic log files. Raises OSError, LogError."""
    zones: dict[dns.name.Name, _Zone] = {}
    skipped: Counter = Counter()
    listeners: dict[str, None] = {}
    for path in paths:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise LogError(f"{path}:{number}: not a forensic record ({exc})") from None
                if not isinstance(record, dict) or record.get("event") == POLICY_CHANGE \
                        or record.get("service") != service:
                    continue
                listeners.setdefault(record.get("listener"), None)
                verdict = record.get("verdict")
                decision = (record.get("policy") or {}).get("decision")
                if decision == "refuse" or verdict not in _LEARNED or not record.get("qname"):
                    skipped[decision if decision == "refuse" else verdict or "unresolved"] += 1
                    continue
                proof = record.get("proof") or {}
                cuts = [dns.name.from_text(zone) for zone in proof.get("zones") or ()]
                for text in _names(record):
                    zone = zones.setdefault(_owner(dns.name.from_text(text), cuts), _Zone())
                    zone.types[record["qtype"]] += 1
                    zone.verdicts[verdict] += 1
                    zone.names.add(text.lower())
    return zones, skipped, [listener for listener in listeners if listener]


def render(service: str, zones: dict[dns.name.Name, _Zone], skipped: Counter,
           listeners: list[str], sources: list[str]) -> str:
    """The YAML document: comments, ``listen``, the service and its allow list."""
    answers = sum(sum(zone.verdicts.values()) for zone in zones.values())
    lines = [f"# dnssec-sidecar learn --service {service} {' '.join(sources)}",
             f"# {len(zones)} zone(s) from the names of {answers} answer(s)"]
    if skipped:
        lines.append("# not learned from: " + ", ".join(
            f"{count} {why}" for why, count in sorted(skipped.items())))
    quoted = ", ".join(f'"{listener}"' for listener in listeners)
    lines += [f"listen: [{quoted}]" if listeners else "listen: []",
              "services:", f"  - name: {service}"]
    lines += [f"    listeners: [{quoted}]"] if listeners else \
        ["    clients: []    # none seen: say whose queries it serves"]
    lines.append("    allow:" if zones else "    allow: []")
    for name in sorted(zones, key=lambda zone: tuple(reversed(zone.labels))):
        zone = zones[name]
        require = "secure" if set(zone.verdicts) == {"secure"} else "insecure-ok"
        types = ", ".join(sorted(zone.types))
        seen = ", ".join(f"{kind} {count}" for kind, count in sorted(zone.verdicts.items()))
        counted = ", ".join(f"{kind} {count}" for kind, count in sorted(zone.types.items()))
        quoted = name.to_text().replace("'", "''")  # YAML single quotes: no escapes inside
        lines.append(f"      - {{zone: '{quoted}', require: {require}, types: [{types}]}}"
                     f"  # {len(zone.names)} name(s); {counted}; {seen}")
    return "\n".join(lines) + "\n"


def run(paths: list[str], service: str) -> int:
    """Print the allow list learned from ``paths``; one line on standard error if a log
    cannot be read."""
    try:
        zones, skipped, listeners = learn(paths, service)
    except OSError as exc:
        print(f"learn: {exc.filename}: cannot read: {exc.strerror}", file=sys.stderr)
        return status.UNREADABLE
    except LogError as exc:
        print(f"learn: {exc}", file=sys.stderr)
        return status.INVALID
    if not zones:
        print(f"learn: no resolved answer of service {service!r} in "
              + ", ".join(paths), file=sys.stderr)
        return status.FOUND
    sys.stdout.write(render(service, zones, skipped, listeners, paths))
    return status.OK
