"""Services (``services``, ``default_service``): per-service allowlists of expected zones.

A query is given to the first service, in file order, whose ``listeners`` contain the local
endpoint it arrived on and/or whose ``clients`` contain its source address (both must match when
both are given); a query matching no service gets ``default_service``. Compatibility rule: a
file with neither a ``services`` nor a ``default_service`` key keeps the resolver open, its
default service allowing every name (``allow: [{zone: ., require: insecure-ok}]``, no rebinding
protection); as soon as either key is present (even null or empty, so that commenting every
service out fails closed), ``default_service`` defaults to allowing nothing. Names compare by
whole labels, case-insensitively (RFC 4343). A service in ``mode: observe`` has its refusals
recorded, not enforced. The policy itself is applied by :mod:`resolver.frontend.policy`.
:func:`parse_service` and :func:`service_data` read and write one service for the runtime API
(resolver.ops.api), with the same checks as the file.
"""

from __future__ import annotations

import re
from base64 import b64encode
from dataclasses import fields
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype

from resolver.config.schema import (DEFAULT_SERVICE_NAME, MODE_ENFORCE, MODE_OBSERVE,
                                    REFUSE_NXDOMAIN, REFUSE_REFUSED, REQUIRE_INSECURE_OK,
                                    REQUIRE_SECURE, AllowRule, Budgets, ConfigError, Endpoint,
                                    Forward, Pin, Service, check_listeners, open_default_service)
from resolver.config.sections import _forward
from resolver.config.values import (_bool, _choice, _endpoint, _given, _int, _ints, _kind, _list,
                                    _mapping, _name, _nonempty, _prefixes, _required, _str,
                                    _unique)
from resolver.nft import split_table

_SERVICE_KEYS = ("name", "listeners", "clients", "allow", "refuse_with", "rebinding_protection",
                 "forward", "budgets", "pin", "mode")
_DEFAULT_SERVICE_KEYS = _SERVICE_KEYS[3:]
_RULE_KEYS = ("zone", "require", "types", "allow_private", "expect")
_SERVICE_NAME = re.compile(r"[a-z0-9_.-]{1,63}")
_BUDGET_BOUNDS = {
    "max_label_length": (1, 63),
    "distinct_names_per_minute": (1, 1_000_000),
}
_MAX_QUERY_RATE = 1_000_000.0
_PIN_KEYS = ("nft", "grace")
_NFT_KEYS = ("table", "set4", "set6")
_GRACE_BOUNDS = (0, 86400)
#: An nftables table or set name (nft(8) identifiers; NFT_NAME_MAXLEN is 256 with the NUL).
_NFT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]{0,254}")
#: The families whose tables may hold a set of each IP version.
_PIN_FAMILIES = {4: ("ip", "inet", "bridge", "netdev"), 6: ("ip6", "inet", "bridge", "netdev")}


def _overlaps(a: dns.name.Name, b: dns.name.Name) -> bool:
    return a.is_subdomain(b) or b.is_subdomain(a)


def _types(value: object, path: str) -> frozenset[int]:
    codes: list[int] = []
    for index, item in enumerate(_nonempty(value, path)):
        where = f"{path}[{index}]"
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ConfigError(where, f"expected a type name such as AAAA, got {_kind(item)}")
        try:
            code = (dns.rdatatype.RdataType.make(item) if isinstance(item, int)
                    else dns.rdatatype.from_text(item.strip()))
        except (ValueError, dns.exception.DNSException):
            raise ConfigError(where, f"{item!r}: not a DNS type") from None
        if code in (dns.rdatatype.NONE, dns.rdatatype.OPT):
            raise ConfigError(where, f"{item!r}: not a query type")
        codes.append(int(code))
    _unique(codes, path, lambda c: c, lambda c: dns.rdatatype.to_text(c))
    return frozenset(codes)


def _allow(value: object, path: str) -> tuple[AllowRule, ...]:
    rules = []
    for index, item in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        data = _mapping(item, where, _RULE_KEYS)
        zone = _name(_required(data, "zone", where), f"{where}.zone")
        require = _choice(data["require"], f"{where}.require", (
            REQUIRE_SECURE, REQUIRE_INSECURE_OK)) if _given(data, "require") else REQUIRE_SECURE
        types = _types(data["types"], f"{where}.types") if _given(data, "types") else None
        allow_private = _bool(data["allow_private"], f"{where}.allow_private") if _given(
            data, "allow_private") else False
        expect = _expect(data["expect"], f"{where}.expect") if _given(data, "expect") else None
        rules.append(AllowRule(zone, require, types, allow_private, expect))
    for index, rule in enumerate(rules):
        if any(rule.zone == other.zone for other in rules[:index]):
            raise ConfigError(f"{path}[{index}].zone", f"{rule.zone}: duplicate zone")
    return tuple(rules)


def _expect(value: object, path: str) -> tuple:
    """``allow[].expect``: ``{addresses: [prefixes]}``, the ranges the rule's A and AAAA answers
    must fall in (issue #18)."""
    data = _mapping(value, path, ("addresses",))
    return _prefixes(_required(data, "addresses", path), f"{path}.addresses")


def _budgets(value: object, path: str) -> Budgets:
    data = _mapping(value, path, tuple(f.name for f in fields(Budgets)))
    rate: float | None = None
    if _given(data, "query_rate"):
        raw = data["query_rate"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{path}.query_rate", f"expected a number, got {_kind(raw)}")
        if not 0 < raw <= _MAX_QUERY_RATE:  # also false for NaN
            raise ConfigError(f"{path}.query_rate",
                              f"{raw} is out of range (0, {_MAX_QUERY_RATE:g}]")
        rate = float(raw)
    return Budgets(query_rate=rate, **_ints(data, path, _BUDGET_BOUNDS))


def _pin(value: object, path: str) -> Pin:
    """``pin: {nft: {table: "inet sandbox", set4: NAME, set6: NAME}, grace: SECONDS}``."""
    data = _mapping(value, path, _PIN_KEYS)
    where = f"{path}.nft"
    nft = _mapping(_required(data, "nft", path), where, _NFT_KEYS)
    text = _str(_required(nft, "table", where), f"{where}.table")
    try:
        family, table = split_table(text)
    except ValueError as exc:
        raise ConfigError(f"{where}.table", str(exc)) from None
    if not _NFT_NAME.fullmatch(table):
        raise ConfigError(f"{where}.table", f"{table!r}: not an nftables table name")
    sets: dict[int, str | None] = {}
    for version in (4, 6):
        key = f"set{version}"
        sets[version] = None
        if _given(nft, key):
            name = _str(nft[key], f"{where}.{key}")
            if not _NFT_NAME.fullmatch(name):
                raise ConfigError(f"{where}.{key}", f"{name!r}: not an nftables set name")
            if family not in _PIN_FAMILIES[version]:
                raise ConfigError(f"{where}.{key}", f"a table of family {family} holds no "
                                  f"IPv{version} addresses")
            sets[version] = name
    if sets[4] is None and sets[6] is None:
        raise ConfigError(where, "needs set4 or set6 (or both)")
    if sets[4] == sets[6]:
        raise ConfigError(f"{where}.set6", f"{sets[6]!r} is set4 too: a set has one type")
    grace = {"grace": _int(data["grace"], f"{path}.grace", _GRACE_BOUNDS)} if _given(
        data, "grace") else {}
    return Pin(family, table, sets[4], sets[6], **grace)


def check_pins(services: list[tuple[str, Service]]) -> None:
    """Each service pins into sets of its own (``services`` as (field path, service)):
    forgetting one service's pins (a revoked rule) must not remove another's."""
    owners: dict[tuple[str, str, str], str] = {}
    for path, service in services:
        pin = service.pin
        for version, name in pin.sets() if pin is not None else ():
            key = (pin.family, pin.table, name)
            if key in owners:
                raise ConfigError(f"{path}.pin.nft.set{version}", f"set {' '.join(key)} is "
                                  f"also {owners[key]}'s: each service pins into sets of its own")
            owners[key] = path


def _service(value: object, path: str, listen: tuple[Endpoint, ...] | None, *, named: bool,
             base_dir: str | None = None) -> Service:
    """One entry of ``services`` (``named``), or ``default_service``. Its ``listeners`` must be
    among ``listen``; None takes any (the runtime API binds a new service's listeners)."""
    data = _mapping(value, path, _SERVICE_KEYS if named else _DEFAULT_SERVICE_KEYS)
    name, listeners, clients = DEFAULT_SERVICE_NAME, (), ()
    if named:
        name = _str(_required(data, "name", path), f"{path}.name")
        if not _SERVICE_NAME.fullmatch(name):
            raise ConfigError(f"{path}.name", f"{name!r}: must be 1 to 63 of a-z 0-9 - _ .")
        if name == DEFAULT_SERVICE_NAME:
            raise ConfigError(f"{path}.name", f"{name!r} is reserved for default_service")
        if _given(data, "listeners"):
            items = [_endpoint(item, f"{path}.listeners[{i}]", None) for i, item in enumerate(
                _nonempty(data["listeners"], f"{path}.listeners"))]
            _unique(items, f"{path}.listeners", lambda e: e, lambda e: repr(str(e)))
            listeners = tuple(items)
            if listen is not None:
                check_listeners(listeners, listen, f"{path}.listeners")
        if _given(data, "clients"):
            clients = _prefixes(data["clients"], f"{path}.clients")
        if not listeners and not clients:
            raise ConfigError(path, "needs listeners or clients (or both) to say whose queries "
                                    "it serves")
    allow = _allow(data["allow"], f"{path}.allow") if _given(data, "allow") else ()
    refuse_with = _choice(data["refuse_with"], f"{path}.refuse_with", (
        REFUSE_REFUSED, REFUSE_NXDOMAIN)) if _given(data, "refuse_with") else REFUSE_REFUSED
    rebinding = _bool(data["rebinding_protection"], f"{path}.rebinding_protection") if _given(
        data, "rebinding_protection") else True
    forward = _forward(data["forward"], f"{path}.forward", base_dir) if _given(
        data, "forward") else ()
    for index, item in enumerate(forward):
        if not any(_overlaps(item.zone, rule.zone) for rule in allow):
            raise ConfigError(f"{path}.forward[{index}].zone",
                              f"{item.zone} is outside every zone of {path}.allow")
    pin = _pin(data["pin"], f"{path}.pin") if _given(data, "pin") else None
    mode = _choice(data["mode"], f"{path}.mode", (MODE_ENFORCE, MODE_OBSERVE)) if _given(
        data, "mode") else MODE_ENFORCE
    return Service(name, listeners, clients, allow, refuse_with, rebinding, forward,
                   _budgets(data.get("budgets"), f"{path}.budgets"), pin, mode)


def parse_service(value: object, name: str) -> Service:
    """A service given at run time (resolver.ops.api's PUT body): the schema and checks of a
    ``services`` entry (``default_service``'s for :data:`DEFAULT_SERVICE_NAME`), named ``name``
    (a ``name`` in ``value`` must be the same). Its listeners need not be in ``listen``: they are
    bound when it is applied. An error's field is the path within ``value`` (``allow[0].zone``;
    ``service`` for the whole)."""
    named = name != DEFAULT_SERVICE_NAME
    if named and isinstance(value, dict):
        given = value.get("name", name)
        if given != name:
            raise ConfigError("name", f"{given!r} is not the service named in the request "
                                      f"({name!r})")
        value = {**value, "name": name}
    try:
        return _service(value, "", None, named=named)
    except ConfigError as exc:
        field = exc.field.lstrip(".")
        raise ConfigError("service" if field in ("", "config") else field, exc.reason) from None


def service_data(service: Service) -> dict[str, Any]:
    """``service`` in the form of its YAML (and the API's JSON): what :func:`parse_service`
    reads back to an equal service. Keys at their defaults are left out."""
    data: dict[str, Any] = {}
    if service.name != DEFAULT_SERVICE_NAME:
        data["name"] = service.name
    if service.listeners:
        data["listeners"] = [str(endpoint) for endpoint in service.listeners]
    if service.clients:
        data["clients"] = [str(prefix) for prefix in service.clients]
    data["allow"] = [_rule_data(rule) for rule in service.allow]
    if service.refuse_with != REFUSE_REFUSED:
        data["refuse_with"] = service.refuse_with
    if not service.rebinding_protection:
        data["rebinding_protection"] = False
    if service.forward:
        data["forward"] = [_forward_data(forward) for forward in service.forward]
    budgets = {f.name: getattr(service.budgets, f.name) for f in fields(Budgets)
               if getattr(service.budgets, f.name) is not None}
    if budgets:
        data["budgets"] = budgets
    if service.pin is not None:
        pin = service.pin
        data["pin"] = {"nft": {"table": f"{pin.family} {pin.table}",
                               **{f"set{version}": name for version, name in pin.sets()}},
                       "grace": pin.grace}
    if service.mode != MODE_ENFORCE:
        data["mode"] = service.mode
    return data


def _rule_data(rule: AllowRule) -> dict[str, Any]:
    data: dict[str, Any] = {"zone": rule.zone.to_text(), "require": rule.require}
    if rule.types is not None:
        data["types"] = sorted(dns.rdatatype.to_text(code) for code in rule.types)
    if rule.allow_private:
        data["allow_private"] = True
    if rule.expect is not None:
        data["expect"] = {"addresses": [str(prefix) for prefix in rule.expect]}
    return data


def _forward_data(forward: Forward) -> dict[str, Any]:
    data: dict[str, Any] = {"zone": forward.zone.to_text(),
                            "addresses": [str(server) for server in forward.servers]}
    tls = forward.tls
    if tls is not None:
        data["tls"] = {key: value for key, value in (
            ("name", tls.name), ("ca_file", tls.ca_file),
            ("spki_pins", [b64encode(pin).decode() for pin in tls.spki_pins] or None))
            if value is not None}
    return data


def _services(top: dict[str, Any], listen: tuple[Endpoint, ...], base_dir: str | None = None,
              ) -> tuple[tuple[Service, ...], Service]:
    """``services`` and ``default_service``, with the compatibility rule of the module
    docstring: neither key present keeps the resolver open. Relative file paths (a forward's
    ``tls.ca_file``) are taken from ``base_dir``."""
    if "services" not in top and "default_service" not in top:
        return (), open_default_service()
    services = []
    if _given(top, "services"):
        services = [_service(item, f"services[{index}]", listen, named=True, base_dir=base_dir)
                    for index, item in enumerate(_list(top["services"], "services"))]
        _unique(services, "services", lambda s: s.name, lambda s: f"name {s.name!r}")
    default = _service(top.get("default_service"), "default_service", listen, named=False,
                       base_dir=base_dir)
    check_pins([(f"services[{i}]", s) for i, s in enumerate(services)]
                + [("default_service", default)])
    return tuple(services), default


def _merge_forwards(top_level: tuple[Forward, ...], services: tuple[Service, ...],
                    default: Service) -> tuple[tuple[Forward, ...], list[tuple[str, Forward]]]:
    """The resolver's one forward table from the top-level ``forward`` and every service's own,
    and every entry with its field path. A zone forwarded to two different sets of addresses is
    an error naming both places."""
    entries = [(f"forward[{i}]", fwd) for i, fwd in enumerate(top_level)]
    for index, service in enumerate(services):
        entries += [(f"services[{index}].forward[{i}]", fwd)
                    for i, fwd in enumerate(service.forward)]
    entries += [(f"default_service.forward[{i}]", fwd) for i, fwd in enumerate(default.forward)]
    names = {f"services[{i}]": s.name for i, s in enumerate(services)}
    merged: dict[dns.name.Name, tuple[str, Forward]] = {}
    for path, forward in entries:
        if forward.zone not in merged:
            merged[forward.zone] = (path, forward)
            continue
        first_path, first = merged[forward.zone]
        if set(first.servers) != set(forward.servers):
            owner = first_path.split(".")[0]
            by = f"{first_path} ({names[owner]})" if owner in names else first_path
            raise ConfigError(
                f"{path}.zone", f"{forward.zone} is forwarded to "
                + ", ".join(map(str, forward.servers)) + " here but to "
                + ", ".join(map(str, first.servers)) + f" by {by}: the resolver has one "
                "forward table")
    return tuple(forward for _, forward in merged.values()), entries

