"""The typed readers of the configuration: each turns one YAML value into a Python value or raises
:class:`~resolver.config.schema.ConfigError` naming the field path (``forward[0].zone``) and
why; a key given as null counts as absent (:func:`_given`). Also the parsers the command line
shares: RFC 3339 times (RFC 3339 §5.6) and ``ADDR:PORT`` endpoints.

Names with a leading underscore are the package's own (read by its other modules), not an API.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import dns.exception
import dns.name

from resolver.config.schema import ConfigError, Endpoint

T = TypeVar("T")


# --- time -----------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def parse_time(value: str | int | datetime) -> int:
    """POSIX seconds from an RFC 3339 timestamp with a UTC offset or ``Z`` (RFC 3339 §5.6;
    fractions dropped), from epoch seconds (an int or a string of digits), or from an aware
    datetime. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"time needs a UTC offset or Z: {value.isoformat()!r}")
        seconds = int(value.timestamp())
    elif isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]+", text):
            seconds = int(text)
        elif match := _RFC3339.fullmatch(text):
            day, clock, offset = match.groups()
            offset = "+00:00" if offset in ("Z", "z") else offset
            try:
                seconds = int(datetime.fromisoformat(f"{day}T{clock}{offset}").timestamp())
            except ValueError as exc:
                raise ValueError(f"not a valid time: {value!r} ({exc})") from None
        elif _NO_OFFSET.fullmatch(text):
            raise ValueError(f"time needs a UTC offset or Z: {value!r}")
        else:
            raise ValueError(f"not an RFC 3339 time or epoch seconds: {value!r}")
    else:
        raise ValueError(f"not a time: {value!r}")
    if not 0 <= seconds <= _MAX_TIME:
        raise ValueError(f"time out of range: {value!r}")
    return seconds


# --- endpoints ------------------------------------------------------------------------------

def _address(text: str) -> str:
    """The normalised form of an IPv4 or IPv6 address; ValueError otherwise."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r}: not an IP address") from None


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """``ADDR:PORT`` with an IPv4 address or a bracketed IPv6 one (``[::1]:53``). With a
    ``default_port`` the port may be left out, and then an IPv6 address may go unbracketed.
    Raises ValueError with a reason that quotes ``text``."""
    def fail(reason: str) -> ValueError:
        return ValueError(f"{text!r}: {reason}")

    port_text: str | None
    if text.startswith("["):
        match = re.fullmatch(r"\[([^\[\]]*)\](?::(.*))?", text)
        if not match:
            raise fail("expected [IPv6]:PORT")
        host, port_text = match.groups()
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            raise fail(f"{host!r} is not an IPv6 address") from None
        if parsed.version != 6:
            raise fail("brackets are for IPv6 addresses only")
    elif text.count(":") > 1:
        if default_port is None:
            raise fail("an IPv6 address needs brackets and a port, as in [::1]:53")
        host, port_text = text, None
        try:
            parsed = ipaddress.IPv6Address(host)
        except ValueError:
            raise fail("not an IPv6 address") from None
    else:
        host, _, port_text = text.partition(":")
        if ":" not in text:
            port_text = None
        try:
            parsed = ipaddress.IPv4Address(host)
        except ValueError:
            raise fail(f"{host!r} is not an IPv4 address") from None
    if port_text is None:
        if default_port is None:
            raise fail("missing port (ADDR:PORT)")
        port = default_port
    else:
        if not re.fullmatch(r"[0-9]{1,6}", port_text):
            raise fail(f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise fail("port out of range")
    return Endpoint(str(parsed), port)


# --- typed readers, each naming the field path in its errors --------------------------------

def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    return {int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)


def _mapping(value: object, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path or "config", f"expected a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path or "config", f"key {key!r} is not a string")
        if key not in keys:
            raise ConfigError(f"{path}.{key}" if path else key,
                              f"unknown key (expected one of: {', '.join(keys)})")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list, got {_kind(value)}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_kind(value)}")
    return value


def _int(value: object, path: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {_kind(value)}")
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(path, f"{value} is out of range {low}..{high}")
    return value


#: Units of a duration (``90s``, ``30m``, ``12h``, ``1d``), in seconds.
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: object, path: str, bounds: tuple[int, int]) -> int:
    """Seconds from an integer or a string of digits with an optional unit (s, m, h, d),
    within ``bounds`` (inclusive, in seconds)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", value)
        if match is None:
            raise ConfigError(path, f"{value!r}: expected seconds, or a number with a unit "
                                    "s, m, h or d (e.g. 1d)")
        value = int(match[1]) * _DURATION_UNITS[match[2] or "s"]
    return _int(value, path, bounds)


def _str(value: object, path: str, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected {what}, got {_kind(value)}")
    return value


def _name(value: object, path: str) -> dns.name.Name:
    """A DNS name, made absolute (RFC 1035 §3.1 limits, checked by dnspython)."""
    text = _str(value, path, "a DNS name")
    if not text.strip():
        raise ConfigError(path, "empty name")
    try:
        return dns.name.from_text(text.strip())
    except dns.exception.DNSException as exc:
        raise ConfigError(path, f"{text!r}: {exc}") from None


def _endpoint(value: object, path: str, default_port: int | None) -> Endpoint:
    what = "a string 'ADDR:PORT'" if default_port is None else "a string 'ADDR' or 'ADDR:PORT'"
    if isinstance(value, list):
        raise ConfigError(path, f"expected {what}, got list (quote IPv6 addresses in YAML)")
    try:
        return parse_endpoint(_str(value, path, what), default_port)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(path, str(exc)) from None


def _unique(items: list[T], path: str, key: Callable[[T], object], show: Callable[[T], str],
            ) -> None:
    seen: set[object] = set()
    for index, item in enumerate(items):
        if key(item) in seen:
            raise ConfigError(f"{path}[{index}]", f"{show(item)}: duplicate")
        seen.add(key(item))


def _nonempty(value: object, path: str) -> list[Any]:
    items = _list(value, path)
    if not items:
        raise ConfigError(path, "must not be empty")
    return items


def _path(value: object, path: str, base_dir: str | None) -> str:
    """A file path, relative ones taken from ``base_dir`` (the configuration file's directory)
    when given, else from the working directory."""
    text = _str(value, path, "a file path")
    if not text.strip():
        raise ConfigError(path, "empty path")
    if base_dir is not None and not os.path.isabs(text):
        return os.path.join(base_dir, text)
    return text


def _given(data: dict[str, Any], key: str) -> bool:
    return data.get(key) is not None


def _required(data: dict[str, Any], key: str, path: str) -> Any:
    if data.get(key) is None:
        raise ConfigError(f"{path}.{key}", "missing")
    return data[key]


def _choice(value: object, path: str, choices: tuple[str, str]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    got = "" if isinstance(value, str) else f", got {_kind(value)}"
    raise ConfigError(path, f"must be {choices[0]} or {choices[1]}{got}")


def _ints(data: dict[str, Any], path: str, bounds: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The integers among ``bounds``' keys that ``data`` gives, each within its bounds
    (inclusive)."""
    return {name: _int(data[name], f"{path}.{name}", limits)
            for name, limits in bounds.items() if _given(data, name)}


def _prefixes(value: object, path: str, *, empty_ok: bool = False,
              ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of address prefixes ('10.1.2.0/24', 'fe80::/10'; a bare address is a /32 or
    /128), without duplicates."""
    prefixes = []
    for index, item in enumerate(_list(value, path) if empty_ok else _nonempty(value, path)):
        where = f"{path}[{index}]"
        text = _str(item, where, "an address prefix such as '10.1.2.0/24'")
        try:
            prefixes.append(ipaddress.ip_network(text.strip()))
        except ValueError as exc:
            reason = "has host bits set" if "host bits" in str(exc) else "not an address prefix"
            raise ConfigError(where, f"{text!r}: {reason}") from None
    _unique(prefixes, path, lambda p: p, lambda p: repr(str(p)))
    return tuple(prefixes)

