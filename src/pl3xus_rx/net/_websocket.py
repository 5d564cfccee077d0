"""The WebSocket transport, on ``websockets``' asyncio implementation."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as _ssl
import struct
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from websockets import exceptions as wsx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import Side, State

from .._http import HEALTH_PATH, PAGE_HEADERS, HttpRequest, HttpResponse
from ..exceptions import BindError, ConnectFailed, ConnectionClosed
from ..protocol import SUBPROTOCOLS, WireData
from ._settings import NetworkSettings
from ._transport import HandlerFactory, LinkHandler, ListenerHooks

__all__ = ["WebSocketTransport"]

logger = logging.getLogger(__name__)
_ws_logger = logging.getLogger("pl3xus_rx.net.websockets")


_HEAD16 = struct.Struct("!BBH").pack
_HEAD64 = struct.Struct("!BBQ").pack
_BINARY = 0x82  # FIN and the binary opcode
_TEXT = 0x81  # FIN and the text opcode


def frame_head(first: int, length: int) -> bytes:
    """The head of an unmasked WebSocket frame (RFC 6455, 5.2) whose first byte is
    ``first`` (FIN, opcode) and whose payload is ``length`` bytes."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _HEAD16(first, 126, length)
    return _HEAD64(first, 127, length)


class _WsLink:
    """A :class:`Link` over one ``websockets`` connection."""

    __slots__ = (
        "_high",
        "_plain",
        "_proto",
        "_sock",
        "_transport",
        "_ws",
        "remote",
        "request",
        "subprotocol",
    )

    def __init__(self, ws: Connection, request: HttpRequest | None = None) -> None:
        self._ws = ws
        self.request = request
        self._proto = ws.protocol
        transport = self._transport = ws.transport
        self._high = transport.get_write_buffer_limits()[1]
        # A server's frames are not masked; with no extension (compression) negotiated a
        # message is one frame of its bytes as they are, which this link writes itself.
        self._plain = ws.protocol.side is Side.SERVER and not ws.protocol.extensions
        # Over plain TCP (not TLS) such a frame may go to the socket in one gather write.
        plain_tcp = (
            self._plain
            and transport.get_extra_info("sslcontext") is None
            and transport.get_extra_info("ssl_object") is None
        )
        self._sock: Any = transport.get_extra_info("socket") if plain_tcp else None
        self.subprotocol: str | None = ws.subprotocol
        addr = ws.remote_address
        self.remote = f"{addr[0]}:{addr[1]}" if addr else "?"

    def write(self, data: WireData) -> None:
        self._write(data)

    def try_write(self, data: WireData) -> int:
        transport = self._transport
        buffered = transport.get_write_buffer_size()
        if buffered > self._high:
            return -1
        sock = self._sock
        proto = self._proto
        if (
            type(data) is tuple
            and not buffered
            and sock is not None
            and proto.state is State.OPEN
            and not proto.expect_continuation_frame
            and not transport.is_closing()
        ):
            # The flush's frames, when nothing waits in the transport's buffer (and the
            # socket is open while the transport is not closing): the kernel takes the head
            # and the chunks in one gather write, with no copy here; what it does not take
            # goes to the buffer.
            size = sum(map(len, data))
            parts = (frame_head(_BINARY, size), *data)
            try:
                written = os.writev(sock.fileno(), parts)
            except OSError:  # would block, or an error: the transport's write reports it
                written = 0
            if written < len(parts[0]) + size:
                transport.write(memoryview(b"".join(parts))[written:])
            return size
        return self._write(data)

    def _write(self, data: WireData) -> int:
        # What websockets.broadcast() does for one connection: frame now, no await.
        proto = self._proto
        if proto.state is not State.OPEN:
            raise ConnectionClosed("the WebSocket is not open", code=None)
        if isinstance(data, tuple):
            data = b"".join(data)
        if not self._plain or proto.expect_continuation_frame:
            if isinstance(data, str):
                proto.send_text(data.encode())
            else:
                proto.send_binary(data)
            self._ws.send_data()
            return len(data)
        # The frame websockets would write, written here (websockets writes whatever it has
        # queued before it returns, so nothing of its own is pending).
        if isinstance(data, str):
            text = data.encode()
            self._transport.write(frame_head(_TEXT, len(text)) + text)
        else:  # bytes (or any bytes-like object)
            payload = bytes(data)
            self._transport.write(frame_head(_BINARY, len(payload)) + payload)
        return len(data)

    def backed_up(self) -> bool:
        return self._transport.get_write_buffer_size() > self._high

    async def write_and_drain(self, data: bytes | str) -> None:
        try:
            await self._ws.send(data)  # send() waits for the buffer to drain
        except wsx.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def close(self, code: int, reason: str) -> None:
        # websockets' close() drains the write buffer before its own timeout starts, so a peer
        # that stopped reading would hold it forever: bound the whole close, then abort.
        ws = self._ws
        try:
            await asyncio.wait_for(ws.close(code, reason), (ws.close_timeout or 10.0) + 0.1)
        except TimeoutError:
            logger.info("peer %s did not complete the close in time; aborting", self.remote)
            ws.transport.abort()

    def abort(self) -> None:
        self._transport.abort()


def _closed(exc: wsx.ConnectionClosed) -> ConnectionClosed:
    frame = exc.rcvd or exc.sent
    code = frame.code if frame else None
    reason = frame.reason if frame else ""
    return ConnectionClosed(f"connection closed: {exc}", code=code, reason=reason)


def _close_info(ws: Connection) -> tuple[int | None, str]:
    proto = ws.protocol
    frame = proto.close_rcvd or proto.close_sent
    if frame is None:
        return None, "connection lost without a closing handshake"
    return frame.code, frame.reason


SLICE = 0.002
"""Seconds one connection's incoming frames may be handled back to back before the loop is
given back (to flushes, other connections, health checks)."""


async def _pump(ws: Connection, handler: LinkHandler) -> None:
    """Feed every incoming message to ``handler``; report the close, exactly once."""
    clock = time.perf_counter
    try:
        began = clock()
        async for message in ws:
            delay = handler.on_message(message)
            if delay > 0.0:
                await asyncio.sleep(delay)  # it took more than its share: read it later
                began = clock()
            elif clock() - began > SLICE:
                await asyncio.sleep(0)  # fair share: others run before our next frame
                began = clock()
    except wsx.ConnectionClosed:
        pass
    except asyncio.CancelledError:
        ws.transport.abort()  # cancelled (loop shutdown): never leave the socket open
        raise
    finally:
        code, reason = _close_info(ws)
        handler.on_closed(code, reason)


def _response(
    connection: ServerConnection, answer: HttpResponse, *, head: bool = False
) -> Response:
    body = answer.body.encode() if isinstance(answer.body, str) else answer.body
    response = connection.respond(HTTPStatus(answer.status), "")
    response.body = b"" if head else body
    headers = response.headers
    for name in ("Content-Length", "Content-Type", *answer.headers):
        if name in headers:
            del headers[name]
    headers["Content-Length"] = str(len(body))
    headers["Content-Type"] = answer.content_type
    for name, value in answer.headers.items():
        headers[name] = value
    return response


def _page_headers(connection: ServerConnection, request: Request, response: Response) -> None:
    """Every answer but the switch to WebSocket gets :data:`PAGE_HEADERS` (the ones it does
    not set itself): ours and websockets' own refusals (426, 400) alike."""
    if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
        return
    headers = response.headers
    for name, value in PAGE_HEADERS.items():
        if name not in headers:
            headers[name] = value


def _request(connection: ServerConnection, request: Request) -> HttpRequest:
    upgrade = "upgrade" in request.headers.get("Connection", "").lower()
    offered = [
        token.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for token in value.split(",")
        if token.strip()
    ]
    address = connection.remote_address
    return HttpRequest.build(
        request.path,
        request.headers.raw_items(),
        remote=_peer(connection),
        remote_host=str(address[0]) if address else "",
        subprotocol=_choose_subprotocol(offered) if upgrade else None,
        upgrade=upgrade,
    )


def _common_kwargs(settings: NetworkSettings, *, server: bool) -> dict[str, Any]:
    return {
        "compression": "deflate" if settings.compression else None,
        "max_size": (settings.message_limit(server), settings.frame_limit(server)),
        # messages read ahead of the handler: few on a server (each may be 4 MiB), so that
        # a client cannot park much memory in its read buffer
        "max_queue": 4 if server else 16,
        "ping_interval": settings.ping_interval,
        "ping_timeout": settings.ping_timeout,
        "open_timeout": settings.open_timeout,
        "close_timeout": settings.close_timeout,
        "write_limit": settings.write_limit,
        "logger": _ws_logger,
    }


class _WsListener:
    def __init__(self, server: Server) -> None:
        self._server = server
        sock = next(iter(server.sockets))
        name = sock.getsockname()
        self.address: tuple[str, int] = (name[0], name[1])

    async def close(self) -> None:
        # Stop accepting; Network has already closed every open link itself.
        self._server.close(close_connections=False)
        await self._server.wait_closed()


class WebSocketTransport:
    """The default transport: ``ws://`` via the ``websockets`` library."""

    async def listen(
        self, host: str, port: int, hooks: ListenerHooks, *, ssl: _ssl.SSLContext | None = None
    ) -> _WsListener:
        """Bind ``host:port`` and serve WebSocket upgrades and ``GET /healthz`` on it (over
        TLS with ``ssl``)."""
        settings = hooks.settings
        # handshakes admitted and not yet completed, with their requests
        handshaking: dict[ServerConnection, HttpRequest] = {}
        paced = [-float("inf"), 0]  # when a refusal was last logged; how many since

        async def process_request(
            connection: ServerConnection, request: Request
        ) -> Response | None:
            http_request = _request(connection, request)
            method = request.method
            if method not in ("GET", "HEAD"):
                # (every route here only reads: no other method means anything)
                refused = HttpResponse(405, "this method is not served here; use GET\n")
                answer = _response(connection, refused)
                answer.headers["Allow"] = "GET, HEAD"
                return answer
            head = method == "HEAD"  # (the GET answer's headers, without its body)
            if http_request.path == HEALTH_PATH:
                return _response(connection, hooks.health(http_request), head=head)
            if not http_request.upgrade:
                page = await hooks.http(http_request)
                if page is not None:
                    return _response(connection, page, head=head)
                return None  # websockets answers 426 Upgrade Required
            for c in [c for c in handshaking if c.protocol.state is not State.CONNECTING]:
                del handshaking[c]
            refusal = await hooks.admit(http_request, len(handshaking))
            if refusal is not None:
                # at most one line per warning_interval: anyone can make handshakes fail
                now = time.monotonic()
                if now - paced[0] >= hooks.settings.warning_interval:
                    quiet, paced[1] = paced[1], 0
                    paced[0] = now
                    logger.warning(
                        "Refused connection from %s: HTTP %d %r%s",
                        http_request.remote,
                        refusal.status,
                        refusal.body[:200],
                        f" ({quiet} more refusals not logged since the last one)" if quiet else "",
                    )
                else:
                    paced[1] += 1
                return _response(connection, refusal)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("Beginning connection from %s", http_request.remote)
            handshaking[connection] = http_request
            return None

        async def handler(ws: ServerConnection) -> None:
            link = _WsLink(ws, handshaking.pop(ws, None))
            await _pump(ws, hooks.opened(link))

        try:
            server = await serve(
                handler,
                host,
                port,
                subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
                select_subprotocol=_select_subprotocol,
                process_request=process_request,
                process_response=_page_headers,
                server_header=None,  # (no versions to fingerprint)
                backlog=settings.backlog,
                ssl=ssl,
                **_common_kwargs(settings, server=True),
            )
        except OSError as exc:
            raise BindError(
                exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        return _WsListener(server)

    async def connect(
        self,
        url: str,
        settings: NetworkSettings,
        subprotocol: str | Sequence[str],
        handler_factory: HandlerFactory,
        *,
        headers: Mapping[str, str] | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> _WsLink:
        """Open a WebSocket to ``url`` offering ``subprotocol`` (or several, preferred
        first)."""
        offered = [subprotocol] if isinstance(subprotocol, str) else list(subprotocol)
        extra: dict[str, Any] = {}
        if ssl is not None:
            extra["ssl"] = ssl
        try:
            ws: ClientConnection = await ws_connect(
                url,
                subprotocols=offered,  # type: ignore[arg-type]
                additional_headers=dict(headers or {}),
                **extra,
                **_common_kwargs(settings, server=False),
            )
        except wsx.InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
            raise ConnectFailed(
                f"{url} refused the WebSocket handshake: HTTP {exc.response.status_code}"
                + (f": {body}" if body else ""),
                status=exc.response.status_code,
            ) from exc
        except (TimeoutError, OSError, wsx.WebSocketException) as exc:
            raise ConnectFailed(f"cannot connect to {url}: {type(exc).__name__}: {exc}") from exc
        link = _WsLink(ws)
        handler = handler_factory(link)
        task = asyncio.get_running_loop().create_task(_pump(ws, handler), name=f"pump {url}")
        link_tasks.add(task)
        task.add_done_callback(link_tasks.discard)
        return link


link_tasks: set[asyncio.Task[None]] = set()  # strong refs for client pump tasks


def _peer(connection: ServerConnection) -> str:
    addr = connection.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "?"


def _choose_subprotocol(offered: list[str]) -> str | None:
    # Prefer what the client asked first; no subprotocol at all means msgpack.
    for sp in offered:
        if sp in SUBPROTOCOLS:
            return sp
    return None


def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Any:
    return _choose_subprotocol(list(subprotocols))
