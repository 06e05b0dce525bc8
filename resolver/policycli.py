"""``dnssec-sidecar policy ...`` (issue #17): the runtime policy API (resolver.ops.api) from the
command line, and ``policy check`` offline against a configuration file.

``--api`` is ``unix:/PATH`` or ``ADDR:PORT`` (``--token-file``: a file whose first line is the
token, or ``NAME:TOKEN`` as in ``api.token_file``). Every failure is one line on standard error:
the API's own error text (and the field at fault), or why it cannot be reached."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
from urllib.parse import quote, urlencode

import orjson
import yaml

from resolver import status
from resolver.errors import ResolverError
from resolver.status import Failure

__all__ = ["ApiClient", "ApiError", "add_parser"]

#: Seconds to wait for the API's answer.
TIMEOUT = 10.0


class ApiError(ResolverError):
    """The API cannot be reached (``code`` None) or answered an error: ``code``, the text."""

    def __init__(self, text: str, code: int | None = None, data: dict | None = None) -> None:
        super().__init__(text)
        self.code, self.data = code, data or {}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self.path)


class ApiClient:
    """Requests to a running resolver's API at ``address`` (``unix:/PATH`` or ``ADDR:PORT``)."""

    def __init__(self, address: str, token: str | None = None) -> None:
        from resolver.config import parse_endpoint
        self.address, self.token = address, token
        if not address.startswith("unix:"):
            self.endpoint = parse_endpoint(address)  # ValueError for a bad address

    def request(self, method: str, path: str, body: object = None,
                headers: dict | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON body); ApiError when the API cannot be reached or does not
        answer JSON."""
        if self.address.startswith("unix:"):
            conn = _UnixConnection(self.address[len("unix:"):])
        else:
            conn = http.client.HTTPConnection(self.endpoint.host, self.endpoint.port,
                                              timeout=TIMEOUT)
        sent = dict(headers or {})
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = orjson.dumps(body)
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(f"{self.address}: cannot reach the API: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
        finally:
            conn.close()
        try:
            return response.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(f"{self.address}: answered {response.status} without JSON: "
                           f"{raw[:80]!r}", response.status) from None

    def call(self, method: str, path: str, body: object = None,
             headers: dict | None = None) -> dict:
        """The JSON of a 2xx answer; ApiError with the API's error text otherwise."""
        code, data = self.request(method, path, body, headers)
        if code >= 300:
            field = f" (field {data['field']})" if data.get("field") else ""
            raise ApiError(f"{code}: {data.get('error', data)}{field}", code, data)
        return data


def _token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure("--token-file", f"{path}: cannot read: "
                      f"{getattr(exc, 'strerror', None) or exc}", status.UNREADABLE) from None
    return line.partition(":")[2] if ":" in line else line


def _show(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _service_body(path: str) -> object:
    """A service's definition from a YAML or JSON file (``-``: standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}",
                      status.UNREADABLE) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Failure(path, f"not YAML or JSON: {str(exc).splitlines()[0]}",
                      status.INVALID) from None


def _offline_check(args: argparse.Namespace) -> int:
    import dns.name
    import dns.rdatatype

    from resolver.config import ConfigError, load_config
    from resolver.ops.policystore import check as check_question
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"policy check: {args.config}: {exc}", file=sys.stderr)
        return exc.status
    service = next((s for s in (*config.services, config.default_service)
                    if s.name == args.service), None)
    if service is None:
        print(f"policy check: {args.config}: no service {args.service!r}", file=sys.stderr)
        return status.INVALID
    try:
        qname, qtype = dns.name.from_text(args.name), dns.rdatatype.from_text(args.type)
    except Exception as exc:  # noqa: BLE001 - dnspython's name and type errors
        print(f"policy check: {args.name} {args.type}: {exc}", file=sys.stderr)
        return status.USAGE
    return _verdict(check_question(config, service, qname, qtype))


def _verdict(result: dict) -> int:
    print(f"{result['decision']}: {result['name']} {result['type']} for service "
          f"{result['service']} ({result['mode']}): {result['reason']}")
    return status.FOUND if result["decision"] == "refuse" else status.OK


def run(args: argparse.Namespace) -> int:
    """Run one ``policy`` subcommand; a failure is one line on standard error."""
    if args.action == "check" and args.config is not None:
        return _offline_check(args)
    if args.api is None:
        print(f"policy {args.action}: give --api unix:/PATH or ADDR:PORT"
              + (" (or --config FILE to check offline)" if args.action == "check" else ""),
              file=sys.stderr)
        return status.USAGE
    try:
        client = ApiClient(args.api, _token(args.token_file))
        return _online(client, args)
    except ValueError as exc:
        print(f"policy {args.action}: --api: {exc}", file=sys.stderr)
        return status.USAGE
    except Failure as exc:
        print(f"policy {args.action}: {exc}", file=sys.stderr)
        return exc.status
    except ApiError as exc:
        print(f"policy {args.action}: {exc}", file=sys.stderr)
        return status.UNREACHABLE if exc.code is None else status.API_REFUSED


def _online(client: ApiClient, args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        data = client.call("GET", "/v1/services")
        print(f"generation {data['generation']}")
        for entry in data["services"]:
            spec = entry["service"]
            print(f"{entry['name']}\tgeneration {entry['generation']}\t{entry['origin']}\t"
                  f"{spec.get('mode', 'enforce')}\t{len(spec['allow'])} allow rule(s)")
    elif action == "get":
        _show(client.call("GET", f"/v1/services/{quote(args.name, safe='')}"))
    elif action == "set":
        body = _service_body(args.file)
        generation = args.if_match
        if generation is None:  # read-modify-write: a change made meanwhile still gets 409
            code, data = client.request("GET", f"/v1/services/{quote(args.name, safe='')}")
            generation = data.get("generation", 0) if code == 200 else 0
        data = client.call("PUT", f"/v1/services/{quote(args.name, safe='')}", body,
                           {"If-Match": str(generation)})
        print(f"service {data['name']}: generation {data['generation']}")
    elif action == "delete":
        generation = args.if_match
        if generation is None:
            generation = client.call("GET", f"/v1/services/{quote(args.name, safe='')}")["generation"]
        client.call("DELETE", f"/v1/services/{quote(args.name, safe='')}", None, {"If-Match": str(generation)})
        print(f"service {args.name}: deleted")
    elif action == "check":
        return _verdict(client.call("POST", "/v1/check", {"service": args.service,
                                                           "name": args.name,
                                                           "type": args.type}))
    elif action == "pins":
        _show(client.call("GET", "/v1/pins" + _query(service=args.service))["pins"])
    elif action == "denials":
        _show(client.call("GET", "/v1/denials" + _query(service=args.service,
                                                         since=args.since))["denials"])
    return status.OK


def _query(**params: str | None) -> str:
    given = {key: value for key, value in params.items() if value}
    return f"?{urlencode(given)}" if given else ""


def add_parser(commands) -> None:
    """The ``policy`` command and its subcommands."""
    policy = commands.add_parser(
        "policy", help="read or change a running resolver's services (the runtime API), or "
                       "check a question against a file offline",
        description=__doc__)
    actions = policy.add_subparsers(dest="action", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text, description=text)
        sub.add_argument("--api", metavar="ADDR", help="the API: unix:/PATH or ADDR:PORT")
        sub.add_argument("--token-file", metavar="FILE", help="the Bearer token (TCP)")
        sub.set_defaults(run=run)
        return sub

    action("list", "every service with its generation")
    action("get", "one service and its generation").add_argument("name")
    setter = action("set", "create or replace a service from a YAML or JSON file (- for "
                           "standard input), in the form of a services entry")
    setter.add_argument("name")
    setter.add_argument("file")
    setter.add_argument("--if-match", type=int, metavar="GENERATION",
                        help="the generation it replaces (0: create); default: the current one")
    deleter = action("delete", "delete a service")
    deleter.add_argument("name")
    deleter.add_argument("--if-match", type=int, metavar="GENERATION")
    checker = action("check", "the decision and rule a question would get (nothing sent)")
    checker.add_argument("--config", metavar="FILE", help="check against this file, offline")
    checker.add_argument("--service", required=True)
    checker.add_argument("name")
    checker.add_argument("type", nargs="?", default="A")
    action("pins", "the addresses pinned for a service").add_argument("--service")
    denials = action("denials", "recent refusals, the most recent first")
    denials.add_argument("--service")
    denials.add_argument("--since", metavar="TIME", help="RFC 3339 or epoch seconds")
