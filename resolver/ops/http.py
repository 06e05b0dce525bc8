"""The HTTP/1.1 server side both of the project's HTTP endpoints use (metrics and health,
resolver.ops.metrics; the runtime policy API, resolver.ops.api): one request per connection
(RFC 9112 §9.6, ``Connection: close``), its head and a ``Content-Length`` body read within a
time limit, the reply written whole. No framework: asyncio streams, on TCP or a unix socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from resolver.errors import ResolverError

__all__ = ["HttpError", "Reply", "Request", "serve_one"]

log = logging.getLogger(__name__)

#: Seconds a client has to send its whole request. Its head may be as long as asyncio's
#: stream limit (64 KiB); a longer one is answered 431.
REQUEST_TIMEOUT = 5.0


class Request(NamedTuple):
    """One request: method, path (percent-decoded), query parameters, headers (names
    lowercased), body, and the connection's writer (for the peer's identity)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    writer: asyncio.StreamWriter


class Reply(NamedTuple):
    """A response: status line text (``200 OK``), content type, body, extra headers."""

    status: str
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class HttpError(ResolverError):
    """A request answered with ``status`` and a one-line ``text`` before it reaches a handler."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status


async def _read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                max_body: int) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError("400 Bad Request", "not an HTTP/1.x request line")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HttpError("400 Bad Request", f"not a header line: {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise HttpError("400 Bad Request", "Content-Length is not a number")
    if int(length) > max_body:
        raise HttpError("413 Content Too Large", f"a body is at most {max_body} octets")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError("411 Length Required", "send the body with a Content-Length")
    body = await reader.readexactly(int(length)) if int(length) else b""
    target = urlsplit(parts[1])
    return Request(parts[0], unquote(target.path), dict(parse_qsl(target.query)), headers,
                   body, writer)


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    handler: Callable[[Request], Awaitable[Reply]], max_body: int = 0) -> None:
    """Read one request, answer it with ``handler``'s reply, close. A malformed or slow request
    is answered 400 (or not at all once the client is gone); a handler's failure is 500 and
    logged."""
    try:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                request = await _read(reader, writer, max_body)
        except HttpError as exc:
            reply = Reply(exc.status, "text/plain; charset=utf-8", f"{exc}\n".encode())
        except asyncio.LimitOverrunError:
            reply = Reply("431 Request Header Fields Too Large", "text/plain; charset=utf-8",
                          b"request head too long\n")
        else:
            try:
                reply = await handler(request)
            except Exception:  # noqa: BLE001 - one request never stops the endpoint
                log.exception("HTTP %s %s failed", request.method, request.path)
                reply = Reply("500 Internal Server Error", "text/plain; charset=utf-8",
                              b"internal error; see the resolver's log\n")
        extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers)
        writer.write(f"HTTP/1.1 {reply.status}\r\nContent-Type: {reply.content_type}\r\n"
                     f"Content-Length: {len(reply.body)}\r\n{extra}Connection: close\r\n\r\n"
                     .encode("latin-1") + reply.body)
        await writer.drain()
    except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
