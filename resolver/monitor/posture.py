"""One zone's DNSSEC posture and the events a change of it makes (issue #18).

A posture holds what the resolver last learned of a zone: its state (RFC 4035 §4.3: secure,
insecure, bogus), the DS set its parent publishes (RFC 4034 §5: key tag, algorithm, digest
type), its DNSKEY set (RFC 4034 §2: tag, algorithm, KSK when the SEP flag is set), its denial
of existence (NSEC, or NSEC3 with its iterations, salt and opt-out, RFC 5155 §3-§4), the
earliest expiration among the RRSIGs seen (RFC 4034 §3.1.5, made absolute by serial
arithmetic, RFC 1982), and the SOA serial. :meth:`Posture.update` takes a partial view (what
one observation tells) and returns the events the change makes; a first view is a baseline and
makes none but ``signatures_expiring``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resolver.forensic._fastlog import rfc3339

SEP = 0x0001  # the DNSKEY flag of a key-signing key (RFC 4034 §2.1.1)
STATES = ("secure", "insecure", "bogus")
#: The ``kind`` label of ``zone_key_changes_total``, by event.
CHANGE_KINDS = {"dnskey_changed": "dnskey", "ds_changed": "ds",
                "algorithm_changed": "algorithm", "nsec3_changed": "nsec3"}
UNKNOWN = object()  # a view that says nothing of a field


def absolute(expiration: int, now: int) -> int:
    """An RRSIG time (32-bit, RFC 4034 §3.1.5) as POSIX seconds: the one within 68 years of
    ``now`` (RFC 1982 serial arithmetic)."""
    return now + ((expiration - now + 2**31) % 2**32 - 2**31)


@dataclass(slots=True)
class Posture:
    """What is known of one zone; None where nothing is known yet."""

    zone: str
    state: str | None = None
    reason: str = ""
    ds: frozenset | None = None        # {(tag, algorithm, digest type)}
    dnskey: frozenset | None = None    # {(tag, algorithm, flags & SEP)}, from a secure set
    denial: tuple | None = None        # ("nsec",) or ("nsec3", iterations, salt hex, opt-out)
    expiry: int | None = None          # POSIX seconds
    serial: int | None = None
    checked: float | None = None       # when the background check last saw it (time.time)
    changed: float | None = None       # when the last event of it was written
    change: str | None = None          # that event
    warned: int | None = None          # the expiry signatures_expiring was written for
    first: bool = field(default=True)  # nothing seen yet: the next view is the baseline

    def update(self, now: float, validation_now: int, warning: int, *, state=UNKNOWN,
               reason: str = "", ds=UNKNOWN, dnskey=UNKNOWN, denial=UNKNOWN, expiry=UNKNOWN,
               serial=UNKNOWN) -> list[tuple[str, dict]]:
        """Take a view (the fields given) and return the events, ``(kind, detail)``; ``now``
        is the clock's time for ``changed``, ``validation_now`` the validation time the
        expiry is measured against, ``warning`` monitor.expiry_warning."""
        events: list[tuple[str, dict]] = []
        baseline = self.first
        self.first = False
        if state is not UNKNOWN and state is not None:
            if not baseline and state != self.state and self.state is not None:
                if state == "insecure" and self.state == "secure":
                    events.append(("became_insecure", {"from": self.state, "to": state,
                                                       "reason": reason}))
                elif state == "bogus":
                    events.append(("became_bogus", {"from": self.state, "reason": reason}))
            self.state, self.reason = state, reason if state == "bogus" else ""
            if state != "secure":
                self.dnskey = None  # keys are known only from a validated set
        if ds is not UNKNOWN and ds is not None:
            if not baseline and self.ds is not None and ds != self.ds:
                events.append(("ds_changed", _added_removed(self.ds, ds, _ds_text)))
            self.ds = ds
        if dnskey is not UNKNOWN and dnskey is not None:
            if not baseline and self.dnskey is not None and dnskey != self.dnskey:
                old_tags, new_tags = {k[0] for k in self.dnskey}, {k[0] for k in dnskey}
                events.append(("dnskey_changed", {
                    "added": sorted(new_tags - old_tags), "removed": sorted(old_tags - new_tags),
                    "keys": key_texts(dnskey)}))
                old_algs, new_algs = {k[1] for k in self.dnskey}, {k[1] for k in dnskey}
                if old_algs != new_algs:
                    events.append(("algorithm_changed", {"from": sorted(old_algs),
                                                         "to": sorted(new_algs)}))
            self.dnskey = dnskey
        if denial is not UNKNOWN and denial is not None:
            denial = _merge_denial(self.denial, denial)
            if not baseline and self.denial is not None and denial != self.denial:
                events.append(("nsec3_changed", {"from": denial_text(self.denial),
                                                 "to": denial_text(denial)}))
            self.denial = denial
        if serial is not UNKNOWN and serial is not None:
            self.serial = serial
        if expiry is not UNKNOWN and expiry is not None:
            self.expiry = expiry
        if self.expiry is not None and self.expiry - validation_now < warning \
                and self.warned != self.expiry:
            self.warned = self.expiry
            events.append(("signatures_expiring", {
                "expiration": rfc3339(self.expiry), "seconds_left": self.expiry - validation_now,
                "warning": warning}))
        if events:
            self.changed, self.change = now, events[-1][0]
        return events

    def as_dict(self) -> dict:
        """The posture as JSON values (event records, ``/posture``, the ``posture`` table)."""
        return {"zone": self.zone, "state": self.state, "reason": self.reason or None,
                "ds": sorted(_ds_text(d) for d in self.ds) if self.ds is not None else None,
                "dnskey": key_texts(self.dnskey) if self.dnskey is not None else None,
                "denial": denial_text(self.denial), "serial": self.serial,
                "expiry": rfc3339(self.expiry) if self.expiry is not None else None,
                "checked": rfc3339(self.checked) if self.checked is not None else None,
                "changed": rfc3339(self.changed) if self.changed is not None else None,
                "change": self.change}


def key_texts(keys: frozenset) -> list[str]:
    """``"KSK 20326/8"``, ``"ZSK 4711/13"``: each key's role, tag and algorithm."""
    return [f"{'KSK' if sep else 'ZSK'} {tag}/{alg}" for tag, alg, sep in sorted(keys)]


def denial_text(denial: tuple | None) -> str | None:
    """``nsec``, or ``nsec3 iterations 0 salt - opt-out`` (opt-out: when seen)."""
    if denial is None:
        return None
    if denial[0] == "nsec":
        return "nsec"
    _, iterations, salt, optout = denial
    return f"nsec3 iterations {iterations} salt {salt or '-'}" + \
        {True: " opt-out", False: "", None: ""}[optout]


def _merge_denial(old: tuple | None, new: tuple) -> tuple:
    """An NSEC3PARAM says nothing of opt-out (RFC 5155 §4.1.2): keep what NSEC3 records said."""
    if new[0] == "nsec3" and new[3] is None and old is not None and old[0] == "nsec3":
        return new[:3] + (old[3],)
    return new


def _ds_text(ds: tuple) -> str:
    return f"{ds[0]}/{ds[1]}/{ds[2]}"


def _added_removed(old: frozenset, new: frozenset, text) -> dict:
    return {"added": sorted(text(d) for d in new - old),
            "removed": sorted(text(d) for d in old - new)}
