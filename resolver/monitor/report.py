"""``dnssec-sidecar posture [--api ADDR | --log FILE...]`` (issue #18): a table of the expected
zones with their state, keys, earliest signature expiry and last change, from a running
resolver (``GET /posture`` on its ``metrics.listen`` address) or from forensic log files (the
event records: each carries the zone's posture after it). Exit status 1 when a zone is bogus or
a canary resolved, 4 when the log or the address cannot be read."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import orjson

from resolver import status

TIMEOUT = 5.0  # seconds for the API's answer
COLUMNS = ("ZONE", "STATE", "KEYS", "DS", "DENIAL", "SERIAL", "EARLIEST EXPIRY", "LAST CHANGE")


def from_log(paths: list[str]) -> dict:
    """The table from event records, files oldest first: each zone's last posture, its last
    change (any event but ``zone_seen``), and the canaries' last word. Raises OSError."""
    zones: dict[str, dict] = {}
    canaries: dict[str, str | None] = {}
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # verify-log says what is wrong with a line; here it is skipped
                if not isinstance(rec, dict) or not isinstance(rec.get("event"), str):
                    continue
                kind, zone = rec["event"], str(rec.get("zone"))
                if kind == "canary_resolved":
                    canaries[zone] = str((rec.get("detail") or {}).get("verdict"))
                    continue
                posture = rec.get("posture")
                if isinstance(posture, dict):
                    entry = zones.setdefault(posture.get("zone", zone), {})
                    last = entry.get("changed"), entry.get("change")
                    entry.update(posture)
                    entry["changed"], entry["change"] = last
                entry = zones.setdefault(zone, {"zone": zone})
                if kind != "zone_seen":
                    entry["changed"], entry["change"] = rec.get("time"), kind
    return {"zones": [dict(v, zone=k) for k, v in sorted(zones.items())],
            "canaries": canaries}


def from_api(address: str) -> dict:
    """The table of a running resolver: ``GET http://ADDRESS/posture``. Raises OSError or
    ValueError."""
    with urllib.request.urlopen(f"http://{address}/posture", timeout=TIMEOUT) as reply:
        return orjson.loads(reply.read())


def table(report: dict) -> str:
    """The report as aligned text: one row per zone, then one line per canary."""
    rows = [COLUMNS]
    for z in report.get("zones", []):
        change = f"{z.get('change')} {z.get('changed')}" if z.get("change") else "-"
        rows.append((z.get("zone") or "-", z.get("state") or "?",
                     ", ".join(z.get("dnskey") or []) or "-", ", ".join(z.get("ds") or []) or "-",
                     z.get("denial") or "-", str(z.get("serial") if z.get("serial") is not None
                                                 else "-"),
                     z.get("expiry") or "-", change))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    for name, what in sorted((report.get("canaries") or {}).items()):
        lines.append(f"canary {name}: " + (f"RESOLVED ({what}): validation is not working"
                                           if what else "fails validation, as it must"))
    return "\n".join(lines)


def run(api: str | None, logs: list[str] | None) -> int:
    """Print the table; the exit status as the module docstring says."""
    try:
        report = from_api(api) if api else from_log(logs or [])
    except (OSError, ValueError) as exc:
        where = f"--api {api}" if api else "--log"
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        name = getattr(exc, "filename", None)
        print(f"posture: {where}{': ' + name if name else ''}: cannot read: {reason}",
              file=sys.stderr)
        return status.UNREADABLE
    print(table(report))
    bad = any(z.get("state") == "bogus" for z in report.get("zones", [])) or \
        any(report.get("canaries", {}).values())
    return status.FOUND if bad else status.OK
