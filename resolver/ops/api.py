"""The runtime policy API (issue #17, config ``api``): JSON over HTTP/1.1 (resolver.ops.http) on a
unix socket or on TCP with Bearer tokens (RFC 6750 §2.1), over the running services
(resolver.ops.policystore).

| request | answer |
| --- | --- |
| ``GET /v1/services`` | 200 ``{generation, services: [{name, generation, origin, service}]}`` |
| ``GET /v1/services/{name}`` | 200 ``{name, generation, origin, service}``; 404 |
| ``PUT /v1/services/{name}`` with ``If-Match: <generation>`` (0: create) and a services entry as the body | 201 created, 200 replaced: ``{name, generation}``; 400 ``{error, field}`` (nothing changed); 409 ``{error, generation}`` for a stale generation; 428 without If-Match |
| ``DELETE /v1/services/{name}`` with ``If-Match`` | 200 ``{name, generation: null}``; 404; 409; 428 |
| ``POST /v1/check`` ``{service, name, type}`` | 200 the decision, rule and reason the question would get (a dry run: nothing sent upstream, no budget spent) |
| ``GET /v1/pins?service=`` | 200 ``{pins: [{service, address, expires, names}]}`` from the pins provider (resolver.frontend.pinning); 501 when none is wired in |
| ``GET /v1/denials?service=&since=`` | 200 ``{denials: [...]}``, recent refusals (resolver.frontend.denials); ``since``: RFC 3339 or epoch seconds |

Who made a change goes into its forensic record: on the unix socket, the peer's uid and pid
(SO_PEERCRED, unix(7)); the socket is created mode 0600, so its owner (and root) decides who may
connect. On TCP every request needs ``Authorization: Bearer <token>`` with a token of
``api.token_file``, whose lines are ``NAME:TOKEN`` (``#`` comments and blank lines ignored;
a token of at least 16 characters): the record names the token's NAME, and 401 answers any other
request. Errors are JSON ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import os
import re
import socket
import stat
import struct

import orjson

from resolver import status
from resolver.config import API_UNIX, ApiConfig, ConfigError, parse_time
from resolver.ops.http import Reply, Request, serve_one
from resolver.ops.policystore import Gone, PolicyStore, Refused, Stale, Unavailable

__all__ = ["Api", "load_tokens", "unix_socket_in_use"]

log = logging.getLogger("dnssec-sidecar")

#: Octets of a request body at most: a service's allowlist of thousands of zones fits.
MAX_BODY = 1 << 20
#: Characters of a token at least (RFC 6750 does not say; 16 random characters are ~95 bits).
MIN_TOKEN = 16
_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SERVICE_PATH = re.compile(r"/v1/services/([^/]+)")
_IF_MATCH = re.compile(r'(?:W/)?"?([0-9]{1,18})"?')
_JSON = "application/json"


def load_tokens(path: str) -> dict[str, str]:
    """The tokens of ``api.token_file``: token -> name. A ConfigError names the file's line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError("api.token_file", f"{path}: cannot read: {exc.strerror or exc}",
                          status.UNREADABLE) from None
    except UnicodeDecodeError:
        raise ConfigError("api.token_file", f"{path}: not UTF-8 text") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, token = line.partition(":")
        where = f"{path}: line {number}"
        if not colon or not _TOKEN_NAME.fullmatch(name):
            raise ConfigError("api.token_file", f"{where}: expected NAME:TOKEN, NAME of "
                                                "A-Z a-z 0-9 _ . @ -")
        if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
            raise ConfigError("api.token_file", f"{where}: the token of {name} is shorter than "
                                                f"{MIN_TOKEN} characters or has blanks")
        if token in tokens:
            raise ConfigError("api.token_file", f"{where}: the token of {name} is also "
                                                f"{tokens[token]}'s")
        tokens[token] = name
    if not tokens:
        raise ConfigError("api.token_file", f"{path}: no NAME:TOKEN line")
    return tokens


def _json(status_line: str, data: object, headers: tuple = ()) -> Reply:
    return Reply(status_line, _JSON, orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE),
                 headers)


def _error(status_line: str, text: str, **extra) -> Reply:
    return _json(status_line, {"error": text, **extra})


class Api:
    """The API's listener over ``store``; pins come from the store's pins provider
    (``snapshot(service)``), None until one is wired in."""

    def __init__(self, config: ApiConfig, store: PolicyStore) -> None:
        self.config = config
        self.store = store
        self.tokens: dict[str, str] | None = None
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Listen; OSError when the address cannot be bound, ConfigError for the token file."""
        if self.config.token_file is not None:
            self.tokens = load_tokens(self.config.token_file)
        if self.config.mode == API_UNIX:
            path = self.config.path
            _remove_stale_socket(path)
            old = os.umask(0o177)  # created 0600: no moment when others could connect
            try:
                self._server = await asyncio.start_unix_server(self._client, path)
            finally:
                os.umask(old)
        else:
            endpoint = self.config.endpoint
            self._server = await asyncio.start_server(self._client, endpoint.host, endpoint.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            if self.config.mode == API_UNIX:
                try:
                    os.unlink(self.config.path)
                except FileNotFoundError:
                    pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_one(reader, writer, self.handle, MAX_BODY)

    def _who(self, request: Request) -> dict | None:
        """Who is asking: the unix peer's uid and pid, or the name of the Bearer token
        (None: a token was needed and not given or not known)."""
        by: dict = {}
        if self.config.mode == API_UNIX:
            sock = request.writer.get_extra_info("socket")
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", creds)
            by = {"uid": uid, "pid": pid}
        if self.tokens is None:
            return by
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        name = None
        for token, owner in self.tokens.items():  # every token compared, in constant time
            if hmac.compare_digest(token.encode(), given.strip().encode()):
                name = owner
        if name is None:
            return None
        by["token"] = name
        if self.config.mode != API_UNIX:
            by["address"] = request.writer.get_extra_info("peername")[0]
        return by

    async def handle(self, request: Request) -> Reply:
        by = self._who(request)
        if by is None:
            return _error("401 Unauthorized", "a valid Authorization: Bearer token is needed",
                          )._replace(headers=(("WWW-Authenticate", 'Bearer realm="policy"'),))
        method, path = request.method, request.path
        try:
            if path == "/v1/services":
                if method != "GET":
                    return _error("405 Method Not Allowed", "GET /v1/services")
                return _json("200 OK", {"generation": self.store.generation,
                                        "services": self.store.services()})
            match = _SERVICE_PATH.fullmatch(path)
            if match:
                return await self._service(method, match.group(1), request, by)
            if path == "/v1/check":
                if method != "POST":
                    return _error("405 Method Not Allowed", "POST /v1/check")
                return self._check(request)
            if path == "/v1/pins":
                return self._pins(request)
            if path == "/v1/denials":
                return self._denials(request)
        except Refused as exc:
            return _error("400 Bad Request", str(exc), field=exc.field)
        except Gone as exc:
            return _error("404 Not Found", str(exc))
        except Stale as exc:
            return _error("409 Conflict", str(exc), generation=exc.current)
        except Unavailable as exc:
            return _error("503 Service Unavailable", str(exc))
        return _error("404 Not Found", "paths: /v1/services[/NAME], /v1/check, /v1/pins, "
                                       "/v1/denials")

    async def _service(self, method: str, name: str, request: Request, by: dict) -> Reply:
        store = self.store
        if method == "GET":
            return _json("200 OK", store.describe(store.get(name)))
        if method not in ("PUT", "DELETE"):
            return _error("405 Method Not Allowed", "GET, PUT or DELETE /v1/services/NAME")
        given = request.headers.get("if-match")
        if given is None:
            return _error("428 Precondition Required", "If-Match: <generation> is needed (0 to "
                                                       "create a service)")
        match = _IF_MATCH.fullmatch(given.strip())
        if match is None:
            return _error("400 Bad Request", f"If-Match: {given!r} is not a generation",
                          field="If-Match")
        if method == "DELETE":
            await store.delete(name, int(match.group(1)), by)
            return _json("200 OK", {"name": name, "generation": None})
        body = _body(request)
        created, generation = await store.put(name, body, int(match.group(1)), by)
        return _json("201 Created" if created else "200 OK",
                     {"name": name, "generation": generation},
                     (("ETag", f'"{generation}"'),))

    def _check(self, request: Request) -> Reply:
        body = _body(request)
        if not isinstance(body, dict):
            raise Refused("", "expected a JSON object {service, name, type}")
        for key in ("service", "name"):
            if not isinstance(body.get(key), str):
                raise Refused(key, "missing, or not a string")
        qtype = body.get("type", "A")
        if not isinstance(qtype, str):
            raise Refused("type", "not a string")
        return _json("200 OK", self.store.check(body["service"], body["name"], qtype))

    def _pins(self, request: Request) -> Reply:
        if request.method != "GET":
            return _error("405 Method Not Allowed", "GET /v1/pins")
        pins = self.store.pins
        if pins is None:
            return _error("501 Not Implemented", "no pins provider in this resolver: "
                                                 "services[].pin is not available")
        service = request.query.get("service")
        names = [service] if service else [s["name"] for s in self.store.services()]
        for name in names:
            self.store.get(name)  # 404 for a service that does not exist
        return _json("200 OK", {"pins": [{"service": name, **pin} for name in names
                                          for pin in pins.snapshot(name)]})

    def _denials(self, request: Request) -> Reply:
        if request.method != "GET":
            return _error("405 Method Not Allowed", "GET /v1/denials")
        since = request.query.get("since")
        try:
            after = parse_time(since) if since else None
        except ValueError as exc:
            raise Refused("since", str(exc)) from None
        return _json("200 OK", {"denials": self.store.frontend.denials.recent(
            request.query.get("service"), after)})


def _body(request: Request) -> object:
    try:
        return orjson.loads(request.body) if request.body else None
    except orjson.JSONDecodeError as exc:
        raise Refused("", f"the body is not JSON: {exc}") from None


def unix_socket_in_use(path: str) -> bool:
    """Whether a process answers on the unix socket at ``path`` (another resolver's API); a
    socket nobody listens on is one left behind."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _remove_stale_socket(path: str) -> None:
    """Remove a socket left behind at ``path`` (OSError EADDRINUSE when one is in use);
    anything else there is kept, and binding then fails and says so."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return
    except FileNotFoundError:
        return
    if unix_socket_in_use(path):
        raise OSError(errno.EADDRINUSE, "address already in use by another process")
    os.unlink(path)
