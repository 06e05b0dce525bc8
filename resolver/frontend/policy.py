"""Per-service policy: which names a client may resolve, and which answers it may be given.

A :class:`Policy` is built once from a :class:`~resolver.config.Config`. For each client query
the server asks, in this order:

1. :meth:`Policy.service_for` the listener and client address: the service whose rules apply.
2. :meth:`Policy.check_question` before anything is sent upstream or looked up: a denied name
   never leaves the sidecar, not even as a minimised query (RFC 9156).
3. :meth:`Policy.check_name` for every CNAME and DNAME target of the answer (RFC 1034 §3.6.2,
   RFC 6672), and SVCB, HTTPS and SRV target (RFC 9460 §2.5, RFC 2782): a chain may not lead
   out of the allowed zones.
4. :meth:`Policy.check_answer` with the validation verdict (RFC 4035 §4.3) and the addresses of
   the answer (A, AAAA, SVCB/HTTPS hints: resolver.frontend.addresses): ``require: secure``
   refuses Insecure data (a removed DS), Bogus is never allowed, rebinding protection refuses
   private addresses, and a rule's ``expect.addresses`` refuses any address outside them
   (issue #18: a publisher that was compromised can sign anything).

A refusal is a :class:`Decision` carrying the rcode (REFUSED, or NXDOMAIN per ``refuse_with``),
EDE 18 Prohibited (RFC 8914 §4.19) and an EXTRA-TEXT naming the service and the rule. A service
in ``mode: observe`` is given each refusal as an allowed decision with ``would_refuse`` set: the
query goes on (validation stays strict) and the record says what enforcing would have done.

Names are compared label by label after lowercasing ASCII letters only (RFC 4343 §3): an
escaped dot is part of its label (``a\\.b.example.com.`` has the label ``a.b``), and
``evil-example.com.`` is not below ``example.com.``.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype

from resolver.config import (MODE_OBSERVE, REFUSE_NXDOMAIN, REQUIRE_SECURE, AllowRule, Config,
                             Endpoint, Service)
from resolver.ede import EDE
from resolver.outgoing import DoNotQuery

__all__ = ["Decision", "Policy", "special_range"]

#: The length of the ``distinct_names_per_minute`` window, in seconds.
WINDOW_S = 60.0
#: Cached (listener, client) -> service selections before the cache is cleared.
_SELECTION_CACHE = 4096

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Addresses that rebinding protection refuses, with what they are.
_SPECIAL_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), what) for net, what in (
        ("0.0.0.0/8", "unspecified"),          # RFC 1122 §3.2.1.3 "this network"
        ("10.0.0.0/8", "private"),             # RFC 1918
        ("100.64.0.0/10", "shared (CGNAT)"),   # RFC 6598
        ("127.0.0.0/8", "loopback"),           # RFC 1122
        ("169.254.0.0/16", "link-local"),      # RFC 3927
        ("172.16.0.0/12", "private"),          # RFC 1918
        ("192.168.0.0/16", "private"),         # RFC 1918
    ))
_SPECIAL_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), what) for net, what in (
        ("::/128", "unspecified"),             # RFC 4291 §2.5.2
        ("::1/128", "loopback"),               # RFC 4291 §2.5.3
        ("fe80::/10", "link-local"),           # RFC 4291 §2.5.6
        ("fec0::/10", "site-local"),           # RFC 3879 (deprecated, still routed locally)
        ("fc00::/7", "unique local"),          # RFC 4193
    ))


#: The same ranges held as integers (resolver.outgoing.DoNotQuery): an answer's address is read
#: by inet_pton, not built as an ``ipaddress`` object (36 Python calls).
_SPECIAL = DoNotQuery(tuple(net for net, _ in (*_SPECIAL_V4, *_SPECIAL_V6)))
_WHAT: dict[_Network, str] = dict((*_SPECIAL_V4, *_SPECIAL_V6))


def special_range(address: str | _Address) -> tuple[str, str] | None:
    """``(prefix, what)`` if rebinding protection refuses ``address``, else None. An
    IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2) is judged by the IPv4 address it carries.
    Text that ``inet_pton`` does not read (a scoped ``fe80::1%eth0``) is read by ``ipaddress``;
    raises ValueError for text that is not an address."""
    if isinstance(address, str):
        try:
            found, v6 = _SPECIAL.covering(address), ":" in address
        except OSError:
            address = ipaddress.ip_address(address)
    if not isinstance(address, str):
        found, v6 = _SPECIAL.covering_packed(address.packed), address.version == 6
    if found is None:
        return None
    what = _WHAT[found]
    return str(found), f"IPv4-mapped {what}" if found.version == 4 and v6 else what


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy says about one question, name or answer.

    ``rule`` is the matching rule as ``"allow[0] example.com. secure"`` (its index in the
    service's ``allow`` list), or None when no rule matched. ``reason`` is the EDE EXTRA-TEXT
    (RFC 8914 §2) and names the service. ``rcode`` is NOERROR when allowed, else REFUSED or
    NXDOMAIN per ``refuse_with``; ``ede`` is 18 Prohibited when refused (0, unused, when
    allowed). ``kind`` classifies a refusal for counters and the log: ``not-allowed``,
    ``not-absolute``, ``type``, ``chain``, ``insecure``, ``bogus``, ``rebinding``,
    ``budget:query_rate``, ``budget:max_label_length``, ``budget:distinct_names_per_minute``,
    ``unexpected`` (outside the rule's ``expect``, whose ``zone`` is set); ``allowed``
    otherwise. ``would_refuse``: a refusal of a service in ``mode: observe``, given as allowed
    (NOERROR, no EDE), its ``kind`` and ``reason`` those of the refusal."""

    allowed: bool
    service: str
    rule: str | None
    reason: str
    rcode: int
    ede: int
    kind: str = "allowed"
    zone: str | None = None
    would_refuse: bool = False


class _Compiled:
    """A service prepared for lookups, and its budget state."""

    __slots__ = ("service", "zones", "depths", "rule_texts", "rule_index", "allowed", "rcode",
                 "listeners", "clients", "tokens", "refilled", "windows")

    def __init__(self, service: Service) -> None:
        self.service = service
        #: Lowercased label tuple of each rule's zone -> the rule's index.
        self.zones: dict[tuple[bytes, ...], int] = {}
        for index, rule in enumerate(service.allow):
            self.zones.setdefault(_key(rule.zone), index)
        #: Zone depths present, deepest first: the most specific rule is found first.
        self.depths = sorted({len(key) for key in self.zones}, reverse=True)
        self.rule_texts = [f"allow[{i}] {rule.zone} {rule.require}"
                           for i, rule in enumerate(service.allow)]
        self.rule_index = {rule: i for i, rule in enumerate(service.allow)}
        self.allowed = [Decision(True, service.name, text, f"service {service.name}: allowed by "
                                 f"{text}", dns.rcode.NOERROR, 0) for text in self.rule_texts]
        self.rcode = (dns.rcode.NXDOMAIN if service.refuse_with == REFUSE_NXDOMAIN
                      else dns.rcode.REFUSED)
        self.listeners = {(ep.host, ep.port) for ep in service.listeners}
        self.clients: tuple[_Network, ...] = service.clients
        rate = service.budgets.query_rate
        self.tokens = 2.0 * rate if rate is not None else 0.0
        self.refilled: float | None = None
        #: Rule index -> [window start, distinct names seen in the window].
        self.windows: dict[int, list[Any]] = {}


def _key(name: dns.name.Name) -> tuple[bytes, ...]:
    """The labels of ``name`` with ASCII letters lowercased (RFC 4343 §3), the form in which
    names are compared."""
    return tuple(map(bytes.lower, name.labels))  # no generator: C calls only


def _host(text: str) -> _Address | None:
    """An address without its IPv6 scope (``fe80::1%eth0``), IPv4-mapped addresses as IPv4
    (a dual-stack socket reports ``::ffff:10.1.2.3``); None for anything else."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Policy:
    """The services of a configuration, and the budget state of each. ``clock`` gives seconds
    (monotonic) for the budgets; inject one for tests. Not thread-safe: one event loop."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.services: tuple[Service, ...] = config.services
        self.default_service: Service = config.default_service
        self._compiled: dict[str, _Compiled] = {
            service.name: _Compiled(service)
            for service in (*config.services, config.default_service)}
        self._selection: dict[tuple[Any, str], Service] = {}
        #: Refusals counted by (service name, Decision.kind).
        self.stats: Counter[tuple[str, str]] = Counter()

    # --- which service ---------------------------------------------------------------------

    def service_for(self, listener: tuple[str, int] | Endpoint, client: str) -> Service:
        """The first service, in file order, matching the local endpoint the query arrived on
        and the client's address (both, when the service gives both); else the default."""
        if isinstance(listener, Endpoint):
            listener = (listener.host, listener.port)
        cache_key = (listener, client)
        found = self._selection.get(cache_key)
        if found is not None:
            return found
        found = self._select(listener, client)
        if len(self._selection) >= _SELECTION_CACHE:
            self._selection.clear()
        self._selection[cache_key] = found
        return found

    def _select(self, listener: tuple[str, int], client: str) -> Service:
        local = _host(str(listener[0]))
        endpoint = (str(local), int(listener[1])) if local is not None else None
        source = _host(str(client))
        for service in self.services:
            compiled = self._compiled[service.name]
            if service.listeners and endpoint not in compiled.listeners:
                continue
            if service.clients and (source is None or not any(
                    source in prefix for prefix in compiled.clients)):
                continue
            return service
        return self.default_service

    # --- names -----------------------------------------------------------------------------

    def _get(self, service: Service) -> _Compiled:
        compiled = self._compiled.get(service.name)
        if compiled is None or (compiled.service is not service and compiled.service != service):
            raise KeyError(f"service {service.name!r} is not one of this policy's")
        return compiled

    @staticmethod
    def _match(compiled: _Compiled, name: dns.name.Name) -> int | None:
        """The index of the most specific rule whose zone ``name`` is at or below, or None.
        Relative names match nothing."""
        labels = name.labels
        if not labels or labels[-1] != b"":
            return None
        key = _key(name)
        count = len(key)
        zones = compiled.zones
        for depth in compiled.depths:
            if depth <= count:
                index = zones.get(key[count - depth:])
                if index is not None:
                    return index
        return None

    def rule_for(self, service: Service, name: dns.name.Name) -> AllowRule | None:
        """The most specific rule of ``service`` whose zone ``name`` is at or below."""
        index = self._match(self._get(service), name)
        return None if index is None else service.allow[index]

    def _refuse(self, compiled: _Compiled, kind: str, reason: str,
                index: int | None = None, rule_text: str | None = None,
                zone: str | None = None) -> Decision:
        name = compiled.service.name
        self.stats[(name, kind)] += 1
        if index is not None:
            rule_text = compiled.rule_texts[index]
        if compiled.service.mode == MODE_OBSERVE:
            return Decision(True, name, rule_text, f"service {name}: would refuse: {reason}",
                            dns.rcode.NOERROR, 0, kind, zone, would_refuse=True)
        return Decision(False, name, rule_text, f"service {name}: {reason}", compiled.rcode,
                        int(EDE.PROHIBITED), kind, zone)

    def check_question(self, service: Service, qname: dns.name.Name, qtype: int) -> Decision:
        """May ``service`` ask for ``qname``/``qtype``? The most specific rule decides, then
        its ``types``, then the service's budgets, which only allowed questions spend."""
        compiled = self._get(service)
        index = self._match(compiled, qname)
        if index is None and not qname.is_absolute():  # _match finds no relative name
            return self._refuse(compiled, "not-absolute", f"{qname} is not an absolute name")
        if index is None:
            return self._refuse(compiled, "not-allowed", f"{qname} is not in an allowed zone")
        rule = service.allow[index]
        if rule.types is not None and qtype not in rule.types:
            return self._refuse(compiled, "type", f"type {dns.rdatatype.to_text(qtype)} is not "
                                f"allowed for {qname} by {compiled.rule_texts[index]}", index)
        budgets = service.budgets
        if budgets.max_label_length is not None:
            longest = max(len(label) for label in qname.labels)
            if longest > budgets.max_label_length:
                return self._refuse(compiled, "budget:max_label_length",
                                    f"budget max_label_length exceeded: a label of {longest} "
                                    f"octets (limit {budgets.max_label_length})", index)
        window = None
        if budgets.distinct_names_per_minute is not None:
            now = self.clock()
            window = compiled.windows.get(index)
            if window is None or now - window[0] >= WINDOW_S:
                window = compiled.windows[index] = [now, set()]
            seen = _key(qname)
            if seen in window[1]:
                window = None  # seen in this window: nothing to record
            elif len(window[1]) >= budgets.distinct_names_per_minute:
                return self._refuse(compiled, "budget:distinct_names_per_minute",
                                    "budget distinct_names_per_minute exceeded: "
                                    f"{budgets.distinct_names_per_minute} new names under "
                                    f"{rule.zone} this minute", index)
        if budgets.query_rate is not None and not self._spend(compiled, budgets.query_rate):
            return self._refuse(compiled, "budget:query_rate", "budget query_rate exceeded: "
                                f"{budgets.query_rate:g} queries per second", index)
        if window is not None:
            window[1].add(seen)
        return compiled.allowed[index]

    def _spend(self, compiled: _Compiled, rate: float) -> bool:
        """Take one token from the service's bucket (burst: twice the rate)."""
        now = self.clock()
        if compiled.refilled is not None:
            compiled.tokens = min(2.0 * rate, compiled.tokens + (now - compiled.refilled) * rate)
        compiled.refilled = now
        if compiled.tokens < 1.0:
            return False
        compiled.tokens -= 1.0
        return True

    def check_name(self, service: Service, name: dns.name.Name,
                   role: str = "in the answer's CNAME/DNAME chain") -> Decision:
        """May an answer lead to ``name`` (a CNAME or DNAME target, RFC 1034 §3.6.2, RFC 6672;
        an SVCB, HTTPS or SRV target, RFC 9460 §2.5, RFC 2782: ``role`` says which, for the
        refusal's text)? Types are not applied and budgets are not spent."""
        compiled = self._get(service)
        index = self._match(compiled, name)
        if index is None:
            return self._refuse(compiled, "chain", f"{name} ({role}) is not in an allowed zone")
        return compiled.allowed[index]

    # --- answers ---------------------------------------------------------------------------

    def check_answer(self, service: Service, rule: AllowRule | None, verdict: Any,
                     addresses: Iterable[str]) -> Decision:
        """May an answer validated as ``verdict`` (``"secure"``, ``"insecure"``, ``"bogus"``,
        ``"indeterminate"`` or a :class:`~resolver.dnssec.Verdict`) and carrying ``addresses``
        (A and AAAA data, SVCB/HTTPS hints: resolver.frontend.addresses) be given under
        ``rule``? Bogus and Indeterminate never are (RFC 4035 §5.5); Insecure is refused when the rule requires Secure; with rebinding protection on,
        an address in a special range is refused unless the rule has ``allow_private``; with
        the rule's ``expect``, an address outside its prefixes is refused."""
        compiled = self._get(service)
        index = compiled.rule_index.get(rule) if rule is not None else None
        if rule is None:
            return self._refuse(compiled, "not-allowed", "no allow rule for this answer")
        text = (compiled.rule_texts[index] if index is not None
                else f"{rule.zone} {rule.require}")
        state = str(getattr(verdict, "value", verdict)).lower()
        if state not in ("secure", "insecure"):
            return self._refuse(compiled, "bogus", f"answer is {state}, never allowed ({text})",
                                index, text)
        if state != "secure" and rule.require == REQUIRE_SECURE:
            return self._refuse(compiled, "insecure", f"zone {rule.zone} expected signed, answer "
                                f"is insecure ({text})", index, text)
        if service.rebinding_protection and not rule.allow_private:
            for address in addresses:
                try:
                    found = special_range(address)
                except ValueError:
                    return self._refuse(compiled, "rebinding", f"answer address {address!r} is "
                                        "not an address", index, text)
                if found is not None:
                    return self._refuse(compiled, "rebinding",
                                        f"answer address {address} is {found[1]} ({found[0]}): "
                                        f"rebinding protection ({text})", index, text)
        if rule.expect is not None:
            for address in addresses:
                ip = _host(str(address))
                if ip is None or not any(ip in prefix for prefix in rule.expect
                                         if prefix.version == ip.version):
                    return self._refuse(compiled, "unexpected",
                                        f"answer address {address} is outside expect.addresses "
                                        f"({', '.join(map(str, rule.expect))}) of {text}",
                                        index, text, rule.zone.to_text())
        if index is not None:
            return compiled.allowed[index]
        return Decision(True, service.name, text, f"service {service.name}: allowed by {text}",
                        dns.rcode.NOERROR, 0)
